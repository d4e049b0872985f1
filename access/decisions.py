"""The one decision: may user U do action A on dataset D (and columns C) now?

Standing permissions come from the role matrix (the user's roles, the dataset's store
environment, the sensitivity tier of what would be seen); just-in-time permissions from the
user's active grants, whose end time is checked here, at the moment of the decision, so an
expired grant gives nothing even if no worker has marked it expired yet. The UI, the API
and the workers all ask ``access_decide`` (or, for lists, ``dataset_visibility_filter``).
"""

from dataclasses import dataclass

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from access.models import (
    STEWARD_PERMISSION,
    AccessLevel,
    DatasetGroupObjectPermission,
    DatasetUserObjectPermission,
    Grant,
    GrantStatus,
    RolePermission,
)
from access.roles import ENVIRONMENTS, SECURITY_ROLE, TIERS
from catalog.models import Dataset
from catalog.vocabulary import unclassified_tier

AGGREGATED_TAG = "aggregated"
LIVE_STATUSES = (GrantStatus.SCHEDULED, GrantStatus.ACTIVE)
ACTIONS = {"metadata": AccessLevel.METADATA, "read": AccessLevel.READ, "write": AccessLevel.WRITE}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    level: int  # what the user has on this scope now
    via: str  # "standing", "owner", "steward", "grant #N", "admin" or ""
    reason: str = ""
    grant: Grant | None = None

    def __bool__(self) -> bool:
        return self.allowed


def _roles(user):
    from access.policies import user_roles

    return user_roles(user)


def matrix_cells(user) -> list[RolePermission]:
    """The user's matrix cells (all roles), read once per request and cached on the user."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return []
    if getattr(user, "_matrix_cells", None) is None:
        # Read with the roles, in one query (the token lookup may have read the roles alone, and
        # the same ones: ``access.policies.user_roles_prime`` keeps roles without cells too).
        user._catalog_roles = None
        _roles(user)
    return user._matrix_cells


def is_owner(user, dataset) -> bool:
    """One of the dataset's owners (uses a prefetched ``owner_list`` where there is one)."""
    if not getattr(user, "pk", None):
        return False
    owners = getattr(dataset, "owner_list", None)
    if owners is not None:
        return any(owner.pk == user.pk for owner in owners)
    return dataset.owners.filter(pk=user.pk).exists()


def steward_dataset_ids(user) -> frozenset[int]:
    """The datasets the user stewards through django-guardian's ``steward_dataset`` object
    permission, given to them or to one of their groups. One query, cached on the user object
    for the rest of the request (like the roles), so list pages stay at a constant count."""
    if not getattr(user, "pk", None) or not getattr(user, "is_active", False):
        return frozenset()
    cached = getattr(user, "_steward_dataset_ids", None)
    if cached is None:
        direct = DatasetUserObjectPermission.objects.filter(user_id=user.pk, permission__codename=STEWARD_PERMISSION)
        via_groups = DatasetGroupObjectPermission.objects.filter(
            group__user=user.pk, permission__codename=STEWARD_PERMISSION
        )
        cached = frozenset(
            direct.values_list("content_object_id", flat=True).union(
                via_groups.values_list("content_object_id", flat=True)
            )
        )
        user._steward_dataset_ids = cached
    return cached


def is_steward(user, dataset) -> bool:
    """The dataset's owners and its stewards (users, and members of steward groups) approve
    access to it, review it, and edit its metadata. With ``owner_list`` prefetched and the
    stewardships cached this asks nothing of the database, so lists stay at constant queries."""
    if getattr(dataset, "owner_list", None) is not None:
        return is_owner(user, dataset) or dataset.pk in steward_dataset_ids(user)
    return dataset.pk in steward_dataset_ids(user) or is_owner(user, dataset)


def stewarded_filter(user, field: str = "pk") -> Q:
    """``is_steward`` as a filter on a dataset foreign key (``field``), for querysets: no query
    of its own, three subqueries in the one that uses it."""
    if not getattr(user, "pk", None):
        return Q(pk__in=[])
    owned = Dataset.owners.through.objects.filter(user_id=user.pk).values("dataset_id")
    direct = DatasetUserObjectPermission.objects.filter(
        user_id=user.pk, permission__codename=STEWARD_PERMISSION
    ).values("content_object_id")
    via_groups = DatasetGroupObjectPermission.objects.filter(
        group__user=user.pk, permission__codename=STEWARD_PERMISSION
    ).values("content_object_id")
    return Q(**{f"{field}__in": owned}) | Q(**{f"{field}__in": direct}) | Q(**{f"{field}__in": via_groups})


