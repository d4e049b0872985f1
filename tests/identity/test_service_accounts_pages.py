"""The service accounts pages: tokens listed for admins, a new key shown once, one-click revoke."""

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import AuditEvent, ServiceToken


@pytest.fixture
def admin_browser(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_account_page_lists_its_tokens(admin_browser, service_account):
    user, key = service_account
    ServiceToken.objects.filter(user=user).update(last_used_at=timezone.now(), last_used_address="192.0.2.7")
    response = admin_browser.get(f"/access/service-accounts/{user.pk}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert key[:8] in page and "192.0.2.7" in page and "Active" in page
    assert key not in page


def test_the_list_page_links_each_account(admin_browser, service_account, reader):
    user, _ = service_account
    page = admin_browser.get("/access/service-accounts/").content.decode()
    assert f"/access/service-accounts/{user.pk}/" in page and reader.username not in page
    assert "Service accounts" in admin_browser.get("/").content.decode()


def test_a_new_token_is_shown_once_and_both_keys_work(admin_browser, service_account):
    user, old_key = service_account
    response = admin_browser.post(f"/access/service-accounts/{user.pk}/tokens/", {"expires_in_days": "30"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    token = user.service_tokens.order_by("-created_at", "-pk").first()
    new_key = response.context["new_key"]["key"]
    assert new_key in response.content.decode() and token.prefix == new_key[:8]
    assert new_key not in admin_browser.get(f"/access/service-accounts/{user.pk}/").content.decode()
    for key in (old_key, new_key):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/v1/datasets/").status_code == 200


def test_a_bad_lifetime_is_shown_on_the_field_and_makes_nothing(admin_browser, service_account, settings):
    user, _ = service_account
    response = admin_browser.post(f"/access/service-accounts/{user.pk}/tokens/",
                                  {"expires_in_days": str(settings.SERVICE_TOKEN_TTL_DAYS + 1)})
    assert response.status_code == 400
    assert "expires_in_days" in response.context["form"].errors
    assert user.service_tokens.count() == 1


def test_revoke_is_one_click_and_audited(admin_browser, service_account):
    user, key = service_account
    token = user.service_tokens.get()
    response = admin_browser.post(f"/access/service-accounts/{user.pk}/tokens/{token.pk}/revoke/", follow=True)
    assert response.status_code == 200 and "Revoked the token" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoked").count() == 1
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/datasets/").status_code == 401


def test_expired_tokens_show_as_expired(admin_browser, service_account):
    user, _ = service_account
    user.service_tokens.update(expires_at=timezone.now() - dt.timedelta(days=1))
    assert "Expired" in admin_browser.get(f"/access/service-accounts/{user.pk}/").content.decode()


def test_people_who_are_not_admins_see_nothing(client, registrar, service_account):
    user, _ = service_account
    token = user.service_tokens.get()
    client.force_login(registrar)
    assert client.get("/access/service-accounts/").status_code == 403
    assert client.get(f"/access/service-accounts/{user.pk}/").status_code == 404
    assert client.post(f"/access/service-accounts/{user.pk}/tokens/", {"expires_in_days": "5"}).status_code == 404
    assert client.post(f"/access/service-accounts/{user.pk}/tokens/{token.pk}/revoke/").status_code == 404
    assert user.service_tokens.count() == 1 and user.service_tokens.get().revoked_at is None
    assert "/access/service-accounts/" not in client.get("/").content.decode()
