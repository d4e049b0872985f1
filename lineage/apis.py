"""Lineage API: the OpenLineage endpoint, graph walks, impact, violations and jobs."""

import io
import zlib

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema, extend_schema_view
from rest_framework import exceptions, generics, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api_support import LimitOffsetPagination, PayloadTooLarge, int_parameter
from catalog.selectors import dataset_visible_get
from lineage import selectors
from lineage.models import EdgeLevel
from lineage.filtersets import JobFilterSet
from lineage.ingestion import lineage_event_accept
from lineage.models import EventStatus
from lineage.serializers import (
    IngestResultSerializer,
    JobDetailSerializer,
    JobSerializer,
    LineageEventSerializer,
    LineageGraphSerializer,
    RunSerializer,
    RunEventsSerializer,
    ViolationSerializer,
)
from lineage.views import graph_restricted_columns_audit, restricted_columns_audit


class LimitPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


class OpenLineageJSONParser(JSONParser):
    """JSON, gzip-compressed or not (the OpenLineage client's ``compression: gzip``)."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        encoding = request.META.get("HTTP_CONTENT_ENCODING", "").lower() if request is not None else ""
        if encoding != "gzip":
            return super().parse(stream, media_type, parser_context)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = inflater.decompress(stream.read(), limit + 1)
        except zlib.error as exc:
            raise exceptions.ParseError(f"The body is not valid gzip: {exc}.") from exc
        if len(body) > limit:
            raise PayloadTooLarge(f"The decompressed event exceeds the limit of {limit} bytes.")
        return super().parse(io.BytesIO(body), media_type, parser_context)


class OpenLineageApi(APIView):
    """Receives OpenLineage events, as Marquez does at the same path."""

    parser_classes = [OpenLineageJSONParser]

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={202: IngestResultSerializer, 200: IngestResultSerializer},
        description=(
            "An OpenLineage RunEvent (or JobEvent, DatasetEvent) as the openlineage-python HTTP transport sends it. "
            "202 when the event is stored (`status` pending): a worker folds it into the graph within seconds; "
            "`GET statusUrl` (the run's events) tells when it is applied, or why it failed. "
            "200 when the same event was already received (nothing changes). A malformed event is a 400 at once. "
            "Unknown namespaces and datasets are created and flagged for review; the column lineage facet "
            "becomes column edges."
        ),
    )
    def post(self, request):
        result = lineage_event_accept(principal=request.user, payload=request.data)
        headers = {}
        if result.event.run_uuid is not None:
            headers["Location"] = reverse("api:lineage-run-events", args=[result.event.run_uuid])
        return Response(
            IngestResultSerializer(result).data, headers=headers,
            status=status.HTTP_202_ACCEPTED if result.created else status.HTTP_200_OK,
        )


@extend_schema_view(post=extend_schema(exclude=True))
class OpenLineageSlashApi(OpenLineageApi):
    """The same endpoint with a trailing slash, for clients configured with one."""


WALK_PARAMETERS = [
    OpenApiParameter("direction", str, enum=list(selectors.DIRECTIONS), description="Default: both."),
    int_parameter("depth", low=1, high=selectors.MAX_DEPTH,
                  description=f"Hops to follow, 1 to {selectors.MAX_DEPTH} (default {selectors.DEFAULT_DEPTH})."),
    int_parameter("limit", low=1, high=selectors.MAX_LIMIT,
                  description=f"Most nodes per direction, 1 to {selectors.MAX_LIMIT} (default {selectors.DEFAULT_LIMIT})."),
]


def walk_options(query_params, *, direction=selectors.BOTH) -> dict:
    """Checked ``direction``, ``depth`` and ``limit`` query parameters; 400 naming the bad one."""
    errors, options = {}, {"direction": query_params.get("direction") or direction}
    if options["direction"] not in selectors.DIRECTIONS:
        errors["direction"] = [f"Use one of: {', '.join(selectors.DIRECTIONS)}."]
    for key, high in (("depth", selectors.MAX_DEPTH), ("limit", selectors.MAX_LIMIT)):
        raw = query_params.get(key)
        if raw in (None, ""):
            options[key] = None
        elif not raw.isdigit() or not 1 <= int(raw) <= high:
            errors[key] = [f"Must be a whole number from 1 to {high}."]
        else:
            options[key] = int(raw)
    if errors:
        raise exceptions.ValidationError(errors)
    return options


class DatasetLineageApi(APIView):
    """Upstream and downstream of a dataset: datasets (``level=dataset``) or the columns of
    this dataset and what they connect to (``level=column``)."""

    @extend_schema(
        parameters=[*WALK_PARAMETERS, OpenApiParameter("level", str, enum=list(EdgeLevel.values), description="Default: dataset.")],
        responses=LineageGraphSerializer,
    )
    def get(self, request, pk):
        options = walk_options(request.query_params)
        level = request.query_params.get("level") or EdgeLevel.DATASET
        if level not in EdgeLevel.values:
            raise exceptions.ValidationError({"level": [f"Use one of: {', '.join(EdgeLevel.values)}."]})
        dataset = dataset_visible_get(user=request.user, pk=pk)
        if level == EdgeLevel.DATASET:
            starts = [selectors.lineage_dataset_node(user=request.user, dataset=dataset)]
        else:
            starts = selectors.lineage_dataset_column_nodes(dataset=dataset)
        graph = selectors.lineage_graph(user=request.user, starts=starts, level=level, **options)
        graph_restricted_columns_audit(request, graph, via="api:lineage")
        with selectors.gc_paused():  # thousands of dicts, none in a cycle (see gc_paused)
            return Response(LineageGraphSerializer(graph).data)


class ColumnLineageApi(APIView):
    """Upstream and downstream of one column (``direction=downstream`` for the impact of a change or a leak)."""

    @extend_schema(parameters=WALK_PARAMETERS, responses=LineageGraphSerializer)
    def get(self, request, pk, column_id):
        options = walk_options(request.query_params)
        dataset = dataset_visible_get(user=request.user, pk=pk)
        node = selectors.lineage_column_node_get(user=request.user, dataset=dataset, column_id=column_id)
        graph = selectors.lineage_graph(user=request.user, starts=[node], level=EdgeLevel.COLUMN, **options)
        graph_restricted_columns_audit(request, graph, via="api:column-lineage")
        with selectors.gc_paused():  # thousands of dicts, none in a cycle (see gc_paused)
            return Response(LineageGraphSerializer(graph).data)


class ViolationListApi(generics.ListAPIView):
    """Columns declared lower than the sensitivity that flows into them unprotected, with the path that causes each."""

    serializer_class = ViolationSerializer
    pagination_class = LimitPagination

    def get_queryset(self):
        return selectors.lineage_violation_list(user=self.request.user)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "paths": getattr(self, "_paths", {})}

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        self._paths = selectors.lineage_sensitivity_paths(user=self.request.user, nodes=page or [])
        restricted_columns_audit(self.request, [step for path in self._paths.values() for step in path],
                                  via="api:violations")
        return page


class RunEventsApi(APIView):
    """Whether each event of a run was applied: pending, applied, or failed with the error.

    A pipeline sees the events it sent (an admin every event); a run none of whose events the
    caller may see is a 404."""

    @extend_schema(responses=RunEventsSerializer)
    def get(self, request, run_id):
        events = list(selectors.lineage_event_list(user=request.user, run_uuid=run_id).order_by("event_time", "id"))
        if not events:
            raise exceptions.NotFound("No such run among the events you sent.")
        state = selectors.lineage_run_state(user=request.user, run_uuid=run_id) if any(e.run_id for e in events) else None
        counts = {value: sum(1 for event in events if event.status == value) for value in EventStatus.values}
        return Response(RunEventsSerializer({
            "runId": run_id, "state": state, **counts, "events": events,
        }).data)


class LineageEventListApi(generics.ListAPIView):
    """The OpenLineage events the caller sent (an admin: every event), newest first; ``?status=failed``
    lists what could not be applied, with the reason."""

    serializer_class = LineageEventSerializer
    pagination_class = LimitPagination

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=list(EventStatus.values))])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        wanted = self.request.query_params.get("status") or None
        if wanted is not None and wanted not in EventStatus.values:
            raise exceptions.ValidationError({"status": [f"Use one of: {', '.join(EventStatus.values)}."]})
        return selectors.lineage_event_list(user=self.request.user, status=wanted)


class JobListApi(generics.ListAPIView):
    """Jobs that sent lineage, each with its type (the jobType facet) and latest run;
    ``?jobType=MODEL&integration=DBT`` filters by type."""

    serializer_class = JobSerializer
    pagination_class = LimitPagination
    filterset_class = JobFilterSet

    def get_queryset(self):
        return selectors.job_list(user=self.request.user)


class JobDetailApi(APIView):
    """A job: its type, its SQL (the sql facet; only to readers who may see every dataset it names),
    what it reads and writes, and its latest runs with their parent runs."""

    @extend_schema(responses=JobDetailSerializer)
    def get(self, request, pk):
        job = selectors.job_get(user=request.user, pk=pk)
        context = {
            "sql_visible": selectors.job_sql_visible(user=request.user, job=job),
            "datasets": selectors.job_datasets(user=request.user, job=job),
            "runs": selectors.job_runs(job=job),
        }
        return Response(JobDetailSerializer(job, context=context).data)


class RunDetailApi(APIView):
    """A run: its state, its parent run (the parent facet) and the child runs the reader may see."""

    @extend_schema(responses=RunSerializer)
    def get(self, request, run_id):
        run = selectors.run_get(user=request.user, run_id=run_id)
        family = selectors.run_family(user=request.user, run=run)
        return Response(RunSerializer(run, context={"family": family}).data)
