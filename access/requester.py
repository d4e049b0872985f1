"""What a requester holds, waits for and may ask for on one dataset.

Nothing here decides: the standing level comes from ``decisions.standing_level``, whether the
reader already has access from ``decisions.access_decide``, the matrix cell of a request from
``decisions.cell_for_request`` (as ``grants.access_request_create`` picks it), and who may
approve a request from ``grants.approvers_for``. This module only gathers those answers for
the dataset page, the dataset API and the request form, in a constant number of queries.
"""

from dataclasses import dataclass, field

from django.contrib.auth.models import Group
from django.db.models import Exists, OuterRef, prefetch_related_objects
from django.utils import timezone

from access import decisions, selectors
from access.grants import approvers_for
from access.models import (
    STEWARD_PERMISSION,
    AccessLevel,
    AccessRequest,
    DatasetGroupObjectPermission,
    DatasetUserObjectPermission,
    Grant,
    RequestStatus,
    ReviewDecision,
)
from access.roles import SECURITY_ROLE
from catalog.vocabulary import Sensitivity

LEVELS = {"read": AccessLevel.READ, "write": AccessLevel.WRITE}


@dataclass
class Deciders:
    """Who may still decide a request: people named (owners and stewards, with how they are
    one), and the roles of the others who may (security engineers, admins)."""

    people: list = field(default_factory=list)  # [(user, "owner" | "steward")]
    roles: list = field(default_factory=list)  # ["a security engineer", "an admin"]
    security_needed: bool = False  # one approval must come from a security engineer
    approvals_needed: int = 1

    @property
    def unowned(self) -> bool:
        """Nobody owns or stewards the dataset: only security engineers and admins decide."""
        return not self.people

    @property
    def sentence(self) -> str:
        names = [
            f"{user.display_name} ({user.username}, {how})" if user.display_name != user.username else f"{user.username} ({how})"
            for user, how in self.people
        ]
        who = names + self.roles
        if not who:
            return "Nobody may approve it yet: the dataset has no owner or steward and nobody holds a role that approves it."
        if len(who) == 1:
            text = who[0]
        else:
            text = ", ".join(who[:-1]) + " or " + who[-1]
        count = f"{self.approvals_needed} approval{'s' if self.approvals_needed != 1 else ''}"
        sentence = f"{count} from {text}"
        if self.security_needed:
            sentence += "; one of them from a security engineer"
        if self.unowned:
            sentence += ". Nobody owns this dataset, so only security engineers and admins decide"
        return sentence + "."

    def as_json(self) -> dict:
        return {
            "approvalsNeeded": self.approvals_needed,
            "securityApprovalNeeded": self.security_needed,
            "approvers": [
                {"username": user.username, "name": user.display_name, "as": how} for user, how in self.people
            ],
            "approverRoles": [role.split(" ", 1)[1] for role in self.roles],
            "summary": self.sentence,
        }


class _ApproverCache:
    """``grants.approvers_for`` once per kind of request on one dataset (its rule depends on the
    tier and on whether the matrix asks for a security approval), each approver marked as owner,
    steward, security engineer or admin: one query per kind, whatever the number of requests."""

    def __init__(self, dataset, requester):
        self.dataset, self.requester = dataset, requester
        self.by_key = {}

    def approvers(self, sensitivity: int, security_approval_required: bool) -> list:
        key = (sensitivity, security_approval_required)
        if key not in self.by_key:
            probe = AccessRequest(
                dataset=self.dataset, requester=self.requester, sensitivity=sensitivity,
                security_approval_required=security_approval_required,
            )
            stewards = Exists(DatasetUserObjectPermission.objects.filter(
                content_object=self.dataset.pk, permission__codename=STEWARD_PERMISSION, user=OuterRef("pk"),
            )) | Exists(DatasetGroupObjectPermission.objects.filter(
                content_object=self.dataset.pk, permission__codename=STEWARD_PERMISSION, group__user=OuterRef("pk"),
            ))
            security = Exists(Group.objects.filter(user=OuterRef("pk"), company_role__slug=SECURITY_ROLE))
            self.by_key[key] = list(
                approvers_for(probe).annotate(as_steward=stewards, as_security=security).order_by("username")
            )
        return self.by_key[key]

    def deciders(self, *, sensitivity, security_approval_required, approvals_needed, reviewed=()) -> Deciders:
        owners = {owner.pk for owner in self._owners()}
        found = Deciders(security_needed=security_approval_required, approvals_needed=approvals_needed)
        security = admin = False
        for user in self.approvers(sensitivity, security_approval_required):
            if user.pk in reviewed:
                continue  # already decided; the request waits for the others
            if user.pk in owners:
                found.people.append((user, "owner"))
            elif user.as_steward:
                found.people.append((user, "steward"))
            elif user.as_security:
                security = True
            elif user.is_superuser:
                admin = True
        if security:
            found.roles.append("a security engineer")
        if admin:
            found.roles.append("an admin")
        return found

    def _owners(self):
        owners = getattr(self.dataset, "owner_list", None)
        if owners is None:
            owners = self.dataset.owner_list = list(self.dataset.owners.all())
        return owners


