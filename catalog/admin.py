from django.contrib import admin
from django.db import transaction

from access.audit import client_address
from catalog.connections import connection_remove_for_store
from catalog.models import Column, ColumnSuggestion, Connection, Dataset, DatasetVersion, DataStore, SyncRun, SyncRunEvent
from identity.stepup import StepUpAdminMixin


@admin.register(DataStore)
class DataStoreAdmin(StepUpAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "platform", "environment", "residency", "line_of_business", "customer"]
    list_filter = ["kind", "platform", "environment", "residency"]
    search_fields = ["name", "description"]

    def get_readonly_fields(self, request, obj=None):
        # Environment, residency and kind place the data and feed access decisions: on an existing
        # store they change only through a reviewed proposal (the store page or the API).
        return ["environment", "residency", "kind"] if obj is not None else []

    # A store's connection holds a sealed secret and a beat schedule: delete them with it.
    def delete_model(self, request, obj):
        with transaction.atomic():
            connection_remove_for_store(obj, actor=request.user, remote_addr=client_address(request))
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for store in queryset:
                connection_remove_for_store(store, actor=request.user, remote_addr=client_address(request))
            super().delete_queryset(request, queryset)


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
    # Owners and tags feed access decisions: they change through registration and reviewed
    # proposals, never here, so the two-person rule holds for admins too.
    readonly_fields = ["store", "schema", "name", "qualified_name", "sensitivity", "classified", "current_version",
                       "owners", "tags"]
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
class ConnectionAdmin(StepUpAdminMixin, admin.ModelAdmin):
    """Read-only here: connections change through the store page or the API, which seal the
    password. The secret itself is never shown."""

    list_display = ["store", "host", "database", "username", "schedule", "last_test_ok", "last_tested_at"]
    exclude = ["secret", "options_secret"]
    readonly_fields = [field.name for field in Connection._meta.fields if field.name not in ("secret", "options_secret")]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    # Removing one here is removing it on the store page: audited, its sealed secrets and its
    # schedule with it, after a fresh second factor (StepUpAdminMixin).
    def delete_model(self, request, obj):
        connection_remove_for_store(obj.store, actor=request.user, remote_addr=client_address(request))

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for connection in queryset.select_related("store"):
                connection_remove_for_store(connection.store, actor=request.user, remote_addr=client_address(request))


class SyncRunEventInline(admin.TabularInline):
    """The run's first problems; a run of thousands of tables has its full list on its own page."""

    model = SyncRunEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ["object_name", "outcome", "message"]
    max_shown = 100

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("pk")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        shown = self.max_shown

        class FirstEvents(formset):
            def get_queryset(self):
                return super().get_queryset()[:shown]

        return FirstEvents

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
    list_select_related = ["column__dataset", "decided_by"]
    list_filter = ["status", "label"]
    readonly_fields = [field.name for field in ColumnSuggestion._meta.fields]

    def has_add_permission(self, request):
        return False
