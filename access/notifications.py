"""Mail about access: new requests to approvers, decisions to requesters, break-glass to every
approver, ended grants to their holder (Django's mail backend; console in development)."""

import logging

from django.conf import settings
from django.core.mail import send_mass_mail
from django.template.loader import render_to_string

from access.models import AccessRequest, Grant

logger = logging.getLogger(__name__)


def _addresses(users) -> list[str]:
    return sorted({u.email for u in users if u.email and u.is_active})


def _send(subject: str, template: str, context: dict, users) -> int:
    addresses = _addresses(users)
    if not addresses:
        return 0
    body = render_to_string(template, {**context, "base_url": settings.CATALOG_BASE_URL})
    try:
        return send_mass_mail([(subject, body, settings.DEFAULT_FROM_EMAIL, [a]) for a in addresses], fail_silently=False)
    except Exception:
        logger.exception("Could not send access mail %r", subject)
        return 0


def access_notify(kind: str, *, request_id: int | None = None, grant_id: int | None = None,
                  proposal_id: int | None = None) -> int:
    from access.grants import approvers_for

    if kind in ("proposal_created", "proposal_decided"):
        from access.models import MetadataProposal
        from access.proposals import proposal_reviewers, proposal_summary

        proposal = MetadataProposal.objects.select_related("dataset__store", "store", "proposer").get(pk=proposal_id)
        context = {"proposal": proposal, "summary": proposal_summary(proposal)}
        if kind == "proposal_created":
            return _send(f"Proposed change #{proposal.pk}: {proposal.subject_name}", "emails/proposal_created.txt",
                         context, proposal_reviewers(proposal))
        return _send(f"Your proposed change #{proposal.pk} was {proposal.get_status_display().lower()}",
                     "emails/proposal_decided.txt", context, [proposal.proposer])

    if kind == "request_created":
        request = AccessRequest.objects.select_related("requester", "dataset__store").get(pk=request_id)
        return _send(f"Access request #{request.pk}: {request.dataset.qualified_name}", "emails/access_request.txt",
                     {"request": request}, approvers_for(request))
    if kind == "request_decided":
        request = AccessRequest.objects.select_related("requester", "dataset").get(pk=request_id)
        grant = Grant.objects.filter(request=request).first()
        return _send(f"Your access request #{request.pk} was {request.get_status_display().lower()}",
                     "emails/access_decided.txt", {"request": request, "grant": grant,
                                                   "reviews": list(request.reviews.select_related("reviewer"))},
                     [request.requester])
    if kind == "break_glass":
        grant = Grant.objects.select_related("user", "dataset", "request").get(pk=grant_id)
        return _send(f"Break-glass: {grant.user.username} on {grant.dataset.qualified_name}", "emails/break_glass.txt",
                     {"grant": grant}, approvers_for(grant.request))
    if kind == "grant_ended":
        grant = Grant.objects.select_related("user", "dataset").get(pk=grant_id)
        return _send(f"Your access to {grant.dataset.qualified_name} ended", "emails/grant_ended.txt",
                     {"grant": grant}, [grant.user])
    if kind == "enforcement_failed":
        grant = Grant.objects.select_related("user", "dataset", "request").get(pk=grant_id)
        return _send(f"Could not change the warehouse for grant #{grant.pk}", "emails/enforcement_failed.txt",
                     {"grant": grant}, approvers_for(grant.request))
    raise ValueError(f"unknown notification {kind!r}")
