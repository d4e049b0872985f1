"""API representations. Keys are camelCase, like the registration JSON pipelines send."""

from collections.abc import Mapping

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.connectors import CONNECTORS
from catalog.models import ColumnSuggestion, Dataset, DatasetVersion, DataStore, SyncRun, SyncRunEvent
from catalog.registration import DATASET_NAME_RE, MAX_EPOCH_SECONDS
from catalog.vocabulary import UNCLASSIFIED_LABEL, ColumnMode, Protection, Sensitivity


def _usernames(dataset) -> list[str]:
    owners = getattr(dataset, "owner_list", None)
    if owners is None:
        owners = dataset.owners.all()
    return sorted(user.username for user in owners)


# What catalog.registration.registration_parse enforces, said in the schema (lengths, the name's
# pattern, the number of columns). Sensitivity, protection and mode stay enums of the canonical
# spellings although synonyms are accepted: clients are told the spelling answers use.
NOT_DISGUISED_PATTERN = (  # no control or invisible format characters (registration._disguised)
    r"^[^\u0000-\u001f\u007f-\u009f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u180e"
    r"\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]*$"
)


@extend_schema_field({
    "oneOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_SECONDS, "description": "Epoch seconds."},
        {"type": "string", "description": "Epoch seconds as digits, or an ISO 8601 date-time."},
    ],
})
class RegistrationTimeField(serializers.CharField):
    """Epoch seconds (a number or a digit string, as the guidance's example) or ISO 8601."""


class RegistrationColumnSerializer(serializers.Serializer):
    """Describes a column in the registration body (for the OpenAPI schema).

    Validation itself is done by ``catalog.registration.registration_parse``, shared with the
    browser form; a test keeps the two lists of fields equal.
    """

    name = serializers.CharField(
        max_length=255, validators=[RegexValidator(NOT_DISGUISED_PATTERN)],
        help_text="Unique in the dataset (case-insensitively); no invisible or look-alike (full-width) characters.",
    )
    description = serializers.CharField(required=False, allow_blank=True)
    mode = serializers.ChoiceField(choices=ColumnMode.labels, required=False, help_text="Default NULLABLE.")
    type = serializers.CharField(max_length=128)
    originatingSource = serializers.CharField(
        required=False, allow_blank=True, validators=[RegexValidator(r"^[^:]+:.+$")],
        help_text="<kind>:<name>, e.g. transactional:Reviews",
    )
    sensitivity = serializers.ChoiceField(
        choices=Sensitivity.labels, help_text="Case-insensitive; synonyms such as internal are accepted."
    )
    protection = serializers.ChoiceField(
        choices=Protection.labels, required=False,
        help_text="Default None. Case-insensitive; synonyms such as masking, hash, encryption are accepted.",
    )


class DatasetRegistrationSerializer(serializers.Serializer):
    """Describes the registration body: the security guidance's JSON plus ``name`` and ``store``."""

    name = serializers.CharField(
        max_length=500, validators=[RegexValidator(DATASET_NAME_RE.pattern)],
        help_text="<schema>.<name>, or just <name> for stores without schemas.",
    )
    store = serializers.CharField(max_length=64, help_text="Name of a registered store.")
    registrationTime = RegistrationTimeField(required=False, help_text="Epoch seconds (number or string) or ISO 8601. Default: now.")
    registeredBy = serializers.CharField(
        required=False, allow_blank=True, max_length=255, help_text="Kept as given, beside the real principal."
    )
    description = serializers.CharField(required=False, allow_blank=True)
    version = serializers.CharField(
        required=False, allow_blank=True, help_text="The producer's own version label (a string or an integer; kept to 64 characters)."
    )
    columns = serializers.ListField(
        child=RegistrationColumnSerializer(), min_length=1, max_length=settings.CATALOG_MAX_COLUMNS,
        help_text="Column names are unique in the dataset, case-insensitively.",
    )
    owners = serializers.ListField(child=serializers.CharField(allow_blank=True), required=False, help_text="Usernames.")
    tags = serializers.ListField(child=serializers.CharField(allow_blank=True), required=False)


class ColumnSnapshotSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    mode = serializers.CharField()
    type = serializers.CharField()
    originatingSource = serializers.CharField()
    sensitivity = serializers.CharField()
    protection = serializers.CharField()


class SegmentationSerializer(serializers.Serializer):
    environment = serializers.CharField()
    residency = serializers.CharField()
    lineOfBusiness = serializers.CharField(source="line_of_business")
    customer = serializers.CharField()


