"""Just-in-time access: requests, reviews, grants, break-glass, and the role matrix.

Every transition runs in a transaction under a row lock and writes its audit event in that
same transaction (if the audit write fails, the change fails). Eligibility and the maximum
duration are checked when a request is made and again when it is approved. Warehouse
enforcement and mail are sent after commit.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template.defaultfilters import pluralize
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from access import decisions, policies
from access.audit import audit_record, audit_record_many
from access.models import (
    STEWARD_PERMISSION,
    AccessLevel,
    AccessRequest,
    AccessReview,
    DatasetGroupObjectPermission,
    DatasetUserObjectPermission,
    Enforcement,
    Grant,
    GrantStatus,
    RequestStatus,
    ReviewDecision,
    RolePermission,
    text_length_errors,
)
from catalog.models import Dataset, DatasetStatus
from catalog.vocabulary import Sensitivity

REQUESTABLE = (AccessLevel.READ, AccessLevel.WRITE)
MIN_JUSTIFICATION = 10
TICKET_MAX_LENGTH = AccessRequest._meta.get_field("ticket").max_length


def _after_commit(callback) -> None:
    transaction.on_commit(callback, robust=True)


def _notify(kind: str, **ids) -> None:
    from access import tasks

    _after_commit(lambda: tasks.access_notify.delay(kind, **ids))


def _enforce(grant: Grant) -> None:
    from access import tasks

    grant_id = grant.pk
    _after_commit(lambda: tasks.grant_enforce.delay(grant_id))


def _enforcement_start(dataset: Dataset) -> str:
    """Pending where a managed PostgreSQL connection can carry the grant, else not managed."""
    from access.enforcement import store_is_managed

    return Enforcement.PENDING if store_is_managed(dataset.store) else Enforcement.NOT_MANAGED


def _dataset_locked(dataset_id) -> Dataset:
    return Dataset.objects.select_related("store").get(pk=dataset_id)


def _scope(dataset: Dataset, level, columns) -> tuple[int, list[str], dict]:
    errors = {}
    names_of_levels = {"read": AccessLevel.READ, "write": AccessLevel.WRITE}
    try:
        level = names_of_levels[level.lower()] if isinstance(level, str) and level.lower() in names_of_levels else AccessLevel(int(level))
    except (TypeError, ValueError):
        level = None
    if level not in REQUESTABLE:
        errors["level"] = ["Ask for read or write."]
    names = []
    if columns:
        if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
            errors["columns"] = ["A list of column names."]
        else:
            known = {c.name.lower(): c.name for c in dataset.columns.all()}
            unknown = [c for c in columns if c.lower() not in known]
            if unknown:
                errors["columns"] = [f"Not columns of {dataset.qualified_name}: {', '.join(unknown[:10])}."]
            names = sorted({known[c.lower()] for c in columns if c.lower() in known})
    return level, names, errors


def _duration(value, field="duration") -> timedelta:
    if isinstance(value, timedelta):
        duration = value
    else:
        try:
            duration = timedelta(hours=float(value))
        except (TypeError, ValueError):
            raise ValidationError({field: ["A number of hours."]}) from None
        except OverflowError:  # 1e308 hours: more than any policy allows
            raise ValidationError({field: ["Far too long."]}) from None
    if duration <= timedelta(0):
        raise ValidationError({field: ["Must be more than zero."]})
    return duration


def _eligible_cell(user, dataset: Dataset, level: int, names: list[str], duration: timedelta) -> tuple[RolePermission, int]:
    """The matrix cell that lets ``user`` ask for this, or a ValidationError/PermissionDenied saying why not."""
    environment = dataset.store.environment
    tier = decisions.scope_sensitivity(dataset, names)
    cell = decisions.cell_for_request(user, environment, tier, level)
    if cell is None:
        raise PermissionDenied(
            f"Your roles may not ask for {AccessLevel(level).label.lower()} access to {environment} data "
            f"that is {Sensitivity(tier).label}."
        )
    limit = timedelta(hours=cell.jit_max_hours)
    if duration > limit:
        raise ValidationError({"duration": [f"At most {cell.jit_max_hours} hour{pluralize(cell.jit_max_hours)} for this scope."]})
    return cell, tier


# Requests ------------------------------------------------------------------------------------


def access_request_create(
    *, principal, dataset: Dataset, level, duration, justification: str, columns=None, ticket: str = "",
    extends: Grant | None = None, remote_addr: str = "",
) -> AccessRequest:
    """Ask for read or write access to ``dataset`` (or some of its columns) for ``duration`` hours."""
    if not getattr(principal, "pk", None) or principal.is_service_account:
        raise PermissionDenied("Only people ask for access; service accounts get roles.")
    dataset = Dataset.objects.select_related("store").get(pk=dataset.pk)
    if not decisions.access_decide(principal, "metadata", dataset) and extends is None:
        raise PermissionDenied("You may not see this dataset.")
    level, names, errors = _scope(dataset, level, columns)
    justification = (justification or "").strip()
    ticket = (ticket or "").strip()
    if len(justification) < MIN_JUSTIFICATION:
        errors["justification"] = [f"Say why you need it (at least {MIN_JUSTIFICATION} characters)."]
    errors.update(text_length_errors(justification=justification))
    if len(ticket) > TICKET_MAX_LENGTH:
        errors["ticket"] = [f"At most {TICKET_MAX_LENGTH} characters: a reference such as SEC-1234."]
    try:
        duration = _duration(duration)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if dataset.status != DatasetStatus.ACTIVE:
        errors["dataset"] = ["This dataset is deprecated."]
    if errors:
        raise ValidationError(errors)
    held = decisions.access_decide(principal, "write" if level == AccessLevel.WRITE else "read", dataset, names)
    if held.via == "standing":
        raise ValidationError({"level": ["Your roles already give you this access; nothing to ask for."]})
    if held.grant is not None and extends is None:
        raise ValidationError({"level": [
            f"Your live grant #{held.grant.pk} already gives this access; ask to extend it instead."
        ]})
    cell, tier = _eligible_cell(principal, dataset, level, names, duration)
    if cell.ticket_required and not ticket:
        raise ValidationError({"ticket": ["This scope needs a ticket reference."]})
    now = timezone.now()
    duplicate = ValidationError({"dataset": ["You already have a pending request for this dataset."]})
    try:
        with transaction.atomic():
            if extends is None and AccessRequest.objects.filter(
                requester=principal, dataset=dataset, status=RequestStatus.PENDING, extends__isnull=True
            ).exists():
                raise duplicate
            request = AccessRequest.objects.create(
                requester=principal, dataset=dataset, columns=names, level=level,
                environment=dataset.store.environment, sensitivity=tier, justification=justification,
                ticket=ticket, duration=duration, approvals_required=cell.approvals_required,
                security_approval_required=cell.security_approval_required, extends=extends,
                expires_at=now + timedelta(hours=settings.ACCESS_REQUEST_TTL_HOURS),
            )
            audit_record(
                actor=principal, action="request.created", obj=request, dataset=dataset, reason=justification,
                remote_addr=remote_addr, details=_request_details(request),
            )
            _notify("request_created", request_id=request.pk)
    except IntegrityError:  # two at once: the partial unique constraint lets only one through
        raise duplicate from None
    return request


def _request_details(request: AccessRequest) -> dict:
    return {
        "level": AccessLevel(request.level).label, "columns": request.columns,
        "environment": request.environment, "sensitivity": Sensitivity(request.sensitivity).label,
        "duration_hours": round(request.duration.total_seconds() / 3600, 2), "ticket": request.ticket,
        "extends": request.extends_id, "break_glass": request.is_break_glass,
    }


def _locked_request(request) -> AccessRequest:
    return AccessRequest.objects.select_for_update(of=("self",)).select_related(
        "dataset__store", "requester", "extends"
    ).get(pk=request.pk)


def _expire_if_due(request: AccessRequest, now) -> bool:
    if request.status == RequestStatus.PENDING and request.expires_at <= now:
        request.status, request.decided_at = RequestStatus.EXPIRED, now
        request.save(update_fields=["status", "decided_at"])
        audit_record(actor=None, action="request.expired", obj=request, dataset=request.dataset)
        return True
    return False


def access_request_review(*, principal, request: AccessRequest, approve: bool, reason: str = "", remote_addr: str = "") -> AccessRequest:
    """One approver's decision. Enough approvals (with a security engineer's where needed)
    approve the request and make its grant; one denial denies it."""
    reason = (reason or "").strip()
    if errors := text_length_errors(reason=reason):
        raise ValidationError(errors)
    now = timezone.now()
    with transaction.atomic():
        request = _locked_request(request)
        expired = _expire_if_due(request, now)  # kept: the expiry commits, the review does not happen
    if expired:
        raise ValidationError({"status": ["This request expired before anyone decided it."]})
    extends_id = AccessRequest.objects.filter(pk=request.pk).values_list("extends_id", flat=True).first()
    with transaction.atomic():
        if extends_id:  # the grant it extends first, as a revocation locks them
            Grant.objects.select_for_update(of=("self",)).filter(pk=extends_id).first()
        request = _locked_request(request)
        if request.status != RequestStatus.PENDING:
            raise ValidationError({"status": [f"This request is already {request.get_status_display().lower()}."]})
        if request.requester_id == principal.pk:
            raise PermissionDenied("Nobody may review their own request.")
        if not policies.can_review_request(principal, request):
            raise PermissionDenied("Only the dataset's owners (and security engineers, for Restricted data) review this request.")
        if request.reviews.filter(reviewer=principal, superseded=False).exists():
            raise ValidationError({"review": ["You already reviewed this request."]})
        if not approve and not reason:  # after the permission checks: an outsider learns nothing
            raise ValidationError({"reason": ["Say why you deny it."]})
        as_security = decisions.is_security_engineer(principal)
        review = AccessReview.objects.create(
            request=request, reviewer=principal, decision=ReviewDecision.APPROVE if approve else ReviewDecision.DENY,
            reason=reason, as_security_engineer=as_security,
        )
        audit_record(
            actor=principal, action="request.reviewed", obj=request, dataset=request.dataset, reason=reason,
            remote_addr=remote_addr, details={"decision": review.decision, "as_security_engineer": as_security},
        )
        if not approve:
            request.status, request.decided_at = RequestStatus.DENIED, now
            request.save(update_fields=["status", "decided_at"])
            audit_record(actor=principal, action="request.denied", obj=request, dataset=request.dataset, reason=reason,
                         remote_addr=remote_addr)
            _notify("request_decided", request_id=request.pk)
            return request
        # The rules as they are now: the matrix, or the data's classification, may have changed
        # since the request. Stricter rules apply to it from now on; looser ones do not.
        cell, tier = _eligible_cell(request.requester, request.dataset, request.level, request.columns, request.duration)
        if cell.ticket_required and not request.ticket:
            raise ValidationError({"ticket": [
                "This scope now needs a ticket reference; the requester should cancel and ask again with one."
            ]})
        _rules_tighten(request, cell, tier)
        approvals = list(request.reviews.filter(decision=ReviewDecision.APPROVE, superseded=False))
        enough = len(approvals) >= request.approvals_required
        security_ok = not request.security_approval_required or any(r.as_security_engineer for r in approvals)
        if not (enough and security_ok):
            return request  # waits for the other approver(s)
        request.status, request.decided_at = RequestStatus.APPROVED, now
        request.save(update_fields=["status", "decided_at"])
        audit_record(actor=principal, action="request.approved", obj=request, dataset=request.dataset, reason=reason,
                     remote_addr=remote_addr, details={"approvals": [r.reviewer_id for r in approvals]})
        grant = _grant_create(request, now, actor=principal, remote_addr=remote_addr)
        _notify("request_decided", request_id=request.pk)
    return grant.request


def _rules_tighten(request: AccessRequest, cell: RolePermission, tier: int) -> None:
    """Raise a pending request to the rules of its scope now (a higher tier, more approvals, a
    security engineer's approval), audited; the approvers it now needs are told."""
    changes = {}
    if tier > request.sensitivity:
        changes["sensitivity"] = [Sensitivity(request.sensitivity).label, Sensitivity(tier).label]
        request.sensitivity = tier
    if cell.approvals_required > request.approvals_required:
        changes["approvals_required"] = [request.approvals_required, cell.approvals_required]
        request.approvals_required = cell.approvals_required
    if cell.security_approval_required and not request.security_approval_required:
        changes["security_approval_required"] = [False, True]
        request.security_approval_required = True
    if not changes:
        return
    request.save(update_fields=["sensitivity", "approvals_required", "security_approval_required"])
    # Approvals given under the looser rules did not see this: they no longer count, and their
    # reviewers may approve again.
    changes["approvals_superseded"] = request.reviews.filter(
        decision=ReviewDecision.APPROVE, superseded=False).update(superseded=True)
    audit_record(actor=None, action="request.rules_tightened", obj=request, dataset=request.dataset,
                 reason="The data or the role matrix changed since the request.", details=changes)
    _notify("request_created", request_id=request.pk)


def _grant_create(request: AccessRequest, now, *, actor, remote_addr="", break_glass=False) -> Grant:
    starts_at = now
    if request.extends_id and request.extends.status in decisions.LIVE_STATUSES and request.extends.ends_at > now:
        starts_at = request.extends.ends_at  # an extension follows the grant it extends
    grant = Grant.objects.create(
        request=request, user=request.requester, dataset=request.dataset, columns=request.columns,
        level=request.level, starts_at=starts_at, ends_at=starts_at + request.duration,
        status=GrantStatus.ACTIVE if starts_at <= now else GrantStatus.SCHEDULED,
        is_break_glass=break_glass, review_required=break_glass,
        enforcement=_enforcement_start(request.dataset),
    )
    audit_record(
        actor=actor, action="grant.scheduled" if grant.status == GrantStatus.SCHEDULED else "grant.activated",
        obj=grant, dataset=request.dataset, remote_addr=remote_addr,
        details={"user": request.requester.username, "level": AccessLevel(grant.level).label, "columns": grant.columns,
                 "starts_at": grant.starts_at.isoformat(), "ends_at": grant.ends_at.isoformat(),
                 "break_glass": break_glass},
    )
    if grant.status == GrantStatus.ACTIVE and grant.enforcement == Enforcement.PENDING:
        _enforce(grant)
    return grant


def access_request_cancel(*, principal, request: AccessRequest, remote_addr: str = "") -> AccessRequest:
    with transaction.atomic():
        request = _locked_request(request)
        if request.requester_id != principal.pk:
            raise PermissionDenied("Only the requester cancels a request.")
        if request.status != RequestStatus.PENDING:
            raise ValidationError({"status": [f"This request is already {request.get_status_display().lower()}."]})
        request.status, request.decided_at = RequestStatus.CANCELLED, timezone.now()
        request.save(update_fields=["status", "decided_at"])
        audit_record(actor=principal, action="request.cancelled", obj=request, dataset=request.dataset,
                     remote_addr=remote_addr)
    return request


def access_requests_expire_stale() -> int:
    """Pending requests nobody decided in time become expired (worker, every few minutes)."""
    now, expired = timezone.now(), 0
    for request_id in AccessRequest.objects.filter(status=RequestStatus.PENDING, expires_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            request = AccessRequest.objects.select_for_update(of=("self",)).select_related("dataset").get(pk=request_id)
            if _expire_if_due(request, timezone.now()):
                expired += 1
                _notify("request_decided", request_id=request.pk)
    return expired


# Grants --------------------------------------------------------------------------------------


def _locked_grant(grant) -> Grant:
    return Grant.objects.select_for_update(of=("self",)).select_related("dataset__store", "user", "request").get(pk=grant.pk)


def _end(grant: Grant, status: str, now) -> None:
    grant.status, grant.ended_at = status, now
    fields = ["status", "ended_at"]
    if grant.enforcement in (Enforcement.PENDING, Enforcement.APPLIED, Enforcement.APPLY_FAILED, Enforcement.REVOKE_FAILED):
        grant.enforcement, grant.enforcement_attempts = Enforcement.REVOKE_PENDING, 0
        fields += ["enforcement", "enforcement_attempts"]
        _enforce(grant)
    grant.save(update_fields=fields)


def grant_revoke(*, principal, grant: Grant, reason: str, remote_addr: str = "") -> Grant:
    """End a grant early: the user themselves, the dataset's owners, security engineers or an admin."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the grant ends early."]})
    if errors := text_length_errors(reason=reason):
        raise ValidationError(errors)
    now = timezone.now()
    with transaction.atomic():
        grant = _locked_grant(grant)
        if not policies.can_revoke_grant(principal, grant):
            raise PermissionDenied("Only the grant's holder, the dataset's owners, security engineers or an admin end it.")
        if grant.status not in decisions.LIVE_STATUSES:
            raise ValidationError({"status": [f"This grant is already {grant.get_status_display().lower()}."]})
        ended = [grant]
        # Extensions already approved but not yet started end with the grant they extend,
        # or a revoked user would get access back when the old grant's time runs out.
        while True:
            follow_ups = list(Grant.objects.select_for_update(of=("self",)).select_related("dataset", "user").filter(
                request__extends__in=ended, status=GrantStatus.SCHEDULED,
            ).exclude(pk__in=[g.pk for g in ended]))
            if not follow_ups:
                break
            ended += follow_ups
        _revoke(ended, now, actor=principal, reason=reason, remote_addr=remote_addr)
    return grant


def _revoke(ended: list[Grant], now, *, actor, reason: str, remote_addr: str = "", details=None) -> None:
    """Revoke locked live grants (the first one, then the approved extensions that would follow
    it): each audited, their pending extension requests cancelled, the holder told."""
    extensions = _extensions_locked(ended)  # before any audit write
    for ending in ended:
        ending.revoked_by = actor if getattr(actor, "pk", None) else None
        ending.revoked_at, ending.revoke_reason = now, reason
        ending.save(update_fields=["revoked_by", "revoked_at", "revoke_reason"])
        _end(ending, GrantStatus.REVOKED, now)
        event_details = {"user": ending.user.username, **(details or {})}
        if ending is not ended[0]:
            event_details["extends_revoked_grant"] = ended[0].pk
        audit_record(actor=actor, action="grant.revoked", obj=ending, dataset=ending.dataset, reason=reason,
                     remote_addr=remote_addr, details=event_details)
    _extensions_cancel(extensions, now, actor=actor, remote_addr=remote_addr)
    _notify("grant_ended", grant_id=ended[0].pk)


def _extensions_locked(grants) -> list[AccessRequest]:
    """The pending requests to extend ``grants``, locked. Taken right after the grants and before
    any audit write: a grant, then its extension requests, then the audit head is the order every
    transition takes (a review of an extension locks the grant it extends first)."""
    return list(AccessRequest.objects.select_for_update(of=("self",)).select_related("dataset").filter(
        extends__in=grants, status=RequestStatus.PENDING
    ).order_by("pk"))


def _extensions_cancel(pending: list[AccessRequest], now, *, actor, remote_addr: str = "") -> None:
    """Pending requests to extend grants that were revoked are cancelled: approving one later
    would give the access straight back."""
    for request in pending:
        request.status, request.decided_at = RequestStatus.CANCELLED, now
        request.save(update_fields=["status", "decided_at"])
        audit_record(actor=actor, action="request.cancelled", obj=request, dataset=request.dataset,
                     reason=f"The grant it extends (#{request.extends_id}) was revoked.", remote_addr=remote_addr)


def grant_end_outgrown(grant: Grant, now) -> bool:
    """End a live grant (locked by the caller) whose scope became more sensitive than its approvers
    saw: revoked by the catalog, audited, the holder told; the warehouse privilege is taken back.
    Returns whether it ended."""
    tier = decisions.grant_outgrown(grant) if grant.status in decisions.LIVE_STATUSES else None
    if tier is None:
        return False
    approved, became = Sensitivity(grant.request.sensitivity).label, Sensitivity(tier).label
    _revoke([grant], now, actor=None, reason=f"The data became {became}; this grant was approved for {approved}. Ask again.",
            details={"approved_for": approved, "now": became})
    return True


def grants_end_outgrown(*, dataset_ids=None) -> int:
    """End the live grants (on ``dataset_ids``, a list or a subquery; all if None) that no longer
    cover what they show, each in its own transaction. The worker runs it after a classification
    rose (``grants_end_outgrown_after_commit``), the reconciler on every pass; the decision refuses
    an outgrown grant meanwhile, so nothing is exposed while it waits."""
    # A scope's tier is never above its dataset's, so only these can have outgrown their approval
    # (an unclassified dataset's tier is the configured default, which the operator may have raised).
    candidates = Grant.objects.filter(Q(request__sensitivity__lt=F("dataset__sensitivity")) | Q(dataset__classified=False),
                                      status__in=decisions.LIVE_STATUSES)
    if dataset_ids is not None:
        candidates = candidates.filter(dataset_id__in=dataset_ids)
    ended = 0
    for grant_id in candidates.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            ended += grant_end_outgrown(_locked_grant(Grant(pk=grant_id)), timezone.now())
    return ended


def grants_end_outgrown_after_commit(dataset_ids) -> None:
    """For a writer that may have raised these datasets' classification (a registration, a sync
    batch, an accepted suggestion): end their outgrown grants once its transaction committed, in
    a task, never under the writer's locks."""
    from access import tasks

    ids = sorted(set(dataset_ids))
    if ids:
        _after_commit(lambda: tasks.grants_end_outgrown.delay(ids))


def grants_expire_due() -> int:
    """Live grants past their end become expired; scheduled ones whose time came become active."""
    now, changed = timezone.now(), 0
    for grant_id in Grant.objects.filter(status__in=decisions.LIVE_STATUSES, ends_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            grant = _locked_grant(Grant(pk=grant_id))
            if grant.status in decisions.LIVE_STATUSES and grant.ends_at <= timezone.now():
                _end(grant, GrantStatus.EXPIRED, timezone.now())
                audit_record(actor=None, action="grant.expired", obj=grant, dataset=grant.dataset,
                             details={"user": grant.user.username})
                _notify("grant_ended", grant_id=grant.pk)
                changed += 1
    for grant_id in Grant.objects.filter(status=GrantStatus.SCHEDULED, starts_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            grant = _locked_grant(Grant(pk=grant_id))
            if grant.status == GrantStatus.SCHEDULED and grant.starts_at <= timezone.now() < grant.ends_at:
                grant.status = GrantStatus.ACTIVE
                grant.save(update_fields=["status"])
                audit_record(actor=None, action="grant.activated", obj=grant, dataset=grant.dataset,
                             details={"user": grant.user.username, "scheduled": True})
                if grant.enforcement == Enforcement.PENDING:
                    _enforce(grant)
                changed += 1
    return changed


def grant_extend(*, principal, grant: Grant, duration, justification: str, ticket: str = "", remote_addr: str = "") -> AccessRequest:
    """Ask to extend a live grant: a new request for the same scope, linked to the grant."""
    with transaction.atomic():  # the grant's lock makes two clicks at once one extension
        grant = Grant.objects.select_for_update(of=("self",)).select_related("dataset__store").get(pk=grant.pk)
        if grant.user_id != principal.pk:
            raise PermissionDenied("Only the grant's holder asks to extend it.")
        if grant.status not in decisions.LIVE_STATUSES or grant.ends_at <= timezone.now():
            raise ValidationError({"grant": ["Only a live grant can be extended; ask for access again."]})
        if grant.extension_requests.filter(status=RequestStatus.PENDING).exists():
            raise ValidationError({"grant": ["An extension of this grant is already waiting for review."]})
        return access_request_create(
            principal=principal, dataset=grant.dataset, level=grant.level, columns=grant.columns, duration=duration,
            justification=justification, ticket=ticket, extends=grant, remote_addr=remote_addr,
        )


# Break-glass ---------------------------------------------------------------------------------


def break_glass_activate(
    *, principal, dataset: Dataset, level, reason: str, minutes=None, columns=None, remote_addr: str = ""
) -> Grant:
    """Access at once for an emergency: the role must allow break-glass for this scope; the grant
    is capped short, every approver is told, and a review after the fact is required."""
    if not getattr(principal, "pk", None) or principal.is_service_account:
        raise PermissionDenied("Only people use break-glass.")
    dataset = Dataset.objects.select_related("store").get(pk=dataset.pk)
    level, names, errors = _scope(dataset, level, columns)
    reason = (reason or "").strip()
    if len(reason) < MIN_JUSTIFICATION:
        errors["reason"] = [f"Say what the emergency is (at least {MIN_JUSTIFICATION} characters)."]
    errors.update(text_length_errors(reason=reason))
    cap = settings.ACCESS_BREAK_GLASS_MAX_MINUTES
    try:
        minutes = int(minutes) if minutes not in (None, "") else cap
        if not 1 <= minutes <= cap:
            errors["minutes"] = [f"Between 1 and {cap} minutes."]
    except (TypeError, ValueError):
        errors["minutes"] = ["A whole number of minutes."]
    if errors:
        raise ValidationError(errors)
    tier = decisions.scope_sensitivity(dataset, names)
    cell = decisions.cell_for_request(principal, dataset.store.environment, tier, level)
    if cell is None or not any(
        c.break_glass for c in decisions.matrix_cells(principal)
        if c.environment == dataset.store.environment and c.sensitivity == tier and c.jit_level >= level
    ):
        raise PermissionDenied("Your roles do not allow break-glass for this scope; ask for access instead.")
    now = timezone.now()
    with transaction.atomic():
        request = AccessRequest.objects.create(
            requester=principal, dataset=dataset, columns=names, level=level, environment=dataset.store.environment,
            sensitivity=tier, justification=reason, duration=timedelta(minutes=minutes), status=RequestStatus.APPROVED,
            approvals_required=cell.approvals_required, security_approval_required=cell.security_approval_required,
            is_break_glass=True, expires_at=now, decided_at=now,
        )
        audit_record(actor=principal, action="break_glass.activated", obj=request, dataset=dataset, reason=reason,
                     remote_addr=remote_addr, details=_request_details(request))
        grant = _grant_create(request, now, actor=principal, remote_addr=remote_addr, break_glass=True)
        _notify("break_glass", grant_id=grant.pk)
    return grant


def break_glass_review(*, principal, grant: Grant, note: str, remote_addr: str = "") -> Grant:
    """The after-the-fact review of a break-glass grant, by an approver other than its user."""
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": ["Say what you found."]})
    if errors := text_length_errors(note=note):
        raise ValidationError(errors)
    with transaction.atomic():
        grant = _locked_grant(grant)
        if not grant.is_break_glass or not grant.review_required:
            raise ValidationError({"grant": ["This grant needs no review."]})
        if grant.reviewed_at is not None:
            raise ValidationError({"grant": ["Already reviewed."]})
        if not policies.can_review_break_glass(principal, grant):
            raise PermissionDenied("An approver of this dataset, a security engineer or an admin other than the "
                                   "grant's user reviews it.")
        grant.reviewed_by, grant.reviewed_at, grant.review_note = principal, timezone.now(), note
        grant.save(update_fields=["reviewed_by", "reviewed_at", "review_note"])
        audit_record(actor=principal, action="break_glass.reviewed", obj=grant, dataset=grant.dataset, reason=note,
                     remote_addr=remote_addr)
    return grant


# Role matrix ---------------------------------------------------------------------------------

MATRIX_FIELDS = (
    "standing", "aggregated_only", "jit_level", "jit_max_hours", "approvals_required",
    "security_approval_required", "ticket_required", "break_glass",
)


def role_permission_update(*, principal, cell: RolePermission, remote_addr: str = "", **fields) -> RolePermission:
    """Change one cell of the role matrix (admins only), audited with before and after."""
    if not policies.can_edit_role_matrix(principal):
        raise PermissionDenied("Only an admin edits the role matrix.")
    unknown = set(fields) - set(MATRIX_FIELDS)
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    with transaction.atomic():
        cell = RolePermission.objects.select_for_update().select_related("role").get(pk=cell.pk)
        before = {name: getattr(cell, name) for name in MATRIX_FIELDS}
        for name, value in fields.items():
            setattr(cell, name, value)
        if cell.jit_level and cell.jit_max_hours == 0:
            raise ValidationError({"jit_max_hours": ["Give a maximum duration for just-in-time access."]})
        if cell.jit_max_hours > settings.ACCESS_JIT_MAX_HOURS:
            raise ValidationError({"jit_max_hours": [
                f"At most {settings.ACCESS_JIT_MAX_HOURS:,} hours (ACCESS_JIT_MAX_HOURS); break-glass is capped "
                f"separately at {settings.ACCESS_BREAK_GLASS_MAX_MINUTES} minutes."
            ]})
        if cell.break_glass and not cell.jit_level:
            raise ValidationError({"break_glass": ["Break-glass needs a just-in-time level."]})
        cell.full_clean()
        after = {name: getattr(cell, name) for name in MATRIX_FIELDS}
        if after == before:
            return cell
        cell.save()
        audit_record(
            actor=principal, action="matrix.changed", obj=cell, remote_addr=remote_addr,
            details={"role": cell.role.slug, "environment": cell.environment,
                     "sensitivity": Sensitivity(cell.sensitivity).label,
                     "before": {k: v for k, v in before.items() if before[k] != after[k]},
                     "after": {k: v for k, v in after.items() if before[k] != after[k]}},
        )
    return cell


# Audit of reads ------------------------------------------------------------------------------


def restricted_metadata_viewed(
    *, principal, dataset: Dataset, remote_addr: str = "", via: str = "page", versions=()
) -> None:
    """Record that someone looked at the metadata of Restricted columns: of the dataset as it is,
    or, when ``versions`` are given, as those versions recorded them."""
    if versions:
        restricted = Sensitivity.RESTRICTED.label
        shown = [version.number for version in versions
                 if any(column.get("sensitivity") == restricted for column in version.columns)]
        if not shown:
            return
        details = {"via": via, "versions": shown}
    elif dataset.sensitivity < Sensitivity.RESTRICTED:
        return
    else:
        details = {"via": via}
    with transaction.atomic():
        audit_record(actor=principal, action="metadata.restricted_viewed", obj=dataset, dataset=dataset,
                     remote_addr=remote_addr, details=details)


def restricted_columns_viewed(*, principal, shown, remote_addr: str = "", via: str) -> None:
    """Record that someone saw the metadata of some Restricted columns of several datasets at once
    (lineage graphs, a column's impact, the violations list): ``shown`` is ``[(dataset, [column
    names])]``. One event per dataset naming its columns, all written together, so a list page
    costs the same few queries however many datasets it shows."""
    entries = [
        {"actor": principal, "action": "metadata.restricted_viewed", "obj": dataset, "dataset": dataset,
         "remote_addr": remote_addr, "details": {"via": via, "columns": sorted(set(columns))}}
        for dataset, columns in shown if columns
    ]
    if entries:
        with transaction.atomic():
            audit_record_many(entries)


def audit_exported(*, principal, fmt: str, filters: dict, remote_addr: str = "") -> None:
    """Record that someone exported (part of) the audit trail, with the filters they used."""
    with transaction.atomic():
        audit_record(actor=principal, action="audit.exported", remote_addr=remote_addr,
                     details={"format": fmt, "filters": {k: v for k, v in filters.items() if v not in ("", None)}})


def grants_exported(*, principal, filters: dict, remote_addr: str = "") -> None:
    """Record that someone exported the grants list, with the filters they used."""
    with transaction.atomic():
        audit_record(actor=principal, action="grant.exported", remote_addr=remote_addr,
                     details={"format": "csv", "filters": {k: v for k, v in filters.items() if v not in ("", None)}})


def approvers_for(request: AccessRequest):
    """Who may review a request: the dataset's owners and stewards (users, and members of steward
    groups), security engineers for Restricted data
    (or where the matrix asks for a security approval), and admins; never the requester."""
    from access.models import User

    stewards = Q(pk__in=DatasetUserObjectPermission.objects.filter(
        content_object=request.dataset_id, permission__codename=STEWARD_PERMISSION
    ).values("user_id")) | Q(groups__in=DatasetGroupObjectPermission.objects.filter(
        content_object=request.dataset_id, permission__codename=STEWARD_PERMISSION
    ).values("group_id"))
    condition = Q(owned_datasets=request.dataset) | stewards | Q(is_superuser=True)
    if request.sensitivity >= Sensitivity.RESTRICTED or request.security_approval_required:
        condition |= Q(groups__company_role__slug="security_engineer")
    return User.objects.filter(condition, is_active=True, is_service_account=False).exclude(pk=request.requester_id).distinct()


def dataset_access_review_confirm(*, principal, dataset: Dataset, note: str = "", remote_addr: str = "") -> None:
    """An owner's or steward's periodic access review of a dataset: they confirm the access it lists now."""
    if not policies.can_review_dataset_access(principal, dataset):
        raise PermissionDenied("The dataset's owners and stewards, admins, and security engineers from Sensitive up "
                               "review its access.")
    note = (note or "").strip()
    if errors := text_length_errors(note=note):
        raise ValidationError(errors)
    live = list(Grant.objects.filter(dataset=dataset, status__in=decisions.LIVE_STATUSES).values_list("pk", flat=True))
    with transaction.atomic():
        audit_record(actor=principal, action="access_review.confirmed", obj=dataset, dataset=dataset,
                     reason=note, remote_addr=remote_addr, details={"live_grants": live})


# Stewards ------------------------------------------------------------------------------------


def steward_target_find(*, username: str = "", group_name: str = "") -> tuple:
    """``(user, None)`` or ``(None, group)`` for a username or a group name from a form or a
    request body, or a ValidationError naming the field."""
    from access.models import User

    username, group_name = (username or "").strip(), (group_name or "").strip()
    if bool(username) == bool(group_name):
        raise ValidationError({"user": ["Name one user or one group."]})
    if username:
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise ValidationError({"user": [f"No active user named {username!r}."]})
        return user, None
    group = Group.objects.filter(name=group_name).first()
    if group is None:
        raise ValidationError({"group": [f"No group named {group_name!r}."]})
    return None, group


def _steward_target(user, group) -> tuple[str, object]:
    """("user", user) or ("group", group): exactly one, and a person, not a service account."""
    if (user is None) == (group is None):
        raise ValidationError({"user": ["Name one user or one group."]})
    if user is not None:
        if not getattr(user, "pk", None) or not user.is_active:
            raise ValidationError({"user": ["No such active user."]})
        if user.is_service_account:
            raise ValidationError({"user": ["Service accounts cannot be stewards; they never review access."]})
        return "user", user
    if not isinstance(group, Group) or not group.pk:
        raise ValidationError({"group": ["No such group."]})
    return "group", group


def _steward_rows(kind: str, target, dataset: Dataset):
    model, field = (DatasetUserObjectPermission, "user") if kind == "user" else (DatasetGroupObjectPermission, "group")
    return model.objects.filter(**{field: target}, content_object=dataset, permission__codename=STEWARD_PERMISSION)


def _steward_change(*, principal, dataset: Dataset, user, group, add: bool, remote_addr: str):
    with transaction.atomic():
        # The dataset's row lock orders concurrent changes of its stewards (and of its owners).
        dataset = Dataset.objects.select_for_update(of=("self",)).select_related("store").get(pk=dataset.pk)
        if not policies.can_change_stewards(principal, dataset):  # before the input: an outsider learns nothing
            raise PermissionDenied("Only the dataset's owners, registrars or an admin change its stewards.")
        kind, target = _steward_target(user, group)
        name = target.username if kind == "user" else target.name
        exists = _steward_rows(kind, target, dataset).exists()
        if add and exists:
            raise ValidationError({kind: [f"{name} is already a steward of {dataset.qualified_name}."]})
        if not add and not exists:
            raise ValidationError({kind: [f"{name} is not a steward of {dataset.qualified_name}."]})
        if add and not decisions.is_owner(principal, dataset):
            # A steward approves access and edits metadata: naming one for someone else's dataset
            # is a proposal its owners (or a security engineer) approve. Owners delegate at once.
            from access.proposals import proposal_create

            return proposal_create(principal=principal, dataset=dataset, changes={"stewards": {"add": {kind: name}}},
                                   remote_addr=remote_addr)
        if add:
            assign_perm(STEWARD_PERMISSION, target, dataset)
        else:
            remove_perm(STEWARD_PERMISSION, target, dataset)
        audit_record(
            actor=principal, action="steward.added" if add else "steward.removed", obj=dataset, dataset=dataset,
            remote_addr=remote_addr, details={kind: name},
        )
    if kind == "user":
        vars(target).pop("_steward_dataset_ids", None)  # this object's cached stewardships are stale now
    return None


def dataset_steward_add(*, principal, dataset: Dataset, user=None, group=None, remote_addr: str = ""):
    """Make a user, or every member of a group, a steward of ``dataset``: they review its
    access requests, run its access review and edit it, like an owner. Stored as django-guardian's
    ``catalog.steward_dataset`` object permission (direct foreign-key tables), audited.

    An owner names stewards at once (returns None); anyone else (a registrar, an admin) proposes
    it, and the pending ``MetadataProposal`` is returned."""
    return _steward_change(principal=principal, dataset=dataset, user=user, group=group, add=True, remote_addr=remote_addr)


def dataset_steward_remove(*, principal, dataset: Dataset, user=None, group=None, remote_addr: str = "") -> None:
    """Take a user's or a group's stewardship of ``dataset`` away (audited)."""
    _steward_change(principal=principal, dataset=dataset, user=user, group=group, add=False, remote_addr=remote_addr)
