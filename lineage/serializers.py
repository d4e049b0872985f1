"""API shapes for lineage: graphs (nodes and edges), violations, jobs and ingestion results."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.vocabulary import UNCLASSIFIED_LABEL, Protection, Sensitivity, sensitivity_label
from lineage.models import EventStatus, Job, NodeKind, RunState


class LineageNodeSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    kind = serializers.CharField()
    label = serializers.CharField()
    depth = serializers.IntegerField(help_text="0 for a start; negative upstream, positive downstream.")
    dataset = serializers.SerializerMethodField()
    column = serializers.SerializerMethodField()
    sourceKind = serializers.CharField(source="source_kind")
    placeholder = serializers.SerializerMethodField()
    sensitivity = serializers.SerializerMethodField()
    effectiveSensitivity = serializers.SerializerMethodField()
    protection = serializers.SerializerMethodField()
    violation = serializers.BooleanField(source="is_violation")
    owners = serializers.SerializerMethodField()
    hidden = serializers.BooleanField(
        help_text="A node of a dataset the caller may not see: it keeps its place in the graph, "
        "but its dataset, column, sensitivity and owners are left out."
    )

    def to_representation(self, node):
        if not node.hidden:
            return super().to_representation(node)
        data = dict.fromkeys(self.fields)  # every field, and nothing of the dataset
        data.update(id=node.pk, kind=node.kind, label=node.label, depth=node.depth, sourceKind="", placeholder=False,
                    violation=False, owners=[], hidden=True)
        return data

    def get_dataset(self, node) -> dict | None:
        if node.dataset_id is None:
            return None
        dataset = node.dataset
        return {
            "id": dataset.pk,
            "qualifiedName": dataset.qualified_name,
            "status": dataset.status,
            "needsReview": dataset.needs_review,
            "url": reverse("catalog:dataset-detail", args=[dataset.pk]),
        }

    def get_column(self, node) -> dict | None:
        if node.kind != NodeKind.COLUMN:
            return None
        column = node.column
        return {
            "id": column.pk if column else None,
            "name": node.name,
            "type": column.type if column else None,
            "inCurrentVersion": column is not None,
        }

    def get_placeholder(self, node) -> bool:
        return node.kind == NodeKind.SOURCE

    def get_sensitivity(self, node) -> str | None:
        """Declared: ``Unclassified`` for a dataset nobody has classified, and for its columns."""
        if node.kind == NodeKind.COLUMN:
            if not node.dataset.classified:
                return UNCLASSIFIED_LABEL
            return sensitivity_label(node.column.sensitivity) if node.column else None
        if node.kind == NodeKind.DATASET:
            return node.dataset.sensitivity_label
        return None

    def get_effectiveSensitivity(self, node) -> str | None:
        if node.kind in (NodeKind.COLUMN, NodeKind.DATASET):  # a dataset node keeps its columns' highest
            return sensitivity_label(node.effective_sensitivity)
        return None

    def get_protection(self, node) -> str | None:
        if node.kind == NodeKind.COLUMN and node.column:
            return Protection(node.column.protection).label
        return None

    def get_owners(self, node) -> list[str]:
        if node.dataset_id is None:
            return []
        owners = getattr(node.dataset, "owner_list", None)
        if owners is None:
            owners = list(node.dataset.owners.all())
        return sorted(owner.username for owner in owners)


class LineageEdgeSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    source = serializers.IntegerField(source="source_id")
    target = serializers.IntegerField(source="target_id")
    level = serializers.CharField()
    kind = serializers.CharField()
    direct = serializers.BooleanField()
    masking = serializers.BooleanField()
    description = serializers.CharField()
    job = serializers.SerializerMethodField()
    firstSeen = serializers.DateTimeField(source="first_seen")
    lastSeen = serializers.DateTimeField(source="last_seen")

    def to_representation(self, edge):
        data = super().to_representation(edge)
        if getattr(edge, "touches_hidden", False):
            # A job's name and its description of the step can name what the reader may not see.
            data.update(description="", job=None)
        return data

    def get_job(self, edge) -> str | None:
        return str(edge.job) if edge.job_id else None


class LineageGraphSerializer(serializers.Serializer):
    """A ``lineage.selectors.Graph``: nodes and edges are built from its rows as plain dicts (the
    shapes of ``LineageNodeSerializer`` and ``LineageEdgeSerializer``), not field by field, so a
    graph of thousands of nodes costs what its JSON costs."""

    starts = serializers.SerializerMethodField()
    level = serializers.CharField()
    depth = serializers.IntegerField()
    partial = serializers.BooleanField(help_text="True when the node cap cut the walk short.")
    nodes = serializers.SerializerMethodField()
    edges = LineageEdgeSerializer(many=True)

    def to_representation(self, graph):
        dataset_url = _DatasetUrl()
        return {
            "starts": list(graph.starts),
            "level": graph.level,
            "depth": graph.depth,
            "partial": graph.partial,
            "nodes": [graph_node_representation(node, dataset_url) for node in graph.nodes],
            "edges": [graph_edge_representation(edge) for edge in graph.edges],
        }

    def get_starts(self, graph) -> list[int]:
        return list(graph.starts)

    def get_nodes(self, graph) -> list[dict]:
        """Each node as ``LineageNodeSerializer`` describes it."""
        dataset_url = _DatasetUrl()
        return [graph_node_representation(node, dataset_url) for node in graph.nodes]


class _DatasetUrl:
    """A dataset page's URL from one ``reverse()`` rather than one per node."""

    PLACEHOLDER = 987654321

    def __init__(self):
        self.template = reverse("catalog:dataset-detail", args=[self.PLACEHOLDER])

    def __call__(self, pk: int) -> str:
        return self.template.replace(str(self.PLACEHOLDER), str(pk))