SENSITIVITY_HELP = "Public, Regular, Sensitive or Restricted; Unclassified while nobody has declared it."
CLASSIFIED_HELP = (
    "False while nobody has classified the dataset (lineage discovered it): access is decided as the "
    "operator's default tier (CATALOG_UNCLASSIFIED_TIER), never as Public."
)


class SearchMatchSerializer(serializers.Serializer):
    name = serializers.BooleanField(help_text="The qualified name contains the search.")
    description = serializers.BooleanField(help_text="The description contains the search.")
    columns = serializers.ListField(child=serializers.CharField(), help_text="Column names that contain the search.")


class DatasetSummarySerializer(serializers.ModelSerializer):
    qualifiedName = serializers.CharField(source="qualified_name")
    name = serializers.CharField(source="registration_name")
    store = serializers.CharField(source="store.name")
    storeKind = serializers.CharField(source="store.kind")
    environment = serializers.CharField(source="store.environment")
    sensitivity = serializers.CharField(source="sensitivity_label", help_text=SENSITIVITY_HELP)
    classified = serializers.BooleanField(help_text=CLASSIFIED_HELP)
    owners = serializers.SerializerMethodField()
    versionNumber = serializers.IntegerField(source="current_version.number", allow_null=True)
    columnCount = serializers.IntegerField(source="column_count")
    updatedAt = serializers.DateTimeField(source="updated_at")
    matched = serializers.SerializerMethodField(
        help_text="With `q`: what the search matched (the name, the description, column names); null without `q`."
    )

    class Meta:
        model = Dataset
        fields = [
            "id", "qualifiedName", "name", "store", "storeKind", "environment", "description", "status",
            "sensitivity", "classified", "owners", "versionNumber", "columnCount", "tags", "updatedAt", "matched",
        ]

    def get_owners(self, dataset) -> list[str]:
        return _usernames(dataset)

    @extend_schema_field(SearchMatchSerializer(allow_null=True))
    def get_matched(self, dataset) -> dict | None:
        matches = self.context.get("search_matches")
        return matches.get(dataset.pk) if matches else None


ACCESS_LEVEL_NAMES = ["none", "metadata", "read", "write"]  # as access.serializers.LEVEL_NAMES spells them


class MyAccessApproverSerializer(serializers.Serializer):
    username = serializers.CharField()
    name = serializers.CharField()
    # ``as`` is a Python keyword: the field is declared under another name and renamed below.
    as_ = serializers.ChoiceField(choices=["owner", "steward"], help_text="Why they may approve.")

    def get_fields(self):
        fields = super().get_fields()
        fields["as"] = fields.pop("as_")
        return fields


class MyAccessWaitingForSerializer(serializers.Serializer):
    approvalsNeeded = serializers.IntegerField(min_value=1, help_text="Approvals still missing.")
    securityApprovalNeeded = serializers.BooleanField(help_text="One of them must come from a security engineer.")
    approvers = MyAccessApproverSerializer(many=True, help_text="The dataset's owners and stewards who may still approve.")
    approverRoles = serializers.ListField(
        child=serializers.ChoiceField(choices=["security engineer", "admin"]),
        help_text="Others who may approve, by role. Only these when nobody owns or stewards the dataset.",
    )
    summary = serializers.CharField(help_text="The same in one sentence, as the dataset page says it.")


class MyAccessStandingColumnSerializer(serializers.Serializer):
    name = serializers.CharField()
    level = serializers.ChoiceField(choices=ACCESS_LEVEL_NAMES)


class MyAccessStandingSerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=ACCESS_LEVEL_NAMES, help_text="What the role matrix gives on the whole dataset.")
    roles = serializers.ListField(child=serializers.CharField(), help_text="The reader's company roles.")
    columns = MyAccessStandingColumnSerializer(
        many=True, help_text="Columns of a lower tier the matrix gives more on than the whole dataset."
    )


class MyAccessGrantSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    level = serializers.ChoiceField(choices=ACCESS_LEVEL_NAMES)
    columns = serializers.ListField(child=serializers.CharField(), allow_null=True, help_text="null: the whole dataset.")
    status = serializers.ChoiceField(choices=["scheduled", "active"])
    startsAt = serializers.DateTimeField()
    endsAt = serializers.DateTimeField()
    breakGlass = serializers.BooleanField()
    outgrown = serializers.BooleanField(
        help_text="The data became more sensitive than its approvers saw: the grant no longer gives access."
    )


class MyAccessRequestSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    level = serializers.ChoiceField(choices=ACCESS_LEVEL_NAMES)
    columns = serializers.ListField(child=serializers.CharField(), allow_null=True, help_text="null: the whole dataset.")
    createdAt = serializers.DateTimeField()
    expiresAt = serializers.DateTimeField(help_text="Expires then if nobody decides.")
    extendsGrant = serializers.IntegerField(allow_null=True)
    waitingFor = MyAccessWaitingForSerializer()


class MyAccessSerializer(serializers.Serializer):
    """The reader's own access to the dataset (``access.requester.dataset_own_access``)."""

    level = serializers.ChoiceField(choices=ACCESS_LEVEL_NAMES, help_text="What the access decision gives on the whole dataset now.")
    # The same values as an approver's ``as``; a plain string, so the schema has one enum of them.
    relation = serializers.CharField(allow_null=True, help_text="`owner` or `steward` when the caller is one, else null.")
    standing = MyAccessStandingSerializer()
    grants = MyAccessGrantSerializer(many=True, help_text="Live grants (active or scheduled), soonest end first.")
    pendingRequests = MyAccessRequestSerializer(many=True)
    canRequestAccess = serializers.BooleanField(
        help_text="The role matrix lets the reader ask for more than they hold (never for an owner)."
    )


class DatasetDetailSerializer(serializers.ModelSerializer):
    """The registration shape, plus what the catalog knows about the dataset."""

    qualifiedName = serializers.CharField(source="qualified_name")
    name = serializers.CharField(source="registration_name")
    store = serializers.CharField(source="store.name")
    registrationTime = serializers.DateTimeField(source="current_version.registration_time", allow_null=True)
    registeredBy = serializers.CharField(source="current_version.registered_by", allow_null=True)
    registeredByPrincipal = serializers.SerializerMethodField()
    version = serializers.CharField(source="current_version.declared_version", allow_null=True)
    versionNumber = serializers.IntegerField(source="current_version.number", allow_null=True)
    sensitivity = serializers.CharField(source="sensitivity_label", help_text=SENSITIVITY_HELP)
    classified = serializers.BooleanField(help_text=CLASSIFIED_HELP)
    owners = serializers.SerializerMethodField()
    segmentation = SegmentationSerializer(source="store")
    columns = ColumnSnapshotSerializer(source="current_version.columns", many=True, allow_null=True)
    needsReview = serializers.BooleanField(source="needs_review")
    myAccess = serializers.SerializerMethodField(
        help_text="The caller's own access: standing, live grants, pending requests and who they wait for."
    )
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Dataset
        fields = [
            "id", "qualifiedName", "name", "store", "registrationTime", "registeredBy", "registeredByPrincipal",
            "description", "version", "versionNumber", "status", "needsReview", "sensitivity", "classified", "owners",
            "tags",
            "segmentation", "columns", "myAccess", "createdAt", "updatedAt",
        ]

    @extend_schema_field(MyAccessSerializer)
    def get_myAccess(self, dataset) -> dict | None:
        from access.requester import dataset_own_access  # access builds on the catalog

        request = self.context.get("request")
        if request is None:
            return None
        return dataset_own_access(user=request.user, dataset=dataset).as_json()

    def to_representation(self, dataset):
        data = super().to_representation(dataset)
        if not dataset.classified and data.get("columns"):
            # The schema came from lineage (a schema facet) with a placeholder tier, not from a person.
            data["columns"] = [{**column, "sensitivity": UNCLASSIFIED_LABEL} for column in data["columns"]]
        return data

    def get_registeredByPrincipal(self, dataset) -> str | None:
        if dataset.current_version is None:  # discovered from lineage, never registered
            return None
        user = dataset.current_version.registered_by_user
        return user.username if user else None

    def get_owners(self, dataset) -> list[str]:
        return _usernames(dataset)


class DatasetVersionSerializer(serializers.ModelSerializer):
    declaredVersion = serializers.CharField(source="declared_version")
    registeredBy = serializers.CharField(source="registered_by")
    registeredByPrincipal = serializers.SerializerMethodField()
    registrationTime = serializers.DateTimeField(source="registration_time")
    createdAt = serializers.DateTimeField(source="created_at")
    isBreaking = serializers.BooleanField(source="is_breaking")

    class Meta:
        model = DatasetVersion
        fields = [
            "number", "declaredVersion", "registeredBy", "registeredByPrincipal", "registrationTime",
            "createdAt", "isBreaking", "diff",
        ]

    def get_registeredByPrincipal(self, version) -> str | None:
        return version.registered_by_user.username if version.registered_by_user else None


