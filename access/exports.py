"""The audit trail (CSV or JSON) and the grants list (CSV) exported, streamed, for the pages and
the API alike. Each export is itself audited by the caller (``audit.exported``, ``grant.exported``).

Audit rows go out oldest first (the chain's order) and never sit in memory together. CSV cells that
a spreadsheet would run as a formula (a justification starting with ``=``, ``+``, ``-``, ``@``)
are prefixed with an apostrophe; the JSON export keeps every value as written.
"""

import csv
import json

from django.http import StreamingHttpResponse
from django.utils import timezone

from access.models import AuditEvent, Grant

EXPORT_FIELDS = ["id", "at", "actor", "action", "objectType", "objectId", "datasetId", "dataset", "remoteAddr", "reason",
                 "details", "previousHash", "hash"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def audit_export_row(event: AuditEvent) -> dict:
    """One event as exported (pass events with ``dataset`` loaded)."""
    return {
        "id": event.pk, "at": event.at.isoformat(), "actor": event.actor_name, "action": event.action,
        "objectType": event.object_type, "objectId": event.object_id, "datasetId": event.dataset_id,
        "dataset": event.dataset.qualified_name if event.dataset_id else None, "remoteAddr": event.remote_addr,
        "reason": event.reason, "details": event.details, "previousHash": event.previous_hash, "hash": event.hash,
    }


def _cell(value) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    def write(self, value):
        return value


def audit_csv_lines(events):
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_FIELDS)
    for event in events:
        row = audit_export_row(event)
        row["details"] = json.dumps(row["details"], sort_keys=True)
        yield writer.writerow([_cell(row[name]) for name in EXPORT_FIELDS])


def audit_json_chunks(events):
    yield "["
    for index, event in enumerate(events):
        yield ("," if index else "") + "\n" + json.dumps(audit_export_row(event), sort_keys=True, default=str)
    yield "\n]\n"


def audit_export_response(events, fmt: str) -> StreamingHttpResponse:
    """``events`` (a queryset) as a streamed ``csv`` or ``json`` download, oldest first."""
    events = events.order_by("id").iterator(chunk_size=2000)
    if fmt == "csv":
        response = StreamingHttpResponse(audit_csv_lines(events), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(audit_json_chunks(events), content_type="application/json")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    return response


# Grants -------------------------------------------------------------------------------------

GRANT_EXPORT_FIELDS = ["id", "user", "dataset", "store", "environment", "level", "columns", "status", "startsAt",
                       "endsAt", "isBreakGlass", "reviewedBy", "enforcement", "request", "revokedBy", "revokeReason"]


def grant_export_row(grant: Grant) -> dict:
    """One grant as exported (pass grants with ``user``, ``dataset__store``, ``reviewed_by`` and ``revoked_by`` loaded)."""
    from access.serializers import grant_effective_status, level_name

    return {
        "id": grant.pk, "user": grant.user.username, "dataset": grant.dataset.qualified_name,
        "store": grant.dataset.store.name, "environment": grant.dataset.store.environment,
        "level": level_name(grant.level), "columns": " ".join(grant.columns or []),
        "status": grant_effective_status(grant), "startsAt": grant.starts_at.isoformat(),
        "endsAt": grant.ends_at.isoformat(), "isBreakGlass": "yes" if grant.is_break_glass else "no",
        "reviewedBy": grant.reviewed_by.username if grant.reviewed_by_id else "", "enforcement": grant.enforcement,
        "request": grant.request_id, "revokedBy": grant.revoked_by.username if grant.revoked_by_id else "",
        "revokeReason": grant.revoke_reason,
    }


def grants_csv_lines(grants):
    writer = csv.writer(_Echo())
    yield writer.writerow(GRANT_EXPORT_FIELDS)
    for grant in grants:
        row = grant_export_row(grant)
        yield writer.writerow([_cell(row[name]) for name in GRANT_EXPORT_FIELDS])


def grants_export_response(grants) -> StreamingHttpResponse:
    """``grants`` (a filtered queryset) as a streamed CSV download, newest first."""
    grants = grants.order_by("-starts_at", "-pk").iterator(chunk_size=2000)
    response = StreamingHttpResponse(grants_csv_lines(grants), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="grants-{stamp}.csv"'
    return response
