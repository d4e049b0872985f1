"""API shapes for lineage: graphs (nodes and edges), violations, jobs and ingestion results."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.vocabulary import UNCLASSIFIED_LABEL, Protection, Sensitivity, sensitivity_label
from lineage.models import Job, NodeKind, RunState
from lineage.selectors import dataset_effective_sensitivities


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
        if node.kind == NodeKind.COLUMN:
            return sensitivity_label(node.effective_sensitivity)
        if node.kind == NodeKind.DATASET:
            return sensitivity_label(self.context.get("dataset_effective", {}).get(node.dataset_id))
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
    starts = serializers.SerializerMethodField()
    level = serializers.CharField()
    depth = serializers.IntegerField()
    partial = serializers.BooleanField(help_text="True when the node cap cut the walk short.")
    nodes = serializers.SerializerMethodField()
    edges = LineageEdgeSerializer(many=True)

    def get_starts(self, walk) -> list[int]:
        return [node.pk for node in walk.starts]

    def get_nodes(self, walk) -> list[dict]:
        context = {"dataset_effective": dataset_effective_sensitivities(walk.nodes)}
        return LineageNodeSerializer(walk.nodes, many=True, context=context).data


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


class IngestResultSerializer(serializers.Serializer):
    eventId = serializers.IntegerField(source="event.pk")
    duplicate = serializers.SerializerMethodField()
    datasets = serializers.SerializerMethodField()
    edges = serializers.IntegerField()

    def get_duplicate(self, result) -> bool:
        return not result.created

    def get_datasets(self, result) -> list[str]:
        return sorted(dataset.qualified_name for dataset in result.datasets)