class DatasetVersionDetailSerializer(DatasetVersionSerializer):
    columns = ColumnSnapshotSerializer(many=True)

    class Meta(DatasetVersionSerializer.Meta):
        fields = DatasetVersionSerializer.Meta.fields + ["columns"]


class ColumnChangeSerializer(serializers.Serializer):
    name = serializers.CharField()
    fields = serializers.DictField(help_text='{"type": {"from": "STRING", "to": "INT64"}, ...}')
    breaking = serializers.BooleanField()


class DatasetDiffSerializer(serializers.Serializer):
    # "from" is a Python keyword, hence the explicit field mapping below.
    to = serializers.IntegerField()
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    changed = ColumnChangeSerializer(many=True)
    breaking = serializers.BooleanField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.IntegerField()
        return fields


class StoreSerializer(serializers.ModelSerializer):
    lineOfBusiness = serializers.CharField(source="line_of_business", required=False, allow_blank=True)
    datasetCount = serializers.IntegerField(source="dataset_count", read_only=True)
    lineageNamespace = serializers.CharField(
        source="lineage_namespace", required=False, allow_blank=True, allow_null=True, validators=[]
    )
    needsReview = serializers.BooleanField(source="needs_review", read_only=True)

    class Meta:
        model = DataStore
        fields = [
            "id", "name", "kind", "platform", "description", "environment", "residency", "lineOfBusiness",
            "customer", "lineageNamespace", "needsReview", "datasetCount",
        ]
        # Uniqueness and the rest are checked by the store service's full_clean().
        extra_kwargs = {"name": {"validators": []}}


# Warehouse connections, sync runs and classification suggestions


