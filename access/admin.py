from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from access.models import Role, ServiceToken, User


@admin.register(User)
class CatalogUserAdmin(UserAdmin):
    list_display = ["username", "email", "first_name", "last_name", "is_service_account", "is_staff"]
    list_filter = UserAdmin.list_filter + ("is_service_account",)
    fieldsets = UserAdmin.fieldsets + (("Catalog", {
        "fields": ["is_service_account", "warehouse_role"],
        "description": "The warehouse role is the user's own PostgreSQL role in managed stores: "
                       "the catalog grants and revokes their just-in-time access on it.",
    }),)


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "can_register", "can_manage_stores"]


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    """Only digests are stored; keys are shown once, by create_service_account."""

    list_display = ["user", "prefix", "created_at", "expires_at", "last_used_at", "last_used_address", "revoked_at"]
    readonly_fields = ["user", "digest", "prefix", "created_at", "created_by", "last_used_at", "last_used_address",
                       "revoked_by"]

    def has_add_permission(self, request):
        return False
