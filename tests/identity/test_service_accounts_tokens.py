"""The catalog's own service tokens: expiry, rotation, revoke, last use and new addresses."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import AuditEvent, ServiceToken
from tests.factories import UserFactory, registration_payload


@pytest.fixture
def admin_client(admin_user):
    client = APIClient()
    client.force_login(admin_user)
    return client


def _token_client(key, address="10.0.0.1"):
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_new_token_expires_after_the_configured_days(db, settings, service_account):
    settings.SERVICE_TOKEN_TTL_DAYS = 30
    user, _ = service_account
    from access.service_tokens import service_token_create

    token, _ = service_token_create(user=user)
    assert dt.timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= dt.timedelta(days=30)


def test_an_expired_token_is_refused_with_a_clear_message(service_account):
    user, key = service_account
    user.service_tokens.update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    response = _token_client(key).get("/api/v1/datasets/")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert key not in response.content.decode()


def test_a_revoked_token_is_refused(service_account):
    user, key = service_account
    user.service_tokens.update(revoked_at=timezone.now())
    response = _token_client(key).get("/api/v1/datasets/")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_use_records_time_and_address(service_account):
    user, key = service_account
    assert _token_client(key, "192.0.2.7").get("/api/v1/datasets/").status_code == 200
    token = user.service_tokens.get()
    assert token.last_used_at is not None and token.last_used_address == "192.0.2.7"


def test_use_is_written_at_most_once_a_minute_from_the_same_address(service_account):
    user, key = service_account
    client = _token_client(key)
    client.get("/api/v1/datasets/")
    first = user.service_tokens.get().last_used_at
    client.get("/api/v1/datasets/")
    assert user.service_tokens.get().last_used_at == first


def test_first_use_from_a_new_address_is_audited_without_the_key(service_account):
    user, key = service_account
    _token_client(key, "192.0.2.7").get("/api/v1/datasets/")
    _token_client(key, "192.0.2.7").get("/api/v1/datasets/")
    _token_client(key, "198.51.100.9").get("/api/v1/datasets/")
    _token_client(key, "192.0.2.7").get("/api/v1/datasets/")
    events = list(AuditEvent.objects.filter(action="token.new_address").order_by("id"))
    assert [event.remote_addr for event in events] == ["192.0.2.7", "198.51.100.9"]
    assert events[0].details["prefix"] == key[:8] and events[0].details["account"] == user.username
    assert key not in str(list(AuditEvent.objects.values()))
    assert user.service_tokens.get().last_used_address == "192.0.2.7"


def test_rotation_makes_a_second_key_while_the_first_keeps_working(admin_client, service_account, store):
    user, old_key = service_account
    response = admin_client.post(f"/api/v1/service-accounts/{user.pk}/tokens/", {"expiresInDays": 7}, format="json")
    assert response.status_code == 201
    body = response.json()
    new_key = body["key"]
    assert new_key != old_key and body["prefix"] == new_key[:8] and body["state"] == "active"
    assert dt.timedelta(days=6) < ServiceToken.objects.get(pk=body["id"]).expires_at - timezone.now() <= dt.timedelta(days=7)
    # Both work until the old one is revoked.
    assert _token_client(old_key).get("/api/v1/datasets/").status_code == 200
    assert _token_client(new_key).post("/api/v1/datasets/", registration_payload(store=store), format="json").status_code == 201
    old = user.service_tokens.get(prefix=old_key[:8])
    revoked = admin_client.post(f"/api/v1/service-accounts/{user.pk}/tokens/{old.pk}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert _token_client(old_key).get("/api/v1/datasets/").status_code == 401
    assert _token_client(new_key).get("/api/v1/datasets/").status_code == 200
    # The key is only in the answer that made it: not in the list, not in the audit trail.
    listing = admin_client.get(f"/api/v1/service-accounts/{user.pk}/tokens/")
    assert listing.status_code == 200 and len(listing.json()) == 2
    assert new_key not in listing.content.decode() and "key" not in listing.json()[0]
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "token.created" in actions and "token.revoked" in actions
    trail = str(list(AuditEvent.objects.values()))
    assert new_key not in trail and old_key not in trail


@pytest.mark.parametrize("body, field", [({"expiresInDays": 0}, "expiresInDays"), ({"expiresInDays": 10000}, "expiresInDays"),
                                         ({"expiresInDays": "soon"}, "expiresInDays"), ({"lifetime": 3}, "lifetime")])
def test_a_bad_lifetime_is_a_400_naming_the_field_and_makes_nothing(admin_client, service_account, body, field):
    user, _ = service_account
    response = admin_client.post(f"/api/v1/service-accounts/{user.pk}/tokens/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert user.service_tokens.count() == 1


def test_only_admins_manage_tokens(service_account, registrar_client, token_client):
    user, _ = service_account
    token = user.service_tokens.get()
    for client in (registrar_client, token_client):
        assert client.get("/api/v1/service-accounts/").json() == []
        assert client.get(f"/api/v1/service-accounts/{user.pk}/tokens/").status_code == 404
        assert client.post(f"/api/v1/service-accounts/{user.pk}/tokens/", {}, format="json").status_code == 404
        assert client.post(f"/api/v1/service-accounts/{user.pk}/tokens/{token.pk}/revoke/").status_code == 404
    assert user.service_tokens.count() == 1 and user.service_tokens.get().revoked_at is None


def test_a_person_is_no_service_account_here(admin_client, reader):
    assert admin_client.get(f"/api/v1/service-accounts/{reader.pk}/tokens/").status_code == 404


def test_the_account_list_counts_live_tokens(admin_client, service_account):
    user, _ = service_account
    ServiceToken.objects.filter(user=user).update(expires_at=timezone.now() - dt.timedelta(days=1))
    UserFactory(username="people-person")
    accounts = admin_client.get("/api/v1/service-accounts/").json()
    assert [(a["username"], a["liveTokens"], a["roles"]) for a in accounts] == [("pipeline", 0, ["data_engineer"])]


def test_create_service_account_key_expires(db, capsys, settings):
    settings.SERVICE_TOKEN_TTL_DAYS = 10
    call_command("create_service_account", "airflow", "--role", "data_engineer")
    token = ServiceToken.objects.get(user__username="airflow")
    assert token.expires_at - timezone.now() <= dt.timedelta(days=10)
