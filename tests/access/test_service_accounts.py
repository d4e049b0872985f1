import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from access.forms import LoginForm
from access.models import ServiceToken, User


def test_create_service_account_prints_a_key_that_authenticates(db, capsys, store):
    call_command("create_service_account", "airflow", "--role", "data_engineer")
    key = capsys.readouterr().out.strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/datasets/").status_code == 200
    account = User.objects.get(username="airflow")
    assert account.is_service_account and not account.has_usable_password()
    assert account.groups.get().company_role.slug == "data_engineer"


def test_only_a_digest_of_the_key_is_stored(db, capsys):
    call_command("create_service_account", "airflow", "--role", "data_engineer")
    key = capsys.readouterr().out.strip()
    token = ServiceToken.objects.get()
    assert key not in (token.digest, token.prefix)
    assert token.prefix == key[:8]


def test_unknown_role_is_refused_and_lists_the_known_ones(db):
    with pytest.raises(CommandError, match="Unknown role 'wizard'.*data_engineer"):
        call_command("create_service_account", "airflow", "--role", "wizard")
    assert not User.objects.filter(username="airflow").exists()


def test_existing_name_is_refused(db, reader):
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_service_account", reader.username, "--role", "data_engineer")


def test_service_accounts_cannot_sign_in_to_the_browser(db, service_account, rf):
    user, _ = service_account
    user.set_password("a-password-someone-set")
    user.save()
    # With the request, as the sign-in page gives it: sign-in throttling needs the address.
    form = LoginForm(request=rf.post("/login/"), data={"username": user.username, "password": "a-password-someone-set"})
    assert not form.is_valid()
    assert "Service accounts cannot sign in" in str(form.errors)


def test_token_use_is_recorded(token_client, service_account):
    user, _ = service_account
    assert user.service_tokens.get().last_used_at is None
    assert token_client.get("/api/v1/datasets/").status_code == 200
    assert user.service_tokens.get().last_used_at is not None


def test_the_token_lookup_reads_the_token_its_user_and_roles_in_one_query(db, service_account,
                                                                          django_assert_num_queries):
    from access import decisions, policies
    from access.authentication import service_token_lookup
    from access.models import token_digest

    user, key = service_account
    with django_assert_num_queries(1):
        token = service_token_lookup(token_digest(key))
    assert token.user.pk == user.pk and token.revoked_at is None
    with django_assert_num_queries(0):  # a decision that needs only roles asks nothing more
        assert policies.can_register_datasets(token.user)
        roles = [role.slug for role in policies.user_roles(token.user)]
    with django_assert_num_queries(1):  # the matrix cells, when a decision needs them
        cells = decisions.matrix_cells(token.user)
    assert cells and all(cell.role.slug in roles for cell in cells)
    assert [role.slug for role in policies.user_roles(token.user)] == roles
    assert service_token_lookup(token_digest("not-a-key")) is None