@dataclass
class OwnAccess:
    """The reader's own access to one dataset (for the dataset page and ``myAccess`` in the API)."""

    level: int  # what the decision gives on the whole dataset now
    standing: int  # the role matrix's level on the whole dataset
    standing_columns: list  # [(column name, level)] the matrix gives above ``standing``
    roles: list
    relation: str  # "owner", "steward" or ""
    grants: list  # live grants, soonest end first, each with ``outgrown``
    pending: list  # pending requests, each with ``deciders``
    can_request: bool

    @property
    def standing_label(self) -> str:
        return AccessLevel(self.standing).label

    def as_json(self) -> dict:
        """The ``myAccess`` field of the dataset API (``catalog.serializers.MyAccessSerializer``)."""
        from access.serializers import level_name

        return {
            "level": level_name(self.level),
            "relation": self.relation or None,
            "standing": {
                "level": level_name(self.standing),
                "roles": [role.name for role in self.roles],
                "columns": [{"name": name, "level": level_name(level)} for name, level in self.standing_columns],
            },
            "grants": [
                {
                    "id": grant.pk, "level": level_name(grant.level), "columns": grant.columns or None,
                    "status": grant.status, "startsAt": grant.starts_at, "endsAt": grant.ends_at,
                    "breakGlass": grant.is_break_glass, "outgrown": grant.outgrown is not None,
                }
                for grant in self.grants
            ],
            "pendingRequests": [
                {
                    "id": request.pk, "level": level_name(request.level), "columns": request.columns or None,
                    "createdAt": request.created_at, "expiresAt": request.expires_at,
                    "extendsGrant": request.extends_id, "waitingFor": request.deciders.as_json(),
                }
                for request in self.pending
            ],
            "canRequestAccess": self.can_request,
        }


def dataset_own_access(*, user, dataset) -> OwnAccess:
    """What ``user`` holds on ``dataset`` (a dataset with ``store`` and, best, ``owner_list``
    loaded): standing access from the matrix (whole dataset, and columns of lower tiers it gives
    more on), live grants with their columns and end, pending requests with who they wait for,
    and whether "Request access" is worth offering. A constant handful of queries."""
    environment, tier = dataset.store.environment, decisions.dataset_tier(dataset)
    aggregated = decisions.is_aggregated(dataset)
    standing = decisions.standing_level(user, environment, tier, aggregated)
    prefetch_related_objects([dataset], "columns")  # one query, read by scope_sensitivity below too
    standing_columns = []
    if dataset.classified:
        for column in sorted(dataset.columns.all(), key=lambda c: c.position):
            here = decisions.standing_level(user, environment, column.sensitivity, aggregated)
            if here > standing and here >= AccessLevel.READ:
                standing_columns.append((column.name, here))
    relation = "owner" if decisions.is_owner(user, dataset) else ("steward" if decisions.is_steward(user, dataset) else "")
    now = timezone.now()
    live = list(
        Grant.objects.filter(user=user, dataset=dataset, status__in=decisions.LIVE_STATUSES, ends_at__gt=now)
        .select_related("request").order_by("ends_at", "pk")
    ) if getattr(user, "pk", None) else []
    for grant in live:
        grant.dataset = dataset
        grant.outgrown = decisions.grant_outgrown(grant)
        grant.scheduled = grant.starts_at > now
    pending = list(
        selectors.my_requests(user=user).filter(dataset=dataset, status=RequestStatus.PENDING, expires_at__gt=now)
    ) if getattr(user, "pk", None) else []
    cache = _ApproverCache(dataset, user)
    for request in pending:
        request.deciders = request_waits_for(request, cache=cache)
    # Write first: a reader with standing read may hold a write grant, which "read" would not show.
    # The live grants read above are the ones the decision reads: handed over, not read twice more.
    decision = decisions.access_decide(user, "write", dataset, live_grants=live)
    if not decision.allowed:
        decision = decisions.access_decide(user, "read", dataset, live_grants=live)
    level = decision.level if decision.allowed else standing
    return OwnAccess(
        level=level, standing=standing, standing_columns=standing_columns,
        roles=decisions._roles(user) if getattr(user, "is_authenticated", False) else [],
        relation=relation, grants=live, pending=pending,
        can_request=_worth_requesting(user, dataset, level, relation, pending),
    )


