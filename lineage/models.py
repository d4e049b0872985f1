"""Lineage: nodes (datasets, columns, external sources), edges between them, and the jobs
and runs that OpenLineage reports.

Datasets and columns each get one node, so that one edge table and one recursive query
serve every traversal. A column node is keyed by its dataset and its name, not by the
catalog row alone: lineage may name a column before any version has it (it is linked
when the column appears) and keeps its history when a version drops it.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from catalog.models import Column, Dataset
from catalog.vocabulary import Sensitivity


class NodeKind(models.TextChoices):
    DATASET = "dataset", "Dataset"
    COLUMN = "column", "Column"
    SOURCE = "source", "External source"


class Node(models.Model):
    """A dataset, a column of a dataset, or an external source such as ``mlmodel:Sentiment``.

    A source node whose kind is a store kind (``transactional:Reviews``) is a placeholder:
    it is replaced by the dataset's own node when a matching dataset is registered.
    """

    kind = models.CharField(max_length=16, choices=NodeKind.choices)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, null=True, blank=True, related_name="lineage_nodes")
    # Unlinked by the registration service before a column row is deleted (so that delete
    # stays one statement); the node and its edges outlive the column.
    column = models.OneToOneField(
        Column, on_delete=models.DO_NOTHING, null=True, blank=True, related_name="lineage_node"
    )
    # For sources the kind as written before the colon (mlmodel, transactional, api ...).
    source_kind = models.CharField(max_length=64, blank=True)
    # Column name for column nodes, source name for sources, qualified name for datasets.
    name = models.CharField(max_length=600)

    # Effective sensitivity, kept for column nodes (see lineage.sensitivity), and for dataset nodes
    # the highest of their current columns' (kept in the same write).
    effective_sensitivity = models.PositiveSmallIntegerField(choices=Sensitivity.choices, null=True, blank=True)
    unprotected_inflow = models.PositiveSmallIntegerField(choices=Sensitivity.choices, null=True, blank=True)
    # The upstream node whose inflow set the effective sensitivity (the next step of the path).
    sensitivity_from = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    is_violation = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset"], condition=Q(kind="dataset"), name="uniq_lineage_dataset_node"),
            models.UniqueConstraint(
                "dataset", Lower("name"), condition=Q(kind="column"), name="uniq_lineage_column_node"
            ),
            models.UniqueConstraint(
                "source_kind", Lower("name"), condition=Q(kind="source"), name="uniq_lineage_source_node"
            ),
            models.CheckConstraint(
                condition=Q(kind="source", dataset__isnull=True) | Q(kind__in=["dataset", "column"], dataset__isnull=False),
                name="lineage_node_dataset_matches_kind",
            ),
        ]
        indexes = [models.Index(fields=["is_violation"], condition=Q(is_violation=True), name="lineage_node_violations")]

    def __str__(self) -> str:
        if self.kind == NodeKind.SOURCE:
            return f"{self.source_kind}:{self.name}"
        return self.name

    # Set by ``lineage.selectors`` on the nodes of a dataset the reader may not see, and on
    # sources connected to no dataset they may see (a source's name says what feeds a hidden
    # dataset): the node keeps its place in a walk (the flow goes on through it) but shows nothing.
    hidden = False
    HIDDEN_LABEL = "A dataset you may not see"
    HIDDEN_SOURCE_LABEL = "A source you may not see"

    @property
    def label(self) -> str:
        if self.hidden:
            return self.HIDDEN_SOURCE_LABEL if self.kind == NodeKind.SOURCE else self.HIDDEN_LABEL
        return str(self)


class EdgeLevel(models.TextChoices):
    DATASET = "dataset", "Dataset"
    COLUMN = "column", "Column"


class EdgeKind(models.TextChoices):
    ORIGIN = "origin", "Originating source"
    MODEL_OUTPUT = "model_output", "Model output"
    COPY = "copy", "Copy"
    TRANSFORMATION = "transformation", "Transformation"
    AGGREGATION = "aggregation", "Aggregation"
    INDIRECT = "indirect", "Indirect (filter, join, sort ...)"
    VIEW = "view", "View"
    JOB = "job", "Job"


# Edges the registration service owns: recomputed from the columns' originating sources.
REGISTRATION_EDGE_KINDS = (EdgeKind.ORIGIN, EdgeKind.MODEL_OUTPUT)


class Job(models.Model):
    """A pipeline job as OpenLineage names it: a namespace and a name."""

    namespace = models.CharField(max_length=255)
    name = models.CharField(max_length=600)
    description = models.TextField(blank=True)
    # From the ``jobType`` job facet (``lineage.facets``): e.g. BATCH / DBT / MODEL.
    processing_type = models.CharField(max_length=64, blank=True)
    integration = models.CharField(max_length=64, blank=True)
    job_type = models.CharField(max_length=64, blank=True)
    # The latest ``sql`` job facet (by event time); its tables decide who may read it.
    sql = models.TextField(blank=True)
    sql_dialect = models.CharField(max_length=64, blank=True)
    sql_event_time = models.DateTimeField(null=True, blank=True)
    # The tables the SQL names ([schema, table] pairs), parsed when the SQL arrives; False when it
    # could not be parsed, None for SQL kept before this was stored (parsed when shown).
    sql_tables = models.JSONField(null=True, blank=True)
    # The account whose event made the job: only it (or an admin) sends events for it
    # (access.policies.can_send_lineage_for).
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["namespace", "name"]
        constraints = [models.UniqueConstraint(fields=["namespace", "name"], name="uniq_lineage_job")]
        indexes = [models.Index(fields=["job_type", "integration"], name="lineage_job_type")]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class RunState(models.TextChoices):
    START = "START", "Started"
    RUNNING = "RUNNING", "Running"
    COMPLETE = "COMPLETE", "Complete"
    FAIL = "FAIL", "Failed"
    ABORT = "ABORT", "Aborted"
    OTHER = "OTHER", "Other"


TERMINAL_RUN_STATES = {RunState.COMPLETE, RunState.FAIL, RunState.ABORT}


class Run(models.Model):
    """One run of a job; its state is that of the latest event received for it."""

    run_id = models.UUIDField(unique=True)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="runs")
    state = models.CharField(max_length=16, choices=RunState.choices)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    last_event_time = models.DateTimeField()
    error_message = models.TextField(blank=True)
    # The ``parent`` run facet: the run this one is part of (a dbt model run in its dbt run). The
    # parent may arrive later or never: its id is kept, and the link made when it arrives.
    parent_run_id = models.UUIDField(null=True, blank=True, db_index=True)
    parent = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children")
    # What the catalog could not use of the run's events (an owner name no user has ...), for its pipeline.
    notes = models.JSONField(default=list, blank=True)
    # The account whose event made the run: only it (or an admin) sends events for it, and only
    # its runs are nested under it.
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_event_time"]
        indexes = [models.Index(fields=["job", "-last_event_time"])]

    def __str__(self) -> str:
        return f"{self.job} {self.run_id} {self.state}"


class Edge(models.Model):
    """Data flows from ``source`` to ``target``.

    ``level`` is ``column`` when the target is a column node, else ``dataset``; traversals
    follow one level. One row per (source, target, kind): seeing it again moves ``last_seen``.
    """

    source = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="out_edges")
    target = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="in_edges")
    level = models.CharField(max_length=8, choices=EdgeLevel.choices)
    kind = models.CharField(max_length=16, choices=EdgeKind.choices)
    # Direct edges carry values (sensitivity follows them); indirect ones only shape rows.
    direct = models.BooleanField(default=True)
    masking = models.BooleanField(default=False, help_text="The transformation masks what it carries.")
    description = models.CharField(max_length=500, blank=True)
    job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="edges")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "target", "kind"], name="uniq_lineage_edge"),
            models.CheckConstraint(condition=~Q(source=models.F("target")), name="lineage_edge_not_a_loop"),
        ]
        indexes = [
            # Both ends, with the level and the other end, so each hop of a walk is an index-only probe.
            models.Index(fields=["source", "level", "target"], name="lineage_edge_downstream"),
            models.Index(fields=["target", "level", "source"], name="lineage_edge_upstream"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id} -> {self.target_id} ({self.kind})"


class EventStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLIED = "applied", "Applied"
    FAILED = "failed", "Failed"


class LineageEvent(models.Model):
    """An OpenLineage event as received, kept once (by its digest) so a resend changes nothing.

    The endpoint stores it ``pending`` in one INSERT; ``lineage.ingestion`` folds pending events
    into jobs, runs, datasets and edges in batches and marks each ``applied``, or ``failed`` with
    the reason, in the same transaction as the batch's writes.
    """

    digest = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=16, blank=True)
    event_time = models.DateTimeField()
    # The run's id as the event names it, known before the run row exists (the status endpoint
    # and the per-run ordering of the fold read it).
    run_uuid = models.UUIDField(null=True, blank=True)
    # The job's namespace (a dataset event's dataset's): what the queue can be partitioned by.
    namespace = models.CharField(max_length=255, blank=True)
    run = models.ForeignKey(Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    producer = models.CharField(max_length=500, blank=True)
    payload = models.JSONField()
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=8, choices=EventStatus.choices, default=EventStatus.PENDING)
    error = models.JSONField(null=True, blank=True, help_text="Why the event could not be applied (failed only).")
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            # The queue: pending events in the order the fold takes them.
            models.Index(fields=["event_time", "id"], condition=Q(status="pending"), name="lineage_event_pending"),
            models.Index(fields=["run_uuid", "event_time"], name="lineage_event_run"),
            models.Index(fields=["received_by", "-received_at"], name="lineage_event_sender"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_time:%Y-%m-%d %H:%M:%S} ({self.status})"
