"""Monitoring API: the push endpoint for log shippers, shipper tokens, the access event stream, and
a dataset's usage. Thin: parse, call a service or selector, serialize."""

import json

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema, extend_schema_field
from rest_framework import exceptions, generics, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.audit import client_address
from access.policies import can_work_alerts
from catalog import selectors as catalog_selectors
from catalog.api_support import LimitOffsetPagination, query_int
from catalog.errors import ApplicationError
from catalog.models import DataStore
from catalog.vocabulary import Sensitivity
from identity.stepup import StepUpFresh
from monitoring import alerts, selectors
from monitoring.alerts import NOTE_MAX
from monitoring.authentication import ShipperPrincipal, ShipperTokenAuthentication
from monitoring.filtersets import AlertFilterSet
from monitoring.ingestion import access_log_ingest
from monitoring.models import AccessEvent, Alert, EventSource, LogFormat, Severity, ShipperToken
from monitoring.parsing import records_from_text
from monitoring.shippers import can_manage_shipper_tokens, shipper_token_create, shipper_token_revoke

# Keys of a JSON log event that hold the line, as shippers name it (Fluent Bit: log; Vector and
# rsyslog: message / msg).
LINE_KEYS = ("log", "message", "msg", "line")


def _bad(field: str, message: str) -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [message]})


