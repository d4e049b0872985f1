"""API representations. Keys are camelCase, like the registration JSON pipelines send."""

from rest_framework import serializers

from catalog.models import Dataset, DatasetVersion, DataStore
from catalog.vocabulary import ColumnMode, Protection, Sensitivity


def _usernames(dataset) -> list[str]:
    owners = getattr(dataset, "owner_list", None)
    if owners is None:
        owners = dataset.owners.all()
    return sorted(user.username for user in owners)


class RegistrationColumnSerializer(serializers.Serializer):
    """Describes a column in the registration body (for the OpenAPI schema).

    Validation itself is done by ``catalog.registration.registration_parse``, shared with the
    browser form; a test keeps the two lists of fields equal.
    """

    name = serializers.CharField()
    description = serializers.CharField(required=False)
    mode = serializers.ChoiceField(choices=ColumnMode.labels, required=False, help_text="Default NULLABLE.")
    type = serializers.CharField()
    originatingSource = serializers.CharField(required=False, help_text="<kind>:<name>, e.g. transactional:Reviews")
    sensitivity = serializers.ChoiceField(
        choices=Sensitivity.labels, help_text="Case-insensitive; synonyms such as internal are accepted."
    )
    protection = serializers.ChoiceField(
        choices=Protection.labels, required=False,
        help_text="Default None. Case-insensitive; synonyms such as masking, hash, encryption are accepted.",
    )


class DatasetRegistrationSerializer(serializers.Serializer):
    """Describes the registration body: the security guidance's JSON plus ``name`` and ``store``."""

    name = serializers.CharField(help_text="<schema>.<name>, or just <name> for stores without schemas.")
    store = serializers.CharField(help_text="Name of a registered store.")
    registrationTime = serializers.CharField(
        required=False, help_text="Epoch seconds (number or string) or ISO 8601. Default: now."
    )
    registeredBy = serializers.CharField(required=False, help_text="Kept as given, beside the real principal.")
    description = serializers.CharField(required=False)
    version = serializers.CharField(required=False, help_text="The producer's own version label.")
    columns = RegistrationColumnSerializer(many=True)
    owners = serializers.ListField(child=serializers.CharField(), required=False, help_text="Usernames.")
    tags = serializers.ListField(child=serializers.CharField(), required=False)


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


class DatasetSummarySerializer(serializers.ModelSerializer):
    qualifiedName = serializers.CharField(source="qualified_name")
    name = serializers.CharField(source="registration_name")
    store = serializers.CharField(source="store.name")
    storeKind = serializers.CharField(source="store.kind")
    environment = serializers.CharField(source="store.environment")
    sensitivity = serializers.CharField(source="get_sensitivity_display")
    owners = serializers.SerializerMethodField()
    versionNumber = serializers.IntegerField(source="current_version.number", allow_null=True)
    columnCount = serializers.IntegerField(source="column_count")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Dataset
        fields = [
            "id", "qualifiedName", "name", "store", "storeKind", "environment", "description", "status",
            "sensitivity", "owners", "versionNumber", "columnCount", "tags", "updatedAt",
        ]

    def get_owners(self, dataset) -> list[str]:
        return _usernames(dataset)


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
    sensitivity = serializers.CharField(source="get_sensitivity_display")
    owners = serializers.SerializerMethodField()
    segmentation = SegmentationSerializer(source="store")
    columns = ColumnSnapshotSerializer(source="current_version.columns", many=True, allow_null=True)
    needsReview = serializers.BooleanField(source="needs_review")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Dataset
        fields = [
            "id", "qualifiedName", "name", "store", "registrationTime", "registeredBy", "registeredByPrincipal",
            "description", "version", "versionNumber", "status", "needsReview", "sensitivity", "owners", "tags",
            "segmentation", "columns", "createdAt", "updatedAt",
        ]

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
