"""Monitoring API: the push endpoint for log shippers, shipper tokens, the access event stream, and
a dataset's usage. Thin: parse, call a service or selector, serialize."""

import json

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.audit import client_address
from catalog import selectors as catalog_selectors
from catalog.api_support import query_int
from catalog.errors import ApplicationError
from catalog.models import DataStore
from identity.stepup import StepUpFresh
from monitoring import selectors
from monitoring.authentication import ShipperPrincipal, ShipperTokenAuthentication
from monitoring.ingestion import access_log_ingest
from monitoring.models import AccessEvent, EventSource, LogFormat, ShipperToken
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

    class Meta:
        model = AccessEvent
        fields = ["id", "store", "occurredAt", "source", "logFormat", "databaseRole", "user", "clientAddress",
                  "application", "dataset", "datasetName", "relation", "viaView", "action", "columns", "rows",
                  "fingerprint", "statement", "allowedBy", "grant", "finding", "findingReason"]


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
