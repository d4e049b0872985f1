from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.search import SearchVectorField
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from catalog.vocabulary import UNCLASSIFIED_LABEL, ColumnMode, Protection, Sensitivity

NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9_$][A-Za-z0-9_$\-/]*(\.[A-Za-z0-9_$][A-Za-z0-9_$\-/]*)*$",
    "Use letters, digits, _ - $ / and dots between parts (no spaces, no empty parts).",
)
STORE_NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9_\-]*$", "Use lower-case letters, digits, _ and - (no dots or spaces)."
)


class StoreKind(models.TextChoices):
    TRANSACTIONAL = "transactional", "Transactional"
    ANALYTICAL = "analytical", "Analytical"
    OBJECT = "object", "Object store"
    STREAM = "stream", "Stream"
    ML_MODEL = "ml_model", "ML model"


class Platform(models.TextChoices):
    POSTGRESQL = "postgresql", "PostgreSQL"
    MYSQL = "mysql", "MySQL / MariaDB"
    SQLITE = "sqlite", "SQLite"
    DUCKDB = "duckdb", "DuckDB"
    SNOWFLAKE = "snowflake", "Snowflake"
    BIGQUERY = "bigquery", "BigQuery"
    REDSHIFT = "redshift", "Redshift"
    S3 = "s3", "S3-compatible object store"
    KAFKA = "kafka", "Kafka"
    MLFLOW = "mlflow", "ML model registry"
    OTHER = "other", "Other"


class Environment(models.TextChoices):
    DEV = "dev", "dev"
    STAGING = "staging", "staging"
    PROD = "prod", "prod"


