"""What a person loses when the directory takes access away: deactivation (they left) ends
everything they hold; a lost company role ends only what their remaining roles could not have
asked for. Both are audited with whoever acted (a SCIM client, an admin)."""

from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access import decisions
from access.audit import audit_record
from access.grants import grant_revoke
from access.models import AccessRequest, AccessReview, Grant, RequestStatus, ReviewDecision, ServiceToken


def _still_eligible(user, dataset, level: int, columns) -> bool:
    """Whether ``user``'s roles now let them ask for this scope (the rule ``access_request_create`` uses)."""
    tier = decisions.scope_sensitivity(dataset, columns)
    return decisions.cell_for_request(user, dataset.store.environment, tier, level) is not None


def _live_grants(user):
    # Extensions approved but not started are ended by the revoke of the grant they follow.
    return (Grant.objects.select_related("dataset__store", "request")
            .filter(user=user, status__in=decisions.LIVE_STATUSES)
            .exclude(request__extends__status__in=decisions.LIVE_STATUSES).order_by("pk"))


def _grants_revoke(grants, *, actor, reason: str, remote_addr: str) -> list[int]:
    revoked = []
    for grant in grants:
        try:
            grant_revoke(principal=actor, grant=grant, reason=reason, remote_addr=remote_addr)
        except ValidationError:  # ended meanwhile (expired, revoked by someone else): nothing left to take
            grant.refresh_from_db(fields=["status"])
            if grant.status in decisions.LIVE_STATUSES:
                raise
            continue
        revoked.append(grant.pk)
    return revoked


def _requests_withdraw(requests, *, actor, reason: str, remote_addr: str) -> list[int]:
    withdrawn = []
    now = timezone.now()
    for pending in requests:
        with transaction.atomic():
            request = AccessRequest.objects.select_for_update(of=("self",)).select_related("dataset").get(pk=pending.pk)
            if request.status != RequestStatus.PENDING:
                continue
            request.status, request.decided_at = RequestStatus.CANCELLED, now
            request.save(update_fields=["status", "decided_at"])
            audit_record(actor=actor, action="request.cancelled", obj=request, dataset=request.dataset, reason=reason,
                         remote_addr=remote_addr, details={"withdrawn_for": request.requester.username})
        withdrawn.append(request.pk)
    return withdrawn


def user_access_end(*, user, actor, reason: str, remote_addr: str = "") -> dict:
    """Everything a deactivated person holds ends at once: their browser sessions (the rows are
    deleted), their API tokens (revoked), their live grants (revoked exactly as an early revoke,
    so the warehouse privilege is taken back), their pending requests (withdrawn), and their
    approvals of requests still pending (void: the request needs another approver). Returns what
    ended, by kind."""
    now = timezone.now()
    with transaction.atomic():
        session_keys = [s.session_key for s in Session.objects.filter(expire_date__gt=now).iterator()
                        if str(s.get_decoded().get("_auth_user_id")) == str(user.pk)]
        Session.objects.filter(session_key__in=session_keys).delete()
        tokens = list(ServiceToken.objects.filter(user=user, revoked_at__isnull=True).values_list("pk", flat=True))
        ServiceToken.objects.filter(pk__in=tokens).update(revoked_at=now)
        voided = []
        for review in (AccessReview.objects.select_for_update(of=("self",)).select_related("request__dataset")
                       .filter(reviewer=user, decision=ReviewDecision.APPROVE, superseded=False,
                               request__status=RequestStatus.PENDING)):
            review.superseded = True
            review.save(update_fields=["superseded"])
            voided.append(review.request_id)
            audit_record(actor=actor, action="request.approval_voided", obj=review.request, dataset=review.request.dataset,
                         reason=reason, remote_addr=remote_addr, details={"reviewer": user.username})
        audit_record(actor=actor, action="identity.access_ended", obj=user, reason=reason, remote_addr=remote_addr,
                     details={"user": user.username, "sessions_ended": len(session_keys), "tokens_revoked": len(tokens),
                              "approvals_voided": voided})
    grants = _grants_revoke(_live_grants(user), actor=actor, reason=reason, remote_addr=remote_addr)
    requests = _requests_withdraw(AccessRequest.objects.filter(requester=user, status=RequestStatus.PENDING).order_by("pk"),
                                  actor=actor, reason=reason, remote_addr=remote_addr)
    return {"sessions": len(session_keys), "tokens": len(tokens), "approvals_voided": voided,
            "grants_revoked": grants, "requests_withdrawn": requests}


def users_with_open_access(user_ids) -> set[int]:
    """Which of ``user_ids`` hold a live grant or a pending request (the ones a lost role may trim)."""
    with_grants = Grant.objects.filter(user_id__in=user_ids, status__in=decisions.LIVE_STATUSES).order_by().values_list(
        "user_id", flat=True)
    with_requests = AccessRequest.objects.filter(requester_id__in=user_ids, status=RequestStatus.PENDING).order_by().values_list(
        "requester_id", flat=True)
    return set(with_grants.union(with_requests))


def user_access_trim(*, user, actor, reason: str, remote_addr: str = "") -> dict:
    """After ``user`` lost a company role: revoke the live grants and withdraw the pending requests
    that their remaining roles could not have asked for (what they still may ask for stays)."""
    from access.models import User

    user = User.objects.get(pk=user.pk)  # fresh: the roles cached on the caller's object are stale
    grants = [g for g in _live_grants(user) if not _still_eligible(user, g.dataset, g.level, g.columns)]
    requests = [r for r in AccessRequest.objects.select_related("dataset__store")
                .filter(requester=user, status=RequestStatus.PENDING).order_by("pk")
                if not _still_eligible(user, r.dataset, r.level, r.columns)]
    return {"grants_revoked": _grants_revoke(grants, actor=actor, reason=reason, remote_addr=remote_addr),
            "requests_withdrawn": _requests_withdraw(requests, actor=actor, reason=reason, remote_addr=remote_addr)}