class ConnectionSerializer(serializers.Serializer):
    """A store's warehouse connection.

    ``password`` is write-only: absent keeps the stored one, ``""`` removes it, any other value
    replaces it. Responses never carry it, not even masked; ``hasPassword`` says whether one is
    stored. Secret driver options (e.g. ``sslpassword``) follow the same rule inside ``options``
    and are never returned; ``sealedOptions`` names those stored. The rules (required fields per
    platform, allowed options, file directories, hosts, cron syntax, sample size) are the
    connection service's; this only checks the JSON types.
    """

    platform = serializers.CharField(source="store.platform", read_only=True, help_text="The store's platform.")
    host = serializers.CharField(required=False, allow_blank=True, help_text="Required except for SQLite, DuckDB and BigQuery.")
    port = serializers.IntegerField(required=False, allow_null=True)
    database = serializers.CharField(
        required=False, allow_blank=True,
        help_text="Database name; for SQLite and DuckDB the path of the database file; for BigQuery the project.",
    )
    username = serializers.CharField(required=False, allow_blank=True)
    password = serializers.CharField(
        write_only=True, required=False, allow_blank=True, trim_whitespace=False, style={"input_type": "password"},
        help_text='Write-only. Absent: keep the stored password; "": remove it; any other value: replace it.',
    )
    hasPassword = serializers.SerializerMethodField()
    options = serializers.DictField(
        required=False,
        help_text=(
            'Driver options from the platform\'s allow-list (docs/sync.md), e.g. {"sslmode": "require"}. Secret ones '
            '(sslpassword, ssl_key_password) are sealed: absent keeps them, "" removes them; never returned.'
        ),
    )
    sealedOptions = serializers.ListField(
        source="sealed_options", child=serializers.CharField(), read_only=True,
        help_text="Names of the secret driver options stored sealed; their values are never returned.",
    )
    includeSchemas = serializers.ListField(
        source="include_schemas", child=serializers.CharField(), required=False,
        help_text="Schema patterns to sync (* and ?); empty: all.",
    )
    excludeSchemas = serializers.ListField(
        source="exclude_schemas", child=serializers.CharField(), required=False, help_text="Schema patterns to leave out."
    )
    samplingEnabled = serializers.BooleanField(
        source="sampling_enabled", required=False,
        help_text="Read a few values of new and changed columns to suggest classifications (values are never stored).",
    )
    sampleSize = serializers.IntegerField(source="sample_size", required=False, help_text="Values read per column, 1 to 1000.")
    schedule = serializers.CharField(
        required=False, allow_blank=True,
        help_text="Cron expression (minute hour day-of-month month day-of-week, UTC) for scheduled syncs; empty: manual only.",
    )
    lastTestedAt = serializers.DateTimeField(source="last_tested_at", read_only=True, allow_null=True)
    lastTestOk = serializers.BooleanField(source="last_test_ok", read_only=True, allow_null=True)
    lastTestMessage = serializers.CharField(source="last_test_message", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    def get_hasPassword(self, connection) -> bool:
        return connection.secret_id is not None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # A row saved before secret options were sealed may still hold one in clear: never show it.
        connector = CONNECTORS.get(instance.store.platform)
        secret_names = connector.secret_option_names() if connector else frozenset()
        data["options"] = {name: value for name, value in (data.get("options") or {}).items() if name not in secret_names}
        return data

    def to_internal_value(self, data):
        # A misspelt field would otherwise be dropped silently, like a schedule nobody set.
        unknown = {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))} if isinstance(data, Mapping) else {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({**exc.detail, **unknown}) from None
        if unknown:
            raise serializers.ValidationError(unknown)
        return value

    def passed_data(self) -> dict | None:
        """After ``is_valid()`` failed: the validated values of the fields that passed, for the
        connection service to check as well, so that one 400 names every bad field. None when the
        body is not an object at all."""
        if not isinstance(self.initial_data, Mapping):
            return None
        passed = self.initial_data.copy()  # a QueryDict keeps its lists
        for name in list(passed):
            if name not in self.fields or name in self.errors:
                del passed[name]
        again = type(self)(data=passed, partial=True)
        return dict(again.validated_data) if again.is_valid() else {}


class ConnectionTestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField(help_text="What the warehouse answered (its version, or why it refused); never the password.")


class StoreRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class DatasetRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    qualifiedName = serializers.CharField(source="qualified_name")


class SyncProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(source="objects_done")
    total = serializers.IntegerField(source="objects_total", allow_null=True, help_text="Null until extraction is over.")
    percent = serializers.IntegerField(source="progress_percent", allow_null=True)


class SyncCountsSerializer(serializers.Serializer):
    new = serializers.IntegerField(source="new_count")
    changed = serializers.IntegerField(source="changed_count")
    deprecated = serializers.IntegerField(source="deprecated_count")
    reactivated = serializers.IntegerField(source="reactivated_count")
    unchanged = serializers.IntegerField(source="unchanged_count")
    failed = serializers.IntegerField(source="failed_count")
    suggestions = serializers.IntegerField(source="suggestion_count")


class SyncRunSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:sync-run-detail")
    store = StoreRefSerializer()
    isActive = serializers.BooleanField(source="is_active", help_text="Queued or running.")
    progress = SyncProgressSerializer(source="*")
    counts = SyncCountsSerializer(source="*")
    timings = serializers.DictField(child=serializers.FloatField(), help_text="Seconds per phase.")
    createdAt = serializers.DateTimeField(source="created_at")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)
    durationSeconds = serializers.FloatField(source="duration_seconds", allow_null=True)
    requestedBy = serializers.CharField(
        source="requested_by.username", allow_null=True, help_text="Null for scheduled runs."
    )
    events = serializers.HyperlinkedIdentityField(view_name="api:sync-run-event-list", help_text="What the run did per object.")
    # From ``selectors.sync_run_visible``: the message can name hidden warehouse objects, so only
    # store managers read it as the worker wrote it.
    message = serializers.CharField(
        source="message_shown", help_text="Why the run failed or what went wrong; in full for store managers only."
    )

    class Meta:
        model = SyncRun
        fields = [
            "id", "url", "store", "status", "isActive", "trigger", "phase", "attempts", "progress", "counts", "timings",
            "message", "createdAt", "startedAt", "finishedAt", "durationSeconds", "requestedBy", "events",
        ]


class SyncRunEventSerializer(serializers.ModelSerializer):
    objectName = serializers.CharField(source="object_name")
    dataset = DatasetRefSerializer(allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = SyncRunEvent
        fields = ["id", "objectName", "outcome", "message", "dataset", "createdAt"]


class SuggestionSerializer(serializers.ModelSerializer):
    dataset = DatasetRefSerializer()
    column = serializers.CharField(source="column.name")
    currentSensitivity = serializers.CharField(source="column.get_sensitivity_display")
    suggestedSensitivity = serializers.CharField(source="get_sensitivity_display")
    evidence = serializers.DictField(help_text="Counts and descriptions; never sampled values.")
    run = serializers.IntegerField(source="run_id", allow_null=True, help_text="The sync run that made the suggestion.")
    decidedBy = serializers.CharField(source="decided_by.username", allow_null=True)
    decidedAt = serializers.DateTimeField(source="decided_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = ColumnSuggestion
        fields = [
            "id", "dataset", "column", "label", "currentSensitivity", "suggestedSensitivity", "confidence", "evidence",
            "status", "run", "decidedBy", "decidedAt", "createdAt",
        ]
