"""Reads of access data that have rules: who sees which requests, grants and audit events."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Exists, F, IntegerField, Max, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from access import decisions, policies
from access.models import (
    STEWARD_PERMISSION,
    AccessRequest,
    AccessReview,
    AuditEvent,
    DatasetGroupObjectPermission,
    DatasetUserObjectPermission,
    Grant,
    GrantStatus,
    RequestStatus,
    RolePermission,
)
from access.roles import SECURITY_ROLE


def _request_base() -> QuerySet[AccessRequest]:
    return AccessRequest.objects.select_related("requester", "dataset__store", "extends").prefetch_related(
        Prefetch("reviews", queryset=AccessReview.objects.select_related("reviewer"), to_attr="review_list"),
        Prefetch("requester__groups__company_role"),
    )


def approval_queue(*, user) -> QuerySet[AccessRequest]:
    """Pending requests this user may review (not their own), oldest first."""
    if not policies.can_read_metadata(user) or getattr(user, "is_service_account", False):
        return AccessRequest.objects.none()
    pending = _request_base().filter(status=RequestStatus.PENDING, expires_at__gt=timezone.now()).exclude(requester=user)
    pending = pending.exclude(Exists(AccessReview.objects.filter(request=OuterRef("pk"), reviewer=user, superseded=False)))
    if user.is_superuser:
        return pending.order_by("created_at", "pk")
    return pending.filter(_reviewable(user)).order_by("created_at", "pk")


def _reviewable(user, request: str = "") -> Q:
    """``policies.can_review_request`` in SQL, for requests (or, with ``request="request__"``,
    for what points at them) of a user who is not an admin: owners and stewards (directly or
    through a group), and security engineers where the data is Restricted or the matrix asks."""
    condition = decisions.stewarded_filter(user, f"{request}dataset")
    if decisions.is_security_engineer(user):
        condition |= Q(**{f"{request}sensitivity__gte": 3}) | Q(**{f"{request}security_approval_required": True})
    return condition


def request_visible(*, user) -> QuerySet[AccessRequest]:
    """Requests a user may open: their own, those they may review, all for admins and security engineers."""
    if not policies.can_read_metadata(user):
        return AccessRequest.objects.none()
    if user.is_superuser or decisions.is_security_engineer(user):
        return _request_base()
    return _request_base().filter(Q(requester=user) | decisions.stewarded_filter(user, "dataset"))


def my_requests(*, user) -> QuerySet[AccessRequest]:
    return _request_base().filter(requester=user).order_by("-created_at", "-pk")


def grant_visible(*, user) -> QuerySet[Grant]:
    """Grants a user may see: their own; on datasets they own or steward; all for admins and security engineers."""
    base = Grant.objects.select_related("user", "dataset__store", "request", "revoked_by", "reviewed_by")
    if not policies.can_read_metadata(user):
        return Grant.objects.none()
    if user.is_superuser or decisions.is_security_engineer(user):
        return base
    return base.filter(Q(user=user) | decisions.stewarded_filter(user, "dataset"))


def my_grants(*, user, live_only: bool = False) -> QuerySet[Grant]:
    grants = grant_visible(user=user).filter(user=user)
    if live_only:
        grants = grants.filter(status__in=decisions.LIVE_STATUSES, ends_at__gt=timezone.now())
    return grants.order_by("-starts_at", "-pk")


# Break-glass grants whose after-the-fact review is still to be done.
AWAITING_REVIEW = Q(is_break_glass=True, review_required=True, reviewed_at__isnull=True)


def break_glass_pending_review(*, user) -> QuerySet[Grant]:
    """Break-glass grants still waiting for their after-the-fact review that this user may do."""
    if not policies.can_read_metadata(user) or getattr(user, "is_service_account", False):
        return Grant.objects.none()
    grants = grant_visible(user=user).filter(AWAITING_REVIEW)
    # ``policies.can_review_break_glass``: security engineers and admins review every one.
    if not (user.is_superuser or decisions.is_security_engineer(user)):
        grants = grants.filter(_reviewable(user, "request__"))
    return grants.select_related("request__dataset").exclude(user=user).order_by("starts_at", "pk")


def audit_list(*, user) -> QuerySet[AuditEvent]:
    """The audit trail, newest first, for security engineers and admins."""
    if not policies.can_read_audit(user):
        return AuditEvent.objects.none()
    return AuditEvent.objects.select_related("dataset").order_by("-id")


def audit_action_filter(events: QuerySet[AuditEvent], value: str) -> QuerySet[AuditEvent]:
    """Events of one action (``grant.revoked``) or of a family of them (``grant`` or ``grant.``)."""
    value = value.strip()
    family = value.rstrip(".")
    if value.endswith(".") or "." not in value:
        return events.filter(action__startswith=f"{family}.")
    return events.filter(action=value)


def role_matrix(*, user) -> list[RolePermission]:
    """Every cell of the matrix with its role, for the matrix page (everyone signed in may read it)."""
    if not policies.can_read_metadata(user):
        return []
    return list(RolePermission.objects.select_related("role").order_by("role__name", "environment", "sensitivity"))


def dataset_access_review(*, user, dataset) -> dict:
    """Standing and long-running access to one dataset, for its owners' and stewards' periodic review."""
    from access.models import AccessLevel, Role

    roles = []
    for role in Role.objects.prefetch_related("group__user_set", "permissions"):
        cell = next((c for c in role.permissions.all()
                     if c.environment == dataset.store.environment and c.sensitivity == decisions.dataset_tier(dataset)),
                    None)
        if cell is None:
            continue
        level = cell.standing if not cell.aggregated_only or decisions.is_aggregated(dataset) else AccessLevel.NONE
        if level >= AccessLevel.READ:
            members = [u for u in role.group.user_set.all() if u.is_active]
            roles.append({"role": role, "level": AccessLevel(level), "members": members})
    grants = list(
        Grant.objects.filter(dataset=dataset, status__in=decisions.LIVE_STATUSES)
        .select_related("user", "request", "dataset__store", "reviewed_by", "revoked_by")
        .order_by("starts_at")
    )
    return {"roles": roles, "grants": grants, "security_role": SECURITY_ROLE, "status_active": GrantStatus.ACTIVE}


def _access_reviewable(user) -> Q | None:
    """``policies.can_review_dataset_access`` as a filter on Dataset (None: every dataset)."""
    if user.is_superuser:
        return None
    condition = decisions.stewarded_filter(user)
    if decisions.is_security_engineer(user):
        condition |= decisions.tier_at_least_filter(policies.REVIEWED_BY_SECURITY_FROM)
    return condition


def access_review_list(*, user, due_only: bool = False):
    """Datasets whose access review this user may run, each with ``last_reviewed_at`` (the last
    ``access_review.confirmed``), ``live_grant_count`` and ``is_due`` (never reviewed, or not within
    ``ACCESS_REVIEW_INTERVAL_DAYS``); never reviewed first, then the longest ago. One query per page."""
    from catalog.models import Dataset
    from catalog.selectors import dataset_visible  # the catalog's one visibility rule

    if not policies.can_read_metadata(user) or getattr(user, "is_service_account", False):
        return Dataset.objects.none()
    datasets = dataset_visible(user=user)
    reviewable = _access_reviewable(user)
    if reviewable is not None:
        datasets = datasets.filter(reviewable)
    now = timezone.now()
    last = AuditEvent.objects.filter(dataset=OuterRef("pk"), action="access_review.confirmed").order_by("-id")
    live = Grant.objects.filter(
        dataset=OuterRef("pk"), status__in=decisions.LIVE_STATUSES, ends_at__gt=now
    ).order_by().values("dataset").annotate(n=Count("pk")).values("n")
    datasets = datasets.select_related("store").annotate(
        last_reviewed_at=Subquery(last.values("at")[:1]),
        last_reviewed_by=Subquery(last.values("actor_name")[:1]),
        live_grant_count=Coalesce(Subquery(live, output_field=IntegerField()), 0),
    )
    due_since = now - timedelta(days=settings.ACCESS_REVIEW_INTERVAL_DAYS)
    if due_only:
        datasets = datasets.filter(Q(last_reviewed_at__isnull=True) | Q(last_reviewed_at__lt=due_since))
    return datasets.order_by(F("last_reviewed_at").asc(nulls_first=True), "qualified_name")


def dataset_stewards(*, dataset) -> dict:
    """The dataset's stewards: ``users`` and ``groups`` (by name) holding its ``steward_dataset``
    object permission (with the groups' members), and the ``owners``. A constant few queries."""
    users = [
        row.user for row in DatasetUserObjectPermission.objects.filter(
            content_object=dataset, permission__codename=STEWARD_PERMISSION
        ).select_related("user").order_by("user__username")
    ]
    groups = [
        row.group for row in DatasetGroupObjectPermission.objects.filter(
            content_object=dataset, permission__codename=STEWARD_PERMISSION
        ).select_related("group").prefetch_related("group__user_set").order_by("group__name")
    ]
    return {"users": users, "groups": groups, "owners": sorted(dataset.owners.all(), key=lambda u: u.username)}


def dataset_steward_find(*, dataset, kind: str, name: str) -> tuple:
    """``(user, None)`` or ``(None, group)``: the steward of ``dataset`` of that ``kind`` ("user"
    or "group") and name, or ``(None, None)`` when there is none."""
    if kind == "user":
        row = DatasetUserObjectPermission.objects.filter(
            content_object=dataset, permission__codename=STEWARD_PERMISSION, user__username=name
        ).select_related("user").first()
        return (row.user if row else None), None
    row = DatasetGroupObjectPermission.objects.filter(
        content_object=dataset, permission__codename=STEWARD_PERMISSION, group__name=name
    ).select_related("group").first()
    return None, (row.group if row else None)


# Proposals ------------------------------------------------------------------------------------


def _proposal_base():
    from access.models import MetadataProposal, ProposalReview

    return MetadataProposal.objects.select_related("dataset__store", "store", "proposer").prefetch_related(
        Prefetch("reviews", queryset=ProposalReview.objects.select_related("reviewer"), to_attr="review_list")
    )


def proposal_visible(*, user):
    """Proposals a user may open: those on datasets they may see (a proposal shows that dataset's
    metadata and what the role matrix would give), and store proposals for store managers, security
    engineers and admins."""
    from catalog.selectors import dataset_visible  # the catalog's one visibility rule

    if not policies.can_read_metadata(user):
        return _proposal_base().none()
    base = _proposal_base()
    if user.is_superuser or decisions.is_security_engineer(user):
        return base
    stores = Q(dataset__isnull=True) if policies.can_manage_stores(user) else Q(dataset__isnull=True, proposer=user)
    return base.filter(Q(dataset__in=dataset_visible(user=user).values("pk")) | stores)


def proposal_queue(*, user):
    """Pending proposals this user may review (never their own, not yet reviewed by them), oldest first."""
    from access.models import ProposalReview, ProposalStatus

    if getattr(user, "is_service_account", False):
        return _proposal_base().none()
    pending = proposal_visible(user=user).filter(status=ProposalStatus.PENDING).exclude(proposer=user)
    if not (user.is_superuser or decisions.is_security_engineer(user)):
        pending = pending.filter(Q(reviewers=user) & decisions.stewarded_filter(user, "dataset"))  # ``can_review_proposal``
    return pending.exclude(Exists(ProposalReview.objects.filter(proposal=OuterRef("pk"), reviewer=user))).order_by(
        "created_at", "pk"
    )


def service_account_list(*, user):
    """Service accounts with their token counts, for those who manage them (nobody else sees any)."""
    from access.models import User

    if not policies.can_manage_service_accounts(user):
        return User.objects.none()
    live = Q(service_tokens__revoked_at__isnull=True) & (
        Q(service_tokens__expires_at__isnull=True) | Q(service_tokens__expires_at__gt=timezone.now())
    )
    return (
        User.objects.filter(is_service_account=True)
        .annotate(live_tokens=Count("service_tokens", filter=live), last_used_at=Max("service_tokens__last_used_at"))
        .prefetch_related("groups__company_role")
        .order_by("username")
    )


def service_token_list(*, user, account):
    """An account's tokens, newest first, for those who manage service accounts."""
    from access.models import ServiceToken

    if not policies.can_manage_service_accounts(user):
        return ServiceToken.objects.none()
    return ServiceToken.objects.filter(user=account).select_related("created_by", "revoked_by").order_by("-created_at", "-pk")
