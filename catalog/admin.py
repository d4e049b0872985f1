from django.contrib import admin

from catalog.models import Column, ColumnSuggestion, Connection, Dataset, DatasetVersion, DataStore, SyncRun, SyncRunEvent


@admin.register(DataStore)
class DataStoreAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "platform", "environment", "residency", "line_of_business", "customer"]
    list_filter = ["kind", "platform", "environment", "residency"]
    search_fields = ["name", "description"]


class ColumnInline(admin.TabularInline):
    model = Column
    extra = 0
    can_delete = False
    readonly_fields = [
        "position", "name", "type", "mode", "sensitivity", "protection",
        "originating_source_kind", "originating_source_name", "description",
    ]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    """Columns and versions change only through registration, so they are read-only here."""

    list_display = ["qualified_name", "store", "sensitivity", "status", "updated_at"]
    list_filter = ["status", "sensitivity", "store__environment", "store"]
    search_fields = ["qualified_name", "description"]
    list_select_related = ["store"]
    readonly_fields = ["store", "schema", "name", "qualified_name", "sensitivity", "current_version"]
    filter_horizontal = ["owners"]
    inlines = [ColumnInline]

    def has_add_permission(self, request):
        return False


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["dataset", "number", "is_breaking", "registered_by", "registered_by_user", "created_at"]
    list_select_related = ["dataset", "registered_by_user"]
    search_fields = ["dataset__qualified_name"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    """Read-only here: connections change through the store page or the API, which seal the
    password. The secret itself is never shown."""

    list_display = ["store", "host", "database", "username", "schedule", "last_test_ok", "last_tested_at"]
    exclude = ["secret"]
    readonly_fields = [field.name for field in Connection._meta.fields if field.name != "secret"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class SyncRunEventInline(admin.TabularInline):
    model = SyncRunEvent
    extra = 0
    can_delete = False
    readonly_fields = ["object_name", "outcome", "dataset", "message"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ["id", "store", "status", "trigger", "started_at", "finished_at", "new_count", "changed_count",
                    "deprecated_count", "failed_count"]
    list_filter = ["status", "trigger", "store"]
    readonly_fields = [field.name for field in SyncRun._meta.fields]
    inlines = [SyncRunEventInline]

    def has_add_permission(self, request):
        return False


@admin.register(ColumnSuggestion)
class ColumnSuggestionAdmin(admin.ModelAdmin):
    list_display = ["column", "label", "sensitivity", "confidence", "status", "decided_by"]
    list_filter = ["status", "label"]
    readonly_fields = [field.name for field in ColumnSuggestion._meta.fields]

    def has_add_permission(self, request):
        return False