def is_aggregated(dataset) -> bool:
    return AGGREGATED_TAG in (dataset.tags or [])


def dataset_tier(dataset) -> int:
    """The tier the decision gives a whole dataset: its declared sensitivity, or, while nobody has
    classified it, the operator's default tier (``CATALOG_UNCLASSIFIED_TIER``) read now, never Public."""
    return dataset.sensitivity if dataset.classified else unclassified_tier()


def tier_at_least_filter(tier: int, field: str = "") -> Q:
    """``dataset_tier(dataset) >= tier`` as a filter on Dataset (or on a dataset foreign key,
    ``field="dataset__"``): an unclassified dataset counts at the default tier, read now."""
    classified = Q(**{f"{field}classified": True, f"{field}sensitivity__gte": tier})
    if unclassified_tier() >= tier:
        return classified | Q(**{f"{field}classified": False})
    return classified


def scope_sensitivity(dataset, columns=None) -> int:
    """The tier of what a scope shows: the dataset's, or the highest of the named columns. An
    unclassified dataset is its default tier whatever its columns say (nobody declared them)."""
    if not columns or not dataset.classified:
        return dataset_tier(dataset)
    wanted = {name.lower() for name in columns}
    tiers = [c.sensitivity for c in dataset.columns.all() if c.name.lower() in wanted]
    return max(tiers, default=dataset.sensitivity)


def grant_outgrown(grant) -> int | None:
    """The tier a live grant's scope has now, if that is above what its approvers saw (the grant
    no longer gives anything: the decision refuses it), else None. Pass a grant with ``request``
    and ``dataset`` loaded."""
    tier = scope_sensitivity(grant.dataset, grant.columns)
    return tier if tier > grant.request.sensitivity else None


def standing_level(user, environment: str, sensitivity: int, aggregated: bool) -> int:
    level = AccessLevel.NONE
    for cell in matrix_cells(user):
        if cell.environment == environment and cell.sensitivity == sensitivity:
            if cell.aggregated_only and not aggregated:
                continue
            level = max(level, cell.standing)
    return level


def cell_for_request(user, environment: str, sensitivity: int, level: int) -> RolePermission | None:
    """The most generous cell of the user's roles that lets them ask for ``level`` just in time
    (longest duration, then fewest approvals)."""
    candidates = [
        cell for cell in matrix_cells(user)
        if cell.environment == environment and cell.sensitivity == sensitivity and cell.jit_level >= level
    ]
    return max(candidates, key=lambda c: (c.jit_max_hours, -c.approvals_required), default=None)


def is_security_engineer(user) -> bool:
    return any(role.slug == SECURITY_ROLE for role in _roles(user))


def active_grants(user, dataset, at=None):
    at = at or timezone.now()
    # A scheduled grant (an extension) whose time has come counts before the worker activates it.
    return Grant.objects.filter(
        user=user, dataset=dataset, status__in=LIVE_STATUSES, starts_at__lte=at, ends_at__gt=at
    ).select_related("request").order_by("-level", "ends_at")


def _covers(grant_columns, columns) -> bool:
    if not grant_columns:
        return True  # the whole dataset
    if not columns:
        return False
    granted = {name.lower() for name in grant_columns}
    return all(name.lower() in granted for name in columns)


