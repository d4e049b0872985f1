"""Directory groups give company roles to the users the directory manages, and only to them."""

import pytest

from access.models import AuditEvent, Role
from access.services import role_ensure_defaults
from identity.directory import directory_roles_apply, directory_roles_apply_all, role_slugs_for_groups
from identity.models import DirectoryAccount, DirectoryGroup, GroupRoleMapping
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _roles(user) -> set[str]:
    return set(Role.objects.filter(group__user=user).values_list("slug", flat=True))


def test_settings_and_admin_mappings_both_count_in_any_case(settings):
    settings.OIDC_GROUP_ROLES = ["Security-Engineers=security_engineer", "data-engineers=data_engineer"]
    role_ensure_defaults()
    GroupRoleMapping.objects.create(group_name="Analysts", role=Role.objects.get(slug="data_analyst"))

    assert role_slugs_for_groups(["security-engineers", "ANALYSTS", "nobody"]) == {"security_engineer", "data_analyst"}
    assert role_slugs_for_groups([]) == set()


def test_a_managed_user_holds_exactly_the_roles_of_their_groups(settings):
    settings.OIDC_GROUP_ROLES = ["data-engineers=data_engineer"]
    admin = UserFactory(username="root", is_superuser=True)
    user = UserFactory(username="dana", roles=["product_manager"])
    DirectoryAccount.objects.create(user=user, source=DirectoryAccount.Source.SCIM)
    DirectoryGroup.objects.create(display_name="data-engineers").members.add(user)

    added, removed = directory_roles_apply(user, actor=admin, via="test")

    assert (added, removed) == ({"data_engineer"}, {"product_manager"})
    assert _roles(user) == {"data_engineer"}
    event = AuditEvent.objects.get(action="identity.roles_changed")
    assert event.details["added"] == ["data_engineer"] and event.details["removed"] == ["product_manager"]
    # Out of the group: no role at all.
    user.directory_groups.clear()
    assert directory_roles_apply_all(actor=admin) == 1
    assert _roles(user) == set()


def test_a_local_user_keeps_the_roles_an_admin_gave(settings):
    settings.OIDC_GROUP_ROLES = ["data-engineers=data_engineer"]
    local = UserFactory(username="mia", roles=["data_analyst"])
    DirectoryGroup.objects.create(display_name="data-engineers").members.add(local)

    assert directory_roles_apply(local, actor=None) == (set(), set())
    assert _roles(local) == {"data_analyst"}
