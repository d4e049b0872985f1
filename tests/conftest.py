"""The usual cast for catalog tests: a registrar, a reader, an outsider, a service account."""

import pytest
from rest_framework.test import APIClient

from tests.factories import StoreFactory, UserFactory, service_account_with_key


@pytest.fixture
def store(db):
    return StoreFactory(name="analytics", kind="analytical", platform="bigquery")


@pytest.fixture
def registrar(db):
    """A data engineer: may register and edit any dataset."""
    return UserFactory(username="dave", roles=["data_engineer"])


@pytest.fixture
def reader(db):
    """A marketing analyst: reads metadata, may not register."""
    return UserFactory(username="mia", roles=["data_analyst"])


@pytest.fixture
def platform_engineer(db):
    """A platform engineer: manages stores, their connections and syncs."""
    return UserFactory(username="pat", roles=["platform_engineer"])


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def service_account(db):
    """A pipeline's service account with the data engineer role, and its token key."""
    return service_account_with_key()


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def registrar_client(registrar):
    client = APIClient()
    client.force_login(registrar)
    return client


@pytest.fixture
def reader_client(reader):
    client = APIClient()
    client.force_login(reader)
    return client


@pytest.fixture
def token_client(service_account):
    _, key = service_account
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture(autouse=True)
def second_factor_for_test_sessions(request, monkeypatch):
    """Step-up is on in every test. People that tests sign in with force_login/force_authenticate
    have just proved a second factor, as an approver at work would have, so tests of approvals and
    connections test those; tests of step-up itself opt out with @pytest.mark.no_second_factor.
    Browser tests sign in through the form and verify for real."""
    if request.node.get_closest_marker("no_second_factor"):
        return
    from django.test import Client
    from rest_framework.test import APIClient as DrfClient

    from tests.identity.helpers import session_step_up

    force_login, force_authenticate = Client.force_login, DrfClient.force_authenticate

    def login_with_factor(self, user, backend=None):
        force_login(self, user, backend)
        session_step_up(self)

    def authenticate_with_factor(self, user=None, token=None):
        force_authenticate(self, user, token)
        if user is not None and token is None:
            session_step_up(self)

    monkeypatch.setattr(Client, "force_login", login_with_factor)
    monkeypatch.setattr(DrfClient, "force_authenticate", authenticate_with_factor)


@pytest.fixture(scope="session", autouse=True)
def file_stores_in_pytest_tmp(tmp_path_factory):
    """SQLite and DuckDB warehouses of the tests live in pytest's temporary directories: allow
    those (and only those) as file store directories, as an operator would with
    CATALOG_FILE_STORES_DIRS. Tests of the rule itself narrow it further."""
    from django.conf import settings
    from django.test import override_settings

    allowed = [*settings.CATALOG_FILE_STORES_DIRS, str(tmp_path_factory.getbasetemp())]
    with override_settings(CATALOG_FILE_STORES_DIRS=allowed):
        yield
