from django.contrib import admin

from lineage.models import Edge, Job, LineageEvent, Node, Run


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "dataset", "effective_sensitivity", "is_violation"]
    list_filter = ["kind", "is_violation"]
    search_fields = ["name", "dataset__qualified_name"]
    raw_id_fields = ["dataset", "column", "sensitivity_from"]


@admin.register(Edge)
class EdgeAdmin(admin.ModelAdmin):
    list_display = ["source", "target", "level", "kind", "masking", "job", "last_seen"]
    list_filter = ["level", "kind", "masking", "direct"]
    raw_id_fields = ["source", "target", "job"]
    list_select_related = ["source", "target", "job"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["namespace", "name", "updated_at"]
    search_fields = ["namespace", "name"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["run_id", "job", "state", "started_at", "ended_at"]
    list_filter = ["state"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]


@admin.register(LineageEvent)
class LineageEventAdmin(admin.ModelAdmin):
    """Received events, for looking into what a pipeline sent; they are never edited."""

    list_display = ["event_type", "event_time", "job", "status", "producer", "received_by", "received_at"]
    list_filter = ["status", "event_type"]
    list_select_related = ["job", "received_by"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False
