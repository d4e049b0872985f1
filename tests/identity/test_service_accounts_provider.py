"""End to end: a JWT access token the real test provider (oidc-provider under Node) issues to the
machine client ``pipeline`` through the client credentials grant registers a dataset as the
client's service account; the same token tampered with, or one for another client, is refused."""

import pytest
from rest_framework.test import APIClient

from access.models import Role, User
from access.services import role_ensure_defaults
from identity.jwt_auth import provider_keys
from tests.factories import StoreFactory, registration_payload
from tests.identity.oidc_fixtures import API_RESOURCE, oidc_provider  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def configured(settings, oidc_provider):
    role_ensure_defaults()
    settings.OIDC_ISSUER = oidc_provider.issuer
    settings.OIDC_API_AUDIENCE = API_RESOURCE
    settings.OIDC_SERVICE_CLIENTS = ["pipeline=data_engineer"]
    provider_keys.clear()
    yield oidc_provider
    provider_keys.clear()


def _bearer(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_token_from_the_providers_client_credentials_grant_registers_a_dataset(configured):
    store = StoreFactory(name="lake")
    token = configured.pipeline_token()

    response = _bearer(token).post("/api/v1/datasets/", registration_payload(store=store, name="raw.events"),
                                   format="json")

    assert response.status_code == 201, response.content
    account = User.objects.get(username="oauth:pipeline")
    assert account.is_service_account
    assert list(Role.objects.filter(group__user=account).values_list("slug", flat=True)) == ["data_engineer"]


def test_the_providers_token_tampered_with_is_refused(configured, caplog):
    token = configured.pipeline_token()
    header, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]

    response = _bearer(f"{header}.{payload}.{flipped}").get("/api/v1/datasets/")

    assert response.status_code == 401
    assert signature not in caplog.text and payload not in caplog.text


def test_a_client_the_catalog_does_not_map_is_refused(configured, settings):
    settings.OIDC_SERVICE_CLIENTS = ["reporting=data_analyst"]
    response = _bearer(configured.pipeline_token()).get("/api/v1/datasets/")
    assert response.status_code == 401
    assert not User.objects.filter(username="oauth:pipeline").exists()