class DataStore(models.Model):
    """A system that holds data, with the segmentation attributes of the security guidance."""

    name = models.CharField(max_length=64, unique=True, validators=[STORE_NAME_VALIDATOR])
    kind = models.CharField(max_length=32, choices=StoreKind.choices)
    platform = models.CharField(max_length=32, choices=Platform.choices)
    description = models.TextField(blank=True)
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.PROD)
    residency = models.CharField(
        max_length=16, blank=True, help_text="Jurisdiction the data must stay in, e.g. CA, DE, EU, US."
    )
    line_of_business = models.CharField(max_length=64, blank=True)
    customer = models.CharField(max_length=64, blank=True, help_text="Customer or tenant, when segmented by one.")
    lineage_namespace = models.CharField(
        max_length=255, unique=True, null=True, blank=True,
        help_text="The OpenLineage namespace that names this store, e.g. postgres://db.internal:5432.",
    )
    needs_review = models.BooleanField(default=False, help_text="Discovered from lineage; nobody has reviewed it yet.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "store"

    def __str__(self) -> str:
        return self.name

    def clean(self):
        if self.lineage_namespace == "":
            self.lineage_namespace = None
        if self.residency:
            self.residency = self.residency.strip().upper()


class DatasetStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DEPRECATED = "deprecated", "Deprecated"


class Dataset(models.Model):
    """A table, view, file set, topic or model output, named ``<store>.<schema>.<name>``."""

    store = models.ForeignKey(DataStore, on_delete=models.PROTECT, related_name="datasets")
    schema = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=255)
    qualified_name = models.CharField(max_length=600, unique=True, editable=False)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=DatasetStatus.choices, default=DatasetStatus.ACTIVE)
    owners = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="owned_datasets", blank=True)
    tags = models.JSONField(default=list, blank=True)
    needs_review = models.BooleanField(default=False, help_text="Discovered from lineage; an owner should review it.")
    # When a warehouse sync last saw the table; only datasets a sync has seen are deprecated when they vanish.
    last_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Deprecated by a sync because the table vanished: a sync that sees it again reactivates it.
    # A dataset a person deprecated stays deprecated whatever the warehouse says.
    deprecated_by_sync = models.BooleanField(default=False, editable=False)
    # SHA-256 of the view definition whose lineage is recorded, so an unchanged view is not parsed again.
    definition_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    # Highest sensitivity among the current columns (kept by the registration service).
    sensitivity = models.PositiveSmallIntegerField(choices=Sensitivity.choices, default=Sensitivity.PUBLIC)
    # False while nobody has declared the dataset's sensitivity (discovered from lineage, no version
    # yet): shown as Unclassified, and decided as settings.CATALOG_UNCLASSIFIED_TIER, never as Public.
    classified = models.BooleanField(default=True)
    current_version = models.ForeignKey(
        "DatasetVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["qualified_name"]
        indexes = [models.Index(fields=["store", "status"]), models.Index(fields=["sensitivity"])]
        # Given per dataset (django-guardian, access.DatasetUserObjectPermission and
        # DatasetGroupObjectPermission): stewards review access like the owners do.
        permissions = [
            ("steward_dataset", "Can steward the dataset: review access requests, classify columns, run access reviews"),
        ]

    def __str__(self) -> str:
        return self.qualified_name

    @staticmethod
    def build_qualified_name(store_name: str, schema: str, name: str) -> str:
        return ".".join(part for part in (store_name, schema, name) if part)

    def save(self, *args, **kwargs):
        self.qualified_name = self.build_qualified_name(self.store.name, self.schema, self.name)
        super().save(*args, **kwargs)

    @property
    def registration_name(self) -> str:
        """The ``name`` as a pipeline sends it: ``<schema>.<name>``."""
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def sensitivity_label(self) -> str:
        """What pages and the API show: the tier's label, or ``Unclassified`` while nobody has
        declared it (the decision then uses ``access.decisions.dataset_tier``)."""
        return self.get_sensitivity_display() if self.classified else UNCLASSIFIED_LABEL


class DatasetVersion(models.Model):
    """An immutable snapshot of a dataset's schema: its columns with all their metadata."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    declared_version = models.CharField(max_length=64, blank=True, help_text="The producer's own version label.")
    columns = models.JSONField(help_text="Columns in canonical form, in order.")
    fingerprint = models.CharField(max_length=64)
    diff = models.JSONField(default=dict, help_text="Changes against the previous version.")
    is_breaking = models.BooleanField(default=False)
    registered_by = models.CharField(max_length=255, blank=True, help_text="As the producer declared it.")
    registered_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The authenticated principal who really registered it.",
    )
    registration_time = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="uniq_dataset_version_number")]

    def __str__(self) -> str:
        return f"{self.dataset.qualified_name} v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.pop("_allow_update", False):
            raise ValidationError("Dataset versions are immutable.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Dataset versions are immutable and cannot be deleted on their own.")


class Column(models.Model):
    """A column of a dataset's current version. Rows keep their id across versions."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="columns")
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    mode = models.CharField(max_length=16, choices=ColumnMode.choices, default=ColumnMode.NULLABLE)
    type = models.CharField(max_length=128)
    originating_source_kind = models.CharField(max_length=64, blank=True)
    originating_source_name = models.CharField(max_length=512, blank=True)
    sensitivity = models.PositiveSmallIntegerField(choices=Sensitivity.choices)
    protection = models.CharField(max_length=16, choices=Protection.choices, default=Protection.NONE)

    class Meta:
        ordering = ["dataset", "position"]
        constraints = [models.UniqueConstraint(fields=["dataset", "name"], name="uniq_column_name_per_dataset")]
        indexes = [
            models.Index(fields=["name"]),
            models.Index(fields=["originating_source_kind", "originating_source_name"]),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.qualified_name}.{self.name}"

    @property
    def originating_source(self) -> str:
        if not self.originating_source_kind:
            return ""
        return f"{self.originating_source_kind}:{self.originating_source_name}"


class Secret(models.Model):
    """A secret sealed by envelope encryption (see ``catalog.secrets``): the value is
    encrypted under its own data key, and the data key is wrapped by a master key named by
    ``key_id``. Rotating master keys re-wraps ``wrapped_key`` and never touches ``ciphertext``.
    """

    ciphertext = models.BinaryField()
    wrapped_key = models.BinaryField()
    key_id = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"secret #{self.pk} (key {self.key_id})"

    def __repr__(self) -> str:  # never show the sealed bytes, even in a debugger or a log line
        return f"<Secret #{self.pk} key={self.key_id}>"


class Connection(models.Model):
    """How workers reach a store's warehouse to harvest its schemas. The password lives in a
    :class:`Secret` and is never shown back."""

    store = models.OneToOneField(DataStore, on_delete=models.CASCADE, related_name="connection")
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    database = models.CharField(
        max_length=1024, blank=True,
        help_text="Database name; for SQLite and DuckDB the path of the database file; for BigQuery the project.",
    )
    username = models.CharField(max_length=255, blank=True)
    secret = models.OneToOneField(Secret, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    options = models.JSONField(
        default=dict, blank=True,
        help_text="Driver options from the platform's allow-list, e.g. {\"sslmode\": \"require\"}; never secret ones.",
    )
    # Secret driver options (e.g. PostgreSQL's sslpassword) are sealed like the password, as one
    # JSON object; only their names are kept in clear, to say which are stored.
    options_secret = models.OneToOneField(
        Secret, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    sealed_options = models.JSONField(default=list, blank=True, help_text="Names of the sealed driver options.")
    include_schemas = models.JSONField(default=list, blank=True, help_text="Schema patterns to sync (* and ?); empty: all.")
    exclude_schemas = models.JSONField(default=list, blank=True, help_text="Schema patterns to leave out.")
    sampling_enabled = models.BooleanField(
        default=False, help_text="Read a few values of new and changed columns to suggest classifications."
    )
    sample_size = models.PositiveSmallIntegerField(default=50)
    schedule = models.CharField(
        max_length=100, blank=True,
        help_text="Cron expression (minute hour day month weekday) for scheduled syncs; empty: manual only.",
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"connection of {self.store.name}"


class SyncStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Succeeded with errors"
    FAILED = "failed", "Failed"


ACTIVE_SYNC_STATUSES = (SyncStatus.QUEUED, SyncStatus.RUNNING)


class SyncTrigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    SCHEDULE = "schedule", "Schedule"
    API = "api", "API"


class SyncRun(models.Model):
    """One harvest of a store's warehouse. At most one run per store is queued or running."""

    store = models.ForeignKey(DataStore, on_delete=models.CASCADE, related_name="sync_runs")
    status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.QUEUED)
    trigger = models.CharField(max_length=16, choices=SyncTrigger.choices, default=SyncTrigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    phase = models.CharField(max_length=32, blank=True, help_text="What the run is doing now.")
    objects_total = models.PositiveIntegerField(null=True, blank=True)
    objects_done = models.PositiveIntegerField(default=0)
    # Objects are written in sorted order; a resumed run skips everything up to here.
    cursor = models.CharField(max_length=600, blank=True)
    new_count = models.PositiveIntegerField(default=0)
    changed_count = models.PositiveIntegerField(default=0)
    deprecated_count = models.PositiveIntegerField(default=0)
    reactivated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    suggestion_count = models.PositiveIntegerField(default=0)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per phase.")
    message = models.TextField(blank=True, help_text="Why the run failed, in words an engineer can act on.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When sync_runs_resume last sent the run again: once per stale period, not every minute.
    resent_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["store"], condition=models.Q(status__in=["queued", "running"]), name="one_active_sync_per_store"
            )
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"sync #{self.pk} of {self.store.name}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_SYNC_STATUSES

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        from django.utils import timezone

        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    @property
    def progress_percent(self) -> int | None:
        if not self.objects_total:
            return None
        return min(100, round(100 * self.objects_done / self.objects_total))


class SyncOutcome(models.TextChoices):
    NEW = "new", "New"
    CHANGED = "changed", "Changed"
    BREAKING = "breaking", "Breaking change"
    DEPRECATED = "deprecated", "Deprecated"
    REACTIVATED = "reactivated", "Reactivated"
    ERROR = "error", "Error"


class SyncRunEvent(models.Model):
    """What a run did to one object (unchanged objects are only counted)."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="events")
    object_name = models.CharField(max_length=600)
    outcome = models.CharField(max_length=16, choices=SyncOutcome.choices)
    dataset = models.ForeignKey(Dataset, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        indexes = [models.Index(fields=["run", "outcome"])]


class SuggestionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


class ColumnSuggestion(models.Model):
    """A classification a sync proposes for a column, for a steward to accept or reject.

    ``evidence`` holds counts and descriptions, never sampled values.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="suggestions")
    # Whoever deletes columns deletes their suggestions first (as lineage unlinks its nodes), so
    # dropping columns stays one DELETE instead of a collector fetching every row.
    column = models.ForeignKey(Column, on_delete=models.DO_NOTHING, related_name="suggestions")
    label = models.CharField(max_length=32)
    sensitivity = models.PositiveSmallIntegerField(choices=Sensitivity.choices)
    confidence = models.FloatField()
    evidence = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=SuggestionStatus.choices, default=SuggestionStatus.PENDING)
    run = models.ForeignKey(SyncRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="suggestions")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-confidence", "id"]
        constraints = [
            # A label is suggested once per column: a rejected suggestion is not made again.
            models.UniqueConstraint(fields=["column", "label"], name="uniq_suggestion_per_column_label")
        ]
        indexes = [models.Index(fields=["status", "dataset"])]

    def __str__(self) -> str:
        return f"{self.column} looks like {self.label}"


class DatasetSearch(models.Model):
    """A dataset's search document, kept by PostgreSQL triggers (migrations 0009 and 0010; read
    through ``catalog.search``): the weighted document and the name's words alone
    (``name_document``). The ``protections`` of its columns (a text array) are read in SQL only.
    The table exists on PostgreSQL only."""

    dataset = models.OneToOneField(
        Dataset, on_delete=models.DO_NOTHING, primary_key=True, related_name="search_document", db_constraint=False
    )
    name = models.TextField()
    document = SearchVectorField()
    name_document = SearchVectorField()

    class Meta:
        managed = False
        db_table = "catalog_datasetsearch"


class DatasetFacets(models.Model):
    """A dataset's facet values, kept by the search triggers (migration 0010; read through
    ``catalog.search``): one narrow row per dataset, so that facet counts scan no wide row and join
    nothing. The table exists on PostgreSQL only."""

    dataset = models.OneToOneField(
        Dataset, on_delete=models.DO_NOTHING, primary_key=True, related_name="search_facets", db_constraint=False
    )
    store = models.TextField()
    environment = models.TextField()
    residency = models.TextField()
    status = models.TextField()
    sensitivity = models.PositiveSmallIntegerField()
    classified = models.BooleanField()
    owners = ArrayField(models.TextField())
    tags = ArrayField(models.TextField())
    protections = ArrayField(models.TextField())

    class Meta:
        managed = False
        db_table = "catalog_datasetfacets"