def _line_of(item, where: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in LINE_KEYS:
            if isinstance(item.get(key), str):
                return item[key]
        raise _bad(where, f"An event object needs the line in one of: {', '.join(LINE_KEYS)}.")
    raise _bad(where, "Each item is a log line (a string) or an event object with the line in 'log' or 'message'.")


def pushed_lines(body: bytes, content_type: str) -> list[str]:
    """The log lines of a pushed body: a JSON array (of strings, or of events with the line in
    ``log``/``message``), NDJSON (one such item per line), or plain text (the log itself)."""
    media = (content_type or "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("body", "The body is not UTF-8.") from None
    if media in ("application/json", ""):
        if media == "" and not text.lstrip().startswith("["):
            return text.splitlines()
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise _bad("body", f"Not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}).") from None
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise _bad("body", "A JSON body is an array of log lines or of events.")
        return [_line_of(item, f"[{index}]") for index, item in enumerate(items)]
    if media in ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-lines",
                 "application/x-jsonlines"):
        lines = []
        for number, raw in enumerate(text.split("\n"), start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError as exc:
                raise _bad(f"line {number}", f"Not JSON ({exc.msg}).") from None
            lines.append(_line_of(item, f"line {number}"))
        return lines
    if media == "text/plain":
        return text.splitlines()
    raise exceptions.UnsupportedMediaType(media, detail=(
        f"Unsupported media type '{media}': send application/json, application/x-ndjson or text/plain."))


class PushResultSerializer(serializers.Serializer):
    records = serializers.IntegerField(help_text="Audit records found in the batch.")
    recorded = serializers.IntegerField(help_text="Access events recorded now.")
    duplicates = serializers.IntegerField(help_text="Events the catalog already had (sent before).")
    unparsed = serializers.IntegerField(help_text="Statements the parser could not read (kept as fingerprints).")
    findings = serializers.IntegerField(help_text="Recorded events that nothing in the catalog allowed.")
    errors = serializers.ListField(child=serializers.CharField(), help_text="Lines that are not in the log format.")


class LogPushApi(APIView):
    """POST a batch of a store's audit log lines, with the store's shipper token."""

    authentication_classes = [ShipperTokenAuthentication]
    permission_classes = [permissions.IsAuthenticated]
    parser_classes = []  # the body is read here, with its own size limit

    @extend_schema(
        request={"application/json": {"type": "array", "items": {"oneOf": [
            {"type": "string"}, {"type": "object", "additionalProperties": True}]}},
            "application/x-ndjson": OpenApiTypes.STR, "text/plain": OpenApiTypes.STR},
        responses={200: PushResultSerializer},
        description=(
            "A log shipper (Fluent Bit's http output, Vector's http sink, rsyslog) sends a batch of the audit log "
            "of the store its token belongs to (pgaudit csvlog records or server_audit lines): a JSON array of "
            "lines or of events with the line in `log` or `message`, NDJSON, or plain text. At most "
            "MONITORING_PUSH_MAX_BYTES bytes and MONITORING_PUSH_MAX_LINES lines; lines already recorded are "
            "counted as duplicates, never recorded twice. Authorization: `Bearer <shipper key>`."),
    )
    def post(self, request):
        principal = request.user
        if not isinstance(principal, ShipperPrincipal):
            raise exceptions.PermissionDenied("This endpoint takes a shipper token (Authorization: Bearer shp_...).")
        limit = settings.MONITORING_PUSH_MAX_BYTES
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > limit:
            raise _bad("body", f"At most {limit:,} bytes per batch (this one has {int(declared):,}); send smaller batches.")
        body = request._request.read(limit + 1)
        if len(body) > limit:
            raise _bad("body", f"At most {limit:,} bytes per batch; send smaller batches.")
        if not body.strip():
            raise _bad("body", "The batch is empty.")
        lines = pushed_lines(body, request.META.get("CONTENT_TYPE", ""))
        if len(lines) > settings.MONITORING_PUSH_MAX_LINES:
            raise _bad("lines", f"At most {settings.MONITORING_PUSH_MAX_LINES:,} lines per batch (this one has {len(lines):,}).")
        token = principal.token
        records, errors, _ = records_from_text("\n".join(lines), token.log_format, final=True)
        result = access_log_ingest(store=token.store, records=records, source=EventSource.PUSH,
                                   log_format=token.log_format)
        result.errors = errors + result.errors
        return Response(PushResultSerializer(result.as_dict()).data)


class ShipperTokenSerializer(serializers.ModelSerializer):
    store = serializers.CharField(source="store.name", read_only=True)
    format = serializers.CharField(source="log_format", read_only=True)
    createdBy = serializers.CharField(source="created_by.username", default=None, read_only=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    lastUsedAt = serializers.DateTimeField(source="last_used_at", read_only=True)
    revokedAt = serializers.DateTimeField(source="revoked_at", read_only=True)

    class Meta:
        model = ShipperToken
        fields = ["id", "name", "store", "format", "prefix", "createdBy", "createdAt", "lastUsedAt", "revokedAt"]


class ShipperTokenCreatedSerializer(ShipperTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once: only its digest is stored.")

    class Meta(ShipperTokenSerializer.Meta):
        fields = [*ShipperTokenSerializer.Meta.fields, "key"]


class ShipperTokenCreateSerializer(serializers.Serializer):
    store = serializers.CharField(max_length=64, help_text="The store's name.")
    name = serializers.CharField(max_length=64, help_text="Which shipper (host, agent) uses it.")
    format = serializers.ChoiceField(choices=LogFormat.values, required=False,
                                     help_text="pgaudit or server_audit; by default the store platform's.")


def _shipper_manager(request):
    if not can_manage_shipper_tokens(request.user):
        raise exceptions.PermissionDenied("Only security engineers and admins manage shipper tokens.")


class ShipperTokenListCreateApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StepUpFresh]  # a new key is a new credential

    @extend_schema(responses=ShipperTokenSerializer(many=True), description="Shipper tokens, newest first.")
    def get(self, request):
        _shipper_manager(request)
        tokens = ShipperToken.objects.select_related("store", "created_by")[:500]
        return Response(ShipperTokenSerializer(tokens, many=True).data)

    @extend_schema(request=ShipperTokenCreateSerializer, responses={201: ShipperTokenCreatedSerializer},
                   description="A new shipper token for a store; the key is in this answer only.")
    def post(self, request):
        _shipper_manager(request)
        serializer = ShipperTokenCreateSerializer(data=request.data if isinstance(request.data, dict) else {})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        store = DataStore.objects.filter(name=data["store"]).first()
        if store is None:
            raise _bad("store", f"No store named '{data['store']}'.")
        try:
            token, key = shipper_token_create(actor=request.user, store=store, name=data["name"],
                                              log_format=data.get("format", ""), remote_addr=client_address(request))
        except ApplicationError as error:
            raise _bad("name", error.message) from None
        token.key = key
        return Response(ShipperTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)


class ShipperTokenRevokeApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StepUpFresh]

    @extend_schema(request=None, responses=ShipperTokenSerializer, description="Revoke a shipper token at once.")
    def post(self, request, pk):
        _shipper_manager(request)
        token = get_object_or_404(ShipperToken.objects.select_related("store"), pk=pk)
        token = shipper_token_revoke(actor=request.user, token=token, remote_addr=client_address(request))
        return Response(ShipperTokenSerializer(token).data)


class AccessEventSerializer(serializers.ModelSerializer):
    store = serializers.CharField(source="store.name")
    user = serializers.CharField(source="user.username", default=None)
    dataset = serializers.IntegerField(source="dataset_id", allow_null=True)
    datasetName = serializers.CharField(source="dataset.qualified_name", default=None)
    occurredAt = serializers.DateTimeField(source="occurred_at")
    databaseRole = serializers.CharField(source="database_role")
    clientAddress = serializers.CharField(source="client_address", allow_null=True)
    viaView = serializers.CharField(source="via_view")
    allowedBy = serializers.CharField(source="allowed_by")
    grant = serializers.IntegerField(source="grant_id", allow_null=True)
    findingReason = serializers.CharField(source="finding_reason")
    logFormat = serializers.CharField(source="log_format")
    sensitivity = serializers.SerializerMethodField(
        help_text="The tier of what was accessed: the highest of the columns read (the dataset's when the log "
                  "names none); null for a relation the catalog does not know.")

    class Meta:
        model = AccessEvent
        fields = ["id", "store", "occurredAt", "source", "logFormat", "databaseRole", "user", "clientAddress",
                  "application", "dataset", "datasetName", "relation", "viaView", "action", "columns", "rows",
                  "sensitivity", "fingerprint", "statement", "allowedBy", "grant", "finding", "findingReason"]

    def get_sensitivity(self, event) -> str | None:
        return Sensitivity(event.sensitivity).label if event.sensitivity is not None else None


class AccessEventPageSerializer(serializers.Serializer):
    results = AccessEventSerializer(many=True)
    nextAfter = serializers.IntegerField(allow_null=True, help_text="Pass as ?after= for the next page.")


EVENT_PARAMETERS = [
    OpenApiParameter("after", int, description="Events with a larger id (the stream's position)."),
    OpenApiParameter("limit", int, description="At most this many (1-1000, default 100)."),
    OpenApiParameter("dataset", int), OpenApiParameter("store", int),
    OpenApiParameter("user", str, description="Catalog username."),
    OpenApiParameter("role", str, description="Database role as logged."),
    OpenApiParameter("finding", str, enum=["true", "false"]),
    OpenApiParameter("action", str, enum=["read", "write"]),
]


class AccessEventListApi(APIView):
    @extend_schema(parameters=EVENT_PARAMETERS, responses=AccessEventPageSerializer,
                   description="Access events from the warehouses' audit logs, oldest first (security engineers "
                               "and admins). Page through with ?after=<nextAfter>.")
    def get(self, request):
        if not selectors.can_read_access_events(request.user):
            raise exceptions.PermissionDenied("Only security engineers and admins read access events.")
        limit = query_int(request, "limit", low=1, high=1000, default=100)
        events, errors = selectors.access_event_filter(selectors.access_event_list(user=request.user),
                                                      request.query_params)
        if errors:
            raise exceptions.ValidationError(errors)
        page = list(events[:limit])
        return Response(AccessEventPageSerializer({
            "results": page, "nextAfter": page[-1].pk if len(page) == limit else None}).data)


class ReaderSerializer(serializers.Serializer):
    reader = serializers.CharField()
    user = serializers.CharField(allow_null=True)
    databaseRole = serializers.CharField()
    reads = serializers.IntegerField()
    lastRead = serializers.DateTimeField()


class RestrictedReaderSerializer(ReaderSerializer):
    allowedBy = serializers.CharField()
    grant = serializers.IntegerField(allow_null=True)
    finding = serializers.BooleanField()


class DayUsageSerializer(serializers.Serializer):
    date = serializers.DateField()
    read = serializers.IntegerField()
    write = serializers.IntegerField()


class DatasetUsageSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    days = serializers.IntegerField()
    perDay = DayUsageSerializer(many=True)
    reads = serializers.IntegerField()
    lastRead = serializers.DateTimeField(allow_null=True)
    topReaders = ReaderSerializer(many=True)
    neverReadColumns = serializers.ListField(child=serializers.CharField())
    neverReadDays = serializers.IntegerField()
    restrictedColumns = serializers.ListField(child=serializers.CharField())
    restrictedReaders = RestrictedReaderSerializer(many=True, allow_null=True, help_text=(
        "Who read the Restricted columns and what allowed them; null for callers who may not see it "
        "(only security engineers, admins, owners and stewards may)."))


class DatasetUsageApi(APIView):
    @extend_schema(responses=DatasetUsageSerializer, description=(
        "Usage of a dataset from the warehouses' audit logs: reads and writes per day (30 days), top readers, "
        "last read, columns never read in 90 days, and Restricted columns' readers for those who may see them."))
    def get(self, request, pk):
        dataset = catalog_selectors.dataset_get(user=request.user, pk=pk)
        return Response(DatasetUsageSerializer(selectors.dataset_usage(user=request.user, dataset=dataset)).data)


# Alerts --------------------------------------------------------------------------------------


class AlertDatasetSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    qualifiedName = serializers.CharField(source="qualified_name")


def _severity_name(alert) -> str:
    return Severity(alert.severity).label.lower()


class AlertSerializer(serializers.ModelSerializer):
    subjectKey = serializers.CharField(source="subject_key")
    severity = serializers.SerializerMethodField(help_text="low, medium, high or critical.")
    summary = serializers.CharField()
    suggestedAction = serializers.CharField(source="suggested_action")
    firstSeenAt = serializers.DateTimeField(source="first_seen_at")
    lastSeenAt = serializers.DateTimeField(source="last_seen_at")
    user = serializers.CharField(source="user.username", default=None, help_text="The person the alert is about.")
    databaseRole = serializers.CharField(source="database_role")
    datasets = AlertDatasetSerializer(source="visible_datasets", many=True,
                                      help_text="The datasets concerned that the caller may see.")
    assignee = serializers.CharField(source="assignee.username", default=None)
    acknowledgedAt = serializers.DateTimeField(source="acknowledged_at")
    resolvedAt = serializers.DateTimeField(source="resolved_at")
    resolutionNote = serializers.CharField(source="resolution_note")
    snoozedUntil = serializers.DateTimeField(source="snoozed_until")

    class Meta:
        model = Alert
        fields = ["id", "rule", "subjectKey", "severity", "status", "title", "summary", "suggestedAction", "count",
                  "firstSeenAt", "lastSeenAt", "user", "databaseRole", "datasets", "assignee", "acknowledgedAt",
                  "resolvedAt", "resolutionNote", "snoozedUntil"]

    @extend_schema_field({"type": "string", "enum": [severity.label.lower() for severity in Severity]})
    def get_severity(self, alert) -> str:
        return _severity_name(alert)


class EvidenceAuditEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    action = serializers.CharField()
    actor = serializers.CharField(source="actor_name")


class EvidenceAccessEventSerializer(AccessEventSerializer):
    dataset = serializers.IntegerField(source="visible_dataset.pk", default=None)
    datasetName = serializers.CharField(source="visible_dataset.qualified_name", default=None)


class AlertEvidenceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField(source="evidence_key")
    occurredAt = serializers.DateTimeField(source="occurred_at")
    description = serializers.CharField()
    accessEvent = EvidenceAccessEventSerializer(source="access_event", allow_null=True)
    auditEvent = EvidenceAuditEventSerializer(source="audit_event", allow_null=True)


class AlertDetailSerializer(AlertSerializer):
    acknowledgedBy = serializers.CharField(source="acknowledged_by.username", default=None)
    resolvedBy = serializers.CharField(source="resolved_by.username", default=None)
    evidence = AlertEvidenceSerializer(many=True, source="evidence_rows",
                                       help_text="Newest first, at most 200 (an alert's count says how many in all).")

    class Meta(AlertSerializer.Meta):
        fields = [*AlertSerializer.Meta.fields, "acknowledgedBy", "resolvedBy", "evidence"]


def _alert_worker(request) -> None:
    # Alerts name people and datasets across the catalog: for anyone else they do not exist.
    if not can_work_alerts(request.user):
        raise exceptions.NotFound("No such page.")


class AlertListApi(generics.ListAPIView):
    """The alert inbox (security engineers and admins; 404 for anyone else)."""

    serializer_class = AlertSerializer
    filterset_class = AlertFilterSet
    pagination_class = LimitOffsetPagination

    @extend_schema(description=(
        "Alerts raised by the detectors, newest activity first. Without filters: the inbox (open or acknowledged, "
        "not snoozed). `assignee` takes a username, `me` or `none`."))
    def get(self, request, *args, **kwargs):
        _alert_worker(request)
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.alert_list(user=self.request.user)


def _alert_detail_response(request, pk, status_code=status.HTTP_200_OK) -> Response:
    alert = selectors.alert_get(user=request.user, pk=pk)
    alert.evidence_rows = selectors.alert_evidence_list(user=request.user, alert=alert)
    return Response(AlertDetailSerializer(alert).data, status=status_code)


class AlertDetailApi(APIView):
    @extend_schema(responses=AlertDetailSerializer, description="One alert with its evidence (security engineers and admins).")
    def get(self, request, pk):
        _alert_worker(request)
        return _alert_detail_response(request, pk)


def _workflow(request, pk, change, serializer_class=None) -> Response:
    """Parse the body, run one workflow service on the alert, answer with the alert as it now is.
    A refusal naming a field (the note, the time) is a 400 naming it, like any bad input."""
    _alert_worker(request)
    alert = selectors.alert_get(user=request.user, pk=pk)
    data = {}
    if serializer_class is not None:
        serializer = serializer_class(data=request.data if isinstance(request.data, dict) else {})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
    try:
        change(alert=alert, principal=request.user, remote_addr=client_address(request), **data)
    except ApplicationError as error:
        if error.extra:
            raise exceptions.ValidationError(error.extra) from None
        raise
    return _alert_detail_response(request, pk)


class AlertAssignSerializer(serializers.Serializer):
    assignee = serializers.CharField(allow_null=True, max_length=150,
                                     help_text="Username of a security engineer or admin; null unassigns.")

    def validate_assignee(self, value):
        if value is None:
            return None
        user = selectors.alert_assignee_choices().filter(username=value).first()
        if user is None:
            raise serializers.ValidationError("Not a security engineer or admin of this catalog.")
        return user


class AlertResolveSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=NOTE_MAX, help_text="How it was resolved (required).",
                                 error_messages={"blank": "Required: how it was resolved."})


class AlertSnoozeSerializer(serializers.Serializer):
    until = serializers.DateTimeField(help_text="ISO 8601 date-time, in the future, at most 30 days ahead.")
    note = serializers.CharField(max_length=NOTE_MAX, required=False, allow_blank=True)


class AlertReopenSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=NOTE_MAX, required=False, allow_blank=True, help_text="Why (optional).")