def _worth_requesting(user, dataset, have, relation, pending) -> bool:
    """Offer "Request access" when the matrix lets the user ask for more than the decision gives
    them now; never to an owner (they approve others' requests to their dataset, and an owner who
    needs to read it more than their roles allow asks another approver through the form), nor
    while a request of theirs is pending (one at a time, as the service says)."""
    if getattr(user, "is_service_account", False) or relation == "owner":
        return False
    if any(request.extends_id is None for request in pending):
        return False
    environment, tier = dataset.store.environment, decisions.dataset_tier(dataset)
    for level in (AccessLevel.READ, AccessLevel.WRITE):
        if have >= level:
            continue
        if any(decisions.cell_for_request(user, environment, lower, level) for lower in range(tier + 1)):
            return True
    return False


def request_waits_for(request, *, cache: _ApproverCache | None = None) -> Deciders:
    """Who a pending request still waits for: the approvals it lacks, from whom (owners and
    stewards by name, security engineers and admins by role), without those who reviewed it."""
    cache = cache or _ApproverCache(request.dataset, request.requester)
    reviews = getattr(request, "review_list", None)
    if reviews is None:
        reviews = list(request.reviews.all())
    current = [review for review in reviews if not review.superseded]
    approvals = [review for review in current if review.decision == ReviewDecision.APPROVE]
    security_given = any(review.as_security_engineer for review in approvals)
    return cache.deciders(
        sensitivity=request.sensitivity,
        security_approval_required=request.security_approval_required and not security_given,
        approvals_needed=max(1, request.approvals_required - len(approvals)),
        reviewed={review.reviewer_id for review in current},
    )


@dataclass
class RequestRules:
    """What a request of this scope would need (for the request form's live summary)."""

    level: str
    columns: list
    tier: int
    cell: object  # the matrix cell, or None when the roles may not ask for it
    held: object  # the decision when the user already has this access, else None
    deciders: Deciders | None

    @property
    def tier_label(self) -> str:
        return Sensitivity(self.tier).label


def request_rules(*, user, dataset, level: str, columns) -> RequestRules:
    """What asking for ``level`` ("read" or "write") on ``columns`` (names; empty for the whole
    dataset) of ``dataset`` would need: the matrix cell the service would use (approvals,
    security approval, maximum duration, ticket), who would decide, or the access the user
    already holds. Unknown levels are read as "read" and unknown columns are left out: the
    service still checks everything when the request is sent."""
    level = level if level in LEVELS else "read"
    known = {column.name.lower(): column.name for column in dataset.columns.all()}
    names = sorted({known[name.lower()] for name in columns if isinstance(name, str) and name.lower() in known})
    tier = decisions.scope_sensitivity(dataset, names)
    decision = decisions.access_decide(user, level, dataset, names or None)
    held = decision if decision.allowed else None
    cell = decisions.cell_for_request(user, dataset.store.environment, tier, LEVELS[level])
    deciders = None
    if cell is not None and held is None:
        deciders = _ApproverCache(dataset, user).deciders(
            sensitivity=tier, security_approval_required=cell.security_approval_required,
            approvals_needed=cell.approvals_required,
        )
    return RequestRules(level=level, columns=names, tier=tier, cell=cell, held=held, deciders=deciders)

