"""``user_roles_prime`` loads many users' roles and matrix cells in one query, the same as
``user_roles`` one by one (log ingestion decides for every reader of a batch)."""

import pytest

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
    with django_assert_num_queries(2):  # the cells; the roles of those holding no cell
        user_roles_prime(users)
    with django_assert_num_queries(0):
        got = {u.username: ([r.slug for r in user_roles(u)], sorted(c.pk for c in u._matrix_cells)) for u in users}
    assert got == expected and expected["dave"][0] == ["data_analyst", "data_engineer"]
    assert expected["nobody"] == ([], [])