WORKFLOW_DOC = " Security engineers and admins; audited (`alert.{}`). Answers with the alert as it now is."


class AlertAcknowledgeApi(APIView):
    @extend_schema(request=None, responses=AlertDetailSerializer,
                   description="Acknowledge an open alert." + WORKFLOW_DOC.format("acknowledged"))
    def post(self, request, pk):
        return _workflow(request, pk, alerts.alert_acknowledge)


class AlertAssignApi(APIView):
    @extend_schema(request=AlertAssignSerializer, responses=AlertDetailSerializer,
                   description="Assign to a security engineer or admin, or unassign with null." + WORKFLOW_DOC.format("assigned"))
    def post(self, request, pk):
        return _workflow(request, pk, alerts.alert_assign, AlertAssignSerializer)


class AlertResolveApi(APIView):
    @extend_schema(request=AlertResolveSerializer, responses=AlertDetailSerializer,
                   description="Resolve with a note saying how." + WORKFLOW_DOC.format("resolved"))
    def post(self, request, pk):
        return _workflow(request, pk, alerts.alert_resolve, AlertResolveSerializer)


class AlertSnoozeApi(APIView):
    @extend_schema(request=AlertSnoozeSerializer, responses=AlertDetailSerializer,
                   description="Hide from the inbox until a time (at most 30 days ahead); new evidence still counts."
                               + WORKFLOW_DOC.format("snoozed"))
    def post(self, request, pk):
        return _workflow(request, pk, alerts.alert_snooze, AlertSnoozeSerializer)


class AlertReopenApi(APIView):
    @extend_schema(request=AlertReopenSerializer, responses=AlertDetailSerializer,
                   description="Back to open: a resolved, acknowledged or snoozed alert." + WORKFLOW_DOC.format("reopened"))
    def post(self, request, pk):
        return _workflow(request, pk, alerts.alert_reopen, AlertReopenSerializer)
