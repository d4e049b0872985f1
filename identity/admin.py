from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm

from access.audit import client_address
from identity.local_login import local_login_allowed, local_login_refusal
from identity.mappings import group_role_mapping_save, group_role_mappings_delete
from identity.models import DirectoryGroup, GroupRoleMapping
from identity.stepup import StepUpAdminMixin


@admin.register(GroupRoleMapping)
class GroupRoleMappingAdmin(StepUpAdminMixin, admin.ModelAdmin):
    """Directory group -> company role. Saving or deleting re-evaluates every managed user at once."""

    list_display = ["group_name", "role", "created_at"]
    search_fields = ["group_name", "role__name"]
    list_select_related = ["role"]

    def save_model(self, request, obj, form, change):
        group_role_mapping_save(mapping=obj, actor=request.user, remote_addr=client_address(request))

    def delete_model(self, request, obj):
        group_role_mappings_delete(mappings=[obj], actor=request.user, remote_addr=client_address(request))

    def delete_queryset(self, request, queryset):
        group_role_mappings_delete(mappings=queryset, actor=request.user, remote_addr=client_address(request))


@admin.register(DirectoryGroup)
class DirectoryGroupAdmin(admin.ModelAdmin):
    """The directory's groups, as the provider or SCIM said them: read-only here."""

    list_display = ["display_name", "external_id", "updated_at"]
    search_fields = ["display_name"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AdminSignInForm(AdminAuthenticationForm):
    """The admin's own password form obeys LOCAL_LOGIN like the catalog's."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not local_login_allowed(user):
            raise forms.ValidationError(local_login_refusal(), code="local_login")


admin.site.login_form = AdminSignInForm
