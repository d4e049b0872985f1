from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from access.audit import audit_record, client_address
from access.models import Role, ServiceToken, User
from identity.stepup import StepUpAdminMixin

# What a user's admin page changes that gives access: audited, and behind a fresh second factor.
USER_ACCESS_FIELDS = ("is_active", "is_staff", "is_superuser", "groups", "user_permissions", "is_service_account",
                      "warehouse_role")


@admin.register(User)
class CatalogUserAdmin(StepUpAdminMixin, UserAdmin):
    list_display = ["username", "email", "first_name", "last_name", "is_service_account", "is_staff"]
    list_filter = UserAdmin.list_filter + ("is_service_account",)
    fieldsets = UserAdmin.fieldsets + (("Catalog", {
        "fields": ["is_service_account", "warehouse_role"],
        "description": "The warehouse role is the user's own PostgreSQL role in managed stores: "
                       "the catalog grants and revokes their just-in-time access on it.",
    }),)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        changed = [name for name in USER_ACCESS_FIELDS if name in form.changed_data]
        if changed:  # inside the admin's transaction
            user = form.instance
            audit_record(actor=request.user, action="user.changed_in_admin", obj=user,
                         remote_addr=client_address(request), details={
                             "user": user.username, "changed": changed, "is_active": user.is_active,
                             "is_staff": user.is_staff, "is_superuser": user.is_superuser,
                             "groups": sorted(user.groups.values_list("name", flat=True)),
                         })


@admin.register(Role)
class RoleAdmin(StepUpAdminMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "can_register", "can_manage_stores"]


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    """Only digests are stored; keys are shown once, by create_service_account."""

    list_display = ["user", "prefix", "created_at", "expires_at", "last_used_at", "last_used_address", "revoked_at"]
    readonly_fields = ["user", "digest", "prefix", "created_at", "created_by", "last_used_at", "last_used_address",
                       "revoked_by"]

    def has_add_permission(self, request):
        return False

    # Rotation and revocation go through the service account's page or API (audited, stepped up);
    # a revoked token stays revoked, an expiry is never pushed out here.
    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