_PROTECTION_LABELS = dict(Protection.choices)


def graph_node_representation(node: dict, dataset_url) -> dict:
    """One node of a graph row as the API shows it (``LineageNodeSerializer``'s fields)."""
    kind = node["kind"]
    if node["hidden"]:
        return {
            "id": node["id"], "kind": kind, "label": node["label"], "depth": node["depth"], "dataset": None,
            "column": None, "sourceKind": "", "placeholder": False, "sensitivity": None,
            "effectiveSensitivity": None, "protection": None, "violation": False, "owners": [], "hidden": True,
        }
    dataset, column = node["dataset"], node["column"]
    sensitivity = effective = protection = None
    if kind == NodeKind.COLUMN:
        if not dataset["classified"]:
            sensitivity = UNCLASSIFIED_LABEL
        elif column is not None:
            sensitivity = sensitivity_label(column["sensitivity"])
        effective = sensitivity_label(node["effective_sensitivity"])
        if column is not None:
            protection = _PROTECTION_LABELS[column["protection"]]
    elif kind == NodeKind.DATASET:
        sensitivity = sensitivity_label(dataset["sensitivity"]) if dataset["classified"] else UNCLASSIFIED_LABEL
        effective = sensitivity_label(dataset["effective_sensitivity"])
    return {
        "id": node["id"],
        "kind": kind,
        "label": node["label"],
        "depth": node["depth"],
        "dataset": None if dataset is None else {
            "id": node["dataset_id"],
            "qualifiedName": dataset["qualified_name"],
            "status": dataset["status"],
            "needsReview": dataset["needs_review"],
            "url": dataset_url(node["dataset_id"]),
        },
        "column": None if kind != NodeKind.COLUMN else {
            "id": node["column_id"],
            "name": node["name"],
            "type": column["type"] if column else None,
            "inCurrentVersion": column is not None,
        },
        "sourceKind": node["source_kind"],
        "placeholder": kind == NodeKind.SOURCE,
        "sensitivity": sensitivity,
        "effectiveSensitivity": effective,
        "protection": protection,
        "violation": node["is_violation"],
        "owners": dataset["owners"] if dataset is not None else [],
        "hidden": False,
    }


