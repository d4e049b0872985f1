from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from catalog.vocabulary import ColumnMode, Protection, Sensitivity

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
    # Highest sensitivity among the current columns (kept by the registration service).
    sensitivity = models.PositiveSmallIntegerField(choices=Sensitivity.choices, default=Sensitivity.PUBLIC)
    current_version = models.ForeignKey(
        "DatasetVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["qualified_name"]
        indexes = [models.Index(fields=["store", "status"]), models.Index(fields=["sensitivity"])]

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
