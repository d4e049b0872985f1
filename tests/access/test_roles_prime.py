"""``user_roles_prime`` loads many users' roles and matrix cells in one query, the same as
``user_roles`` one by one (log ingestion decides for every reader of a batch)."""

import pytest

from django.contrib.auth.models import Group

from access.models import User
from access.policies import user_roles, user_roles_prime
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_priming_gives_what_user_roles_gives_in_one_query(django_assert_num_queries):
    UserFactory(username="ann", roles=["data_analyst"])
    UserFactory(username="dave", roles=["data_engineer", "data_analyst"])
    UserFactory(username="nobody", roles=[])
    UserFactory(username="pm", roles=["product_manager"])
    expected = {}
    for user in User.objects.all():
        roles = user_roles(user)
        expected[user.username] = ([r.slug for r in roles], sorted(c.pk for c in user._matrix_cells))
    users = list(User.objects.all())
    with django_assert_num_queries(1):  # the roles, each joined to its cells
        user_roles_prime(users)
    with django_assert_num_queries(0):
        got = {u.username: ([r.slug for r in user_roles(u)], sorted(c.pk for c in u._matrix_cells)) for u in users}
    assert got == expected and expected["dave"][0] == ["data_analyst", "data_engineer"]
    assert expected["nobody"] == ([], [])


def test_a_role_without_cells_counts_beside_roles_with_cells(django_assert_num_queries):
    """A data engineer who also manages stores keeps both roles (store managers hold no matrix cell)."""
    from access.models import Role
    from access.policies import can_manage_stores, can_register_datasets

    manager = Role.objects.create(slug="store_keeper", name="Store keeper", group=Group.objects.create(name="Store keeper"),
                                  can_manage_stores=True)
    assert not manager.permissions.exists()
    user = UserFactory(username="erin", roles=["data_analyst"])
    user.groups.add(manager.group)
    user = User.objects.get(pk=user.pk)
    with django_assert_num_queries(1):
        roles = [role.slug for role in user_roles(user)]
    assert roles == ["data_analyst", "store_keeper"]
    assert user._matrix_cells and all(cell.role.slug == "data_analyst" for cell in user._matrix_cells)
    assert can_manage_stores(user) and not can_register_datasets(user)