def graph_edge_representation(edge: dict) -> dict:
    """One edge of a graph as the API shows it (``LineageEdgeSerializer``'s fields)."""
    hidden = edge["touches_hidden"]  # a job's name and its description can name what the reader may not see
    return {
        "id": edge["id"], "source": edge["source"], "target": edge["target"], "level": edge["level"],
        "kind": edge["kind"], "direct": edge["direct"], "masking": edge["masking"],
        "description": "" if hidden else edge["description"], "job": None if hidden else edge["job"],
        "firstSeen": edge["first_seen"], "lastSeen": edge["last_seen"],
    }


class ViolationSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    dataset = serializers.CharField(source="dataset.qualified_name")
    datasetId = serializers.IntegerField(source="dataset_id")
    column = serializers.CharField(source="name")
    columnId = serializers.IntegerField(source="column_id")
    declared = serializers.SerializerMethodField()
    inflow = serializers.SerializerMethodField()
    owners = serializers.SerializerMethodField()
    path = serializers.SerializerMethodField()

    def get_declared(self, node) -> str:
        if not node.dataset.classified:
            return UNCLASSIFIED_LABEL
        return Sensitivity(node.column.sensitivity).label

    def get_inflow(self, node) -> str:
        return Sensitivity(node.unprotected_inflow).label

    def get_owners(self, node) -> list[str]:
        return sorted(owner.username for owner in node.dataset.owner_list)

    def get_path(self, node) -> list[dict]:
        """From the column the sensitivity comes from down to this one."""
        path = self.context["paths"].get(node.pk, [node])
        return [
            {
                "nodeId": None, "label": step.label, "hidden": True, "effectiveSensitivity": None,
            } if step.hidden else {
                "nodeId": step.pk,
                "label": f"{step.dataset.qualified_name}.{step.name}" if step.dataset_id else str(step),
                "hidden": False,
                "effectiveSensitivity": sensitivity_label(step.effective_sensitivity),
            }
            for step in path
        ]


def run_summary(run) -> dict:
    return {
        "runId": str(run.run_id), "state": run.state, "startedAt": run.started_at, "endedAt": run.ended_at,
        "lastEventTime": run.last_event_time, "errorMessage": run.error_message,
        "parentRunId": str(run.parent_run_id) if run.parent_run_id else None,
    }


class RunSummarySerializer(serializers.Serializer):
    """How a run is described inside a job (a serializer only for the schema)."""

    runId = serializers.UUIDField()
    state = serializers.ChoiceField(choices=RunState.choices)
    startedAt = serializers.DateTimeField(allow_null=True)
    endedAt = serializers.DateTimeField(allow_null=True)
    lastEventTime = serializers.DateTimeField()
    errorMessage = serializers.CharField(allow_blank=True)
    parentRunId = serializers.UUIDField(allow_null=True, help_text="The parent run facet's run, received or not.")


class JobSerializer(serializers.ModelSerializer):
    processingType = serializers.CharField(source="processing_type")
    jobType = serializers.CharField(source="job_type")
    latestRun = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "namespace", "name", "description", "processingType", "integration", "jobType", "latestRun"]

    @extend_schema_field(RunSummarySerializer(allow_null=True))
    def get_latestRun(self, job) -> dict | None:
        runs = getattr(job, "latest_runs", None)
        run = runs[0] if runs else None
        return None if run is None else run_summary(run)


class JobSQLSerializer(serializers.Serializer):
    query = serializers.CharField()
    dialect = serializers.CharField(allow_blank=True)
    eventTime = serializers.DateTimeField(help_text="Of the event whose sql facet this is.")


class JobDetailSerializer(JobSerializer):
    """A job with its SQL (to readers who may see every table it names), what it reads and writes,
    and its latest runs. The view passes ``sql_visible``, ``datasets`` and ``runs`` in the context."""

    sql = serializers.SerializerMethodField()
    sqlHidden = serializers.SerializerMethodField()
    inputs = serializers.SerializerMethodField()
    outputs = serializers.SerializerMethodField()
    runs = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "sql", "sqlHidden", "inputs", "outputs", "runs"]

    @extend_schema_field(JobSQLSerializer(allow_null=True))
    def get_sql(self, job) -> dict | None:
        if not (job.sql and self.context["sql_visible"]):
            return None
        return {"query": job.sql, "dialect": job.sql_dialect, "eventTime": job.sql_event_time}

    def get_sqlHidden(self, job) -> bool:
        """True when the job has SQL the reader may not read (it names a dataset they may not see)."""
        return bool(job.sql) and not self.context["sql_visible"]

    def get_inputs(self, job) -> list[str]:
        return [dataset.qualified_name for dataset in self.context["datasets"]["inputs"]]

    def get_outputs(self, job) -> list[str]:
        return [dataset.qualified_name for dataset in self.context["datasets"]["outputs"]]

    @extend_schema_field(RunSummarySerializer(many=True))
    def get_runs(self, job) -> list[dict]:
        return [run_summary(run) for run in self.context["runs"]]