def access_decide(user, action: str, dataset, columns=None, at=None, live_grants=None) -> Decision:
    """May ``user`` do ``action`` ("metadata", "read" or "write") on ``dataset`` (only
    ``columns``, if given) at ``at`` (now)? Pass a dataset with ``store`` loaded. ``live_grants``:
    the user's grants on the dataset read beforehand for many decisions at once (monitoring's log
    ingestion), with ``request`` loaded; they are filtered here as ``active_grants`` would."""
    needed = ACTIONS[action]
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return Decision(False, AccessLevel.NONE, "", "Sign in first.")
    if needed == AccessLevel.METADATA and getattr(user, "is_superuser", False):
        return Decision(True, AccessLevel.METADATA, "admin")
    environment = dataset.store.environment
    sensitivity = scope_sensitivity(dataset, columns)
    level = standing_level(user, environment, sensitivity, is_aggregated(dataset))
    if level >= needed:
        return Decision(True, level, "standing")
    if needed == AccessLevel.METADATA and is_owner(user, dataset):
        return Decision(True, AccessLevel.METADATA, "owner")
    if needed == AccessLevel.METADATA and dataset.pk in steward_dataset_ids(user):
        return Decision(True, AccessLevel.METADATA, "steward")
    if getattr(user, "pk", None):
        if live_grants is None:
            candidates = active_grants(user, dataset, at)
        else:
            moment = at or timezone.now()
            candidates = sorted(
                (g for g in live_grants if g.status in LIVE_STATUSES and g.starts_at <= moment < g.ends_at),
                key=lambda g: (-g.level, g.ends_at),
            )
        for grant in candidates:
            # A grant covers what its approvers saw: not columns made more sensitive since.
            if grant.level >= needed and _covers(grant.columns, columns) and grant.request.sensitivity >= sensitivity:
                return Decision(True, max(level, grant.level), f"grant #{grant.pk}", grant=grant)
    label = AccessLevel(needed).label.lower()
    return Decision(
        False, level, "",
        f"Your roles do not allow '{label}' on {environment} data of this sensitivity, and you hold no active grant for it.",
    )


def _places(keys) -> Q:
    """Datasets in any of these (environment, tier) places: one term per environment. Unclassified
    datasets sit in the place of the default tier (read now, as ``dataset_tier`` does), whatever
    their stored sensitivity."""
    unclassified = unclassified_tier()
    tiers_by_environment = {}
    for environment, tier in keys:
        tiers_by_environment.setdefault(environment, []).append(tier)
    condition = Q(pk__in=[])
    for environment, tiers in sorted(tiers_by_environment.items()):
        tiers_here = Q(sensitivity__in=sorted(tiers))
        if unclassified in tiers:
            tiers_here |= Q(classified=False)
        else:
            tiers_here &= Q(classified=True)
        condition |= Q(store__environment=environment) & tiers_here
    return condition


def _aggregated_filter() -> Q:
    """Tagged ``aggregated``: jsonb containment on PostgreSQL (exact, as ``is_aggregated``);
    SQLite has no JSON containment, so the embedded default matches the quoted tag as text, with
    its case (``Aggregated`` is not the tag, as the decision says)."""
    if connection.vendor == "postgresql":
        return Q(tags__contains=[AGGREGATED_TAG])
    # A whole element of the JSON array: after "[" or ", " and before "," or "]" (a quote inside a
    # tag is escaped as \", so '"\"aggregated"' is not it).
    return Q(tags__regex=rf'(\[|, )"{AGGREGATED_TAG}"(,|\])')


def dataset_visibility_filter(user) -> Q | None:
    """A filter on Dataset for what the user may see the metadata of, or None for everything.

    The same rule as ``access_decide(user, "metadata", dataset)``, as one query: matrix cells
    with at least metadata, plus datasets the user owns or stewards and those they hold an active
    grant on now.
    """
    if getattr(user, "is_superuser", False):
        return None
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return Q(pk__in=[])
    by_place = {}  # (environment, tier) -> aggregated only?
    for cell in matrix_cells(user):
        if cell.standing >= AccessLevel.METADATA:
            key = (cell.environment, cell.sensitivity)
            by_place[key] = by_place.get(key, True) and cell.aggregated_only
    if len(by_place) == len(ENVIRONMENTS) * len(TIERS) and not any(by_place.values()):
        return None  # every environment and tier: no filter, no extra query cost
    condition = _places([key for key, aggregated_only in by_place.items() if not aggregated_only])
    aggregated_places = [key for key, aggregated_only in by_place.items() if aggregated_only]
    if aggregated_places:
        condition |= _places(aggregated_places) & _aggregated_filter()
    if getattr(user, "pk", None):
        now = timezone.now()
        condition |= stewarded_filter(user)  # owners and stewards
        # As the decision: a live grant on the whole dataset, approved for its present tier.
        condition |= Q(pk__in=Grant.objects.filter(
            user=user, status__in=LIVE_STATUSES, starts_at__lte=now, ends_at__gt=now, columns=[],
        ).filter(
            Q(dataset__classified=True, request__sensitivity__gte=F("dataset__sensitivity"))
            | Q(dataset__classified=False, request__sensitivity__gte=unclassified_tier())
        ).values("dataset_id"))
    return condition