class RunSerializer(serializers.Serializer):
    """A run with its job, its parent run and the child runs the reader may see. The view passes
    ``family`` (``lineage.selectors.run_family``) in the context."""

    runId = serializers.UUIDField(source="run_id")
    job = serializers.SerializerMethodField()
    state = serializers.ChoiceField(choices=RunState.choices)
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    endedAt = serializers.DateTimeField(source="ended_at", allow_null=True)
    lastEventTime = serializers.DateTimeField(source="last_event_time")
    errorMessage = serializers.CharField(source="error_message")
    parentRunId = serializers.UUIDField(source="parent_run_id", allow_null=True,
                                        help_text="From the parent run facet; the parent may not have arrived yet.")
    parentReceived = serializers.SerializerMethodField()
    childRunIds = serializers.SerializerMethodField()
    hiddenChildren = serializers.SerializerMethodField()
    notes = serializers.ListField(child=serializers.CharField(), help_text="What the catalog could not use of the run's events.")

    @extend_schema_field({"type": "object", "properties": {
        "id": {"type": "integer"}, "namespace": {"type": "string"}, "name": {"type": "string"}}})
    def get_job(self, run) -> dict:
        return {"id": run.job_id, "namespace": run.job.namespace, "name": run.job.name}

    def get_parentReceived(self, run) -> bool:
        return run.parent_id is not None

    def get_childRunIds(self, run) -> list[str]:
        return [str(child.run_id) for child in self.context["family"]["children"]]

    def get_hiddenChildren(self, run) -> int:
        return self.context["family"]["hidden_children"]


class LineageEventSerializer(serializers.Serializer):
    eventId = serializers.IntegerField(source="pk")
    eventType = serializers.CharField(source="event_type")
    eventTime = serializers.DateTimeField(source="event_time")
    runId = serializers.UUIDField(source="run_uuid", allow_null=True)
    namespace = serializers.CharField()
    status = serializers.ChoiceField(
        choices=EventStatus.choices,
        help_text="pending: stored, not yet folded into the graph; applied: in the graph; failed: see error.",
    )
    error = serializers.JSONField(
        allow_null=True, help_text="Why a failed event could not be applied, by the path of the field where one applies."
    )
    receivedAt = serializers.DateTimeField(source="received_at")
    appliedAt = serializers.DateTimeField(source="applied_at", allow_null=True)


class IngestResultSerializer(serializers.Serializer):
    eventId = serializers.IntegerField(source="event.pk")
    duplicate = serializers.SerializerMethodField()
    status = serializers.CharField(source="event.status", help_text="pending, applied or failed.")
    error = serializers.JSONField(source="event.error", allow_null=True)
    runId = serializers.UUIDField(source="event.run_uuid", allow_null=True)
    statusUrl = serializers.SerializerMethodField(help_text="Where the run's events tell whether they were applied.")

    def get_duplicate(self, result) -> bool:
        return not result.created

    def get_statusUrl(self, result) -> str | None:
        if result.event.run_uuid is None:
            return None
        return reverse("api:lineage-run-events", args=[result.event.run_uuid])


class RunEventsSerializer(serializers.Serializer):
    runId = serializers.UUIDField()
    state = serializers.CharField(allow_null=True, help_text="The run's state once an event of it is applied.")
    pending = serializers.IntegerField()
    applied = serializers.IntegerField()
    failed = serializers.IntegerField()
    events = LineageEventSerializer(many=True)
