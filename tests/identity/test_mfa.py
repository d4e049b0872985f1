"""MFA and step-up: factors under /account/security/, the verify page, and the one step-up check
that approvals, break-glass, the role matrix and connections pass through (UI and API)."""

import pytest
from django.test import Client, override_settings
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from access import grants
from access.models import AuditEvent, RequestStatus, RolePermission
from identity import mfa, stepup
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create, service_account_with_key
from tests.identity.helpers import session_step_up, totp_code

pytestmark = [pytest.mark.django_db, pytest.mark.no_second_factor]

API = "/api/v1/access"
PASSWORD = "pw-for-tests"


@pytest.fixture
def cast(db):
    owner = UserFactory(username="olga", roles=["data_engineer"])
    store = StoreFactory(name="warehouse", environment="prod")
    dataset = dataset_create(principal=owner, store=store, name="sales.orders", owners=["olga"],
                             columns=[column_payload("order_id"), column_payload("email", sensitivity="Sensitive")])
    scientist = UserFactory(username="sam", roles=["data_scientist"])
    request = grants.access_request_create(principal=scientist, dataset=dataset, level="read", duration=4,
                                           justification="Quarterly churn analysis", ticket="OPS-1")
    return {"owner": owner, "dataset": dataset, "scientist": scientist, "request": request,
            "admin": UserFactory(username="root", is_staff=True, is_superuser=True)}


def signed_in(user, client_class=Client):
    client = client_class()
    client.force_login(user)
    return client


def totp_for(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="app", confirmed=True)


def actions(user) -> list[str]:
    return list(AuditEvent.objects.filter(actor=user, action__startswith="mfa.").order_by("pk").values_list("action", flat=True))


# API: 403 step_up_required ---------------------------------------------------------------------


def test_approving_through_the_api_without_a_fresh_factor_is_403_step_up_required(cast):
    response = signed_in(cast["owner"], APIClient).post(f"{API}/requests/{cast['request'].pk}/approve/", {}, format="json")
    assert response.status_code == 403
    assert response.json() == {
        "detail": response.json()["detail"], "code": "step_up_required", "verifyUrl": "/account/security/verify/",
    }
    cast["request"].refresh_from_db()
    assert cast["request"].status == RequestStatus.PENDING


def test_approving_through_the_api_after_a_step_up_succeeds(cast):
    client = signed_in(cast["owner"], APIClient)
    session_step_up(client)
    response = client.post(f"{API}/requests/{cast['request'].pk}/approve/", {}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "approved"


def test_an_old_factor_is_not_fresh_enough(cast):
    client = signed_in(cast["owner"], APIClient)
    session = client.session
    session[stepup.SESSION_KEY] = 1_000  # long ago
    session.save()
    response = client.post(f"{API}/requests/{cast['request'].pk}/deny/", {"reason": "no"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "step_up_required"


def test_matrix_and_break_glass_and_connection_apis_need_the_step_up(cast):
    client = signed_in(cast["admin"], APIClient)
    cell = RolePermission.objects.first()
    assert client.patch(f"{API}/matrix/{cell.pk}/", {"jitMaxHours": 2}, format="json").json()["code"] == "step_up_required"
    store = cast["dataset"].store
    put = client.put(f"/api/v1/stores/{store.pk}/connection/", {"host": "db", "database": "x"}, format="json")
    assert put.status_code == 403 and put.json()["code"] == "step_up_required"
    glass = client.post(f"{API}/break-glass/", {"dataset": cast["dataset"].pk, "level": "read", "reason": "x", "minutes": 5}, format="json")
    assert glass.status_code == 403 and glass.json()["code"] == "step_up_required"


def test_reading_is_never_asked_for_a_step_up(cast):
    client = signed_in(cast["owner"], APIClient)
    assert client.get(f"{API}/requests/{cast['request'].pk}/").status_code == 200


def test_a_service_token_is_not_asked_for_a_factor_and_still_cannot_approve(cast):
    _, key = service_account_with_key(username="pipeline", roles=("data_engineer",))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.post(f"{API}/requests/{cast['request'].pk}/approve/", {}, format="json")
    assert response.status_code in (403, 404)
    assert response.json().get("code") != "step_up_required"
    cast["request"].refresh_from_db()
    assert cast["request"].status == RequestStatus.PENDING


def test_the_schema_documents_step_up_required_on_approve():
    client = APIClient()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    approve = next(op for path, ops in schema["paths"].items() if path.endswith("/requests/{id}/approve/") for op in ops.values())
    assert "403" in approve["responses"]
    body = approve["responses"]["403"]["content"]["application/json"]["schema"]
    assert body["properties"]["code"]["enum"] == ["step_up_required"]


# UI: redirect to verify and back ---------------------------------------------------------------


def test_approving_in_the_browser_without_a_factor_goes_to_verify_and_back_to_the_request(cast):
    client = signed_in(cast["owner"])
    detail = f"/access/requests/{cast['request'].pk}/"
    response = client.post(f"{detail}review/", {"decision": "approve"}, HTTP_REFERER=f"http://testserver{detail}")
    assert response.status_code == 302
    assert response["Location"] == f"/account/security/verify/?next={detail.replace('/', '%2F')}"
    cast["request"].refresh_from_db()
    assert cast["request"].status == RequestStatus.PENDING


def test_the_verify_page_accepts_a_totp_code_and_returns_to_next(cast):
    device = totp_for(cast["owner"])
    client = signed_in(cast["owner"])
    response = client.post("/account/security/verify/?next=/access/approvals/", {"code": totp_code(device), "next": "/access/approvals/"})
    assert response.status_code == 302 and response["Location"] == "/access/approvals/"
    assert stepup.SESSION_KEY in client.session
    assert actions(cast["owner"]) == ["mfa.verified"]
    event = AuditEvent.objects.get(action="mfa.verified")
    assert event.details == {"method": "totp"}


def test_a_wrong_code_is_400_naming_the_code_and_audited(cast):
    totp_for(cast["owner"])
    client = signed_in(cast["owner"])
    response = client.post("/account/security/verify/", {"code": "000000"})
    assert response.status_code == 400
    assert b"That code is not valid" in response.content
    assert stepup.SESSION_KEY not in client.session
    assert actions(cast["owner"]) == ["mfa.verify_failed"]


def test_the_verify_page_refuses_a_next_on_another_host(cast):
    device = totp_for(cast["owner"])
    client = signed_in(cast["owner"])
    response = client.post("/account/security/verify/", {"code": totp_code(device), "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_a_recovery_code_works_once(cast):
    user = cast["owner"]
    client = signed_in(user)
    page = client.post("/account/security/recovery-codes/")
    codes = page.context["codes"]
    assert len(codes) == mfa.RECOVERY_CODE_COUNT and StaticToken.objects.count() == mfa.RECOVERY_CODE_COUNT
    assert client.post("/account/security/verify/", {"code": codes[0]}).status_code == 302
    other = signed_in(user)
    assert other.post("/account/security/verify/", {"code": codes[0]}).status_code == 400
    assert StaticToken.objects.count() == mfa.RECOVERY_CODE_COUNT - 1
    events = AuditEvent.objects.filter(action__startswith="mfa.").values_list("action", "details")
    assert all(code not in str(details) for code in codes for _, details in events)


def test_enrolling_totp_shows_the_secret_once_and_confirms_with_a_code(cast):
    user = cast["owner"]
    client = signed_in(user)
    page = client.get("/account/security/totp/")
    assert page.status_code == 200 and b"<svg" in page.content
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert client.post("/account/security/totp/", {"code": totp_code(device)}).status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert actions(user) == ["mfa.enrolled", "mfa.verified"]
    assert mfa.mfa_required_for(user) is False


def test_a_wrong_enrolment_code_is_400_and_leaves_the_app_unconfirmed(cast):
    client = signed_in(cast["owner"])
    client.get("/account/security/totp/")
    response = client.post("/account/security/totp/", {"code": "123"})
    assert response.status_code == 400 and b"That code does not match" in response.content
    assert not TOTPDevice.objects.filter(user=cast["owner"], confirmed=True).exists()
    assert actions(cast["owner"]) == []


def test_removing_a_factor_needs_a_fresh_factor_and_is_audited(cast):
    user = cast["owner"]
    device = totp_for(user)
    client = signed_in(user)
    url = f"/account/security/factors/totp/{device.pk}/remove/"
    assert client.post(url)["Location"].startswith("/account/security/verify/")
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    session_step_up(client)
    assert client.post(url).status_code == 302
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    assert actions(user) == ["mfa.removed"]


def test_a_password_sign_in_with_a_factor_waits_for_it(cast):
    user = cast["owner"]
    device = totp_for(user)
    client = Client()
    response = client.post("/login/", {"username": "olga", "password": PASSWORD})
    assert response.status_code == 302
    held = client.get("/access/approvals/")
    assert held.status_code == 302 and held["Location"].startswith("/account/security/verify/?next=")
    api = client.get(f"{API}/requests/")
    assert api.status_code == 403 and api.json()["code"] == "second_factor_required"
    client.post("/account/security/verify/", {"code": totp_code(device)})
    assert client.get("/access/approvals/").status_code == 200


@override_settings(MFA_REQUIRED_ROLES=["security_engineer", "admin"])
def test_a_role_that_needs_mfa_is_sent_to_enrol_first(cast):
    UserFactory(username="sec", roles=["security_engineer"])
    client = Client()
    client.post("/login/", {"username": "sec", "password": PASSWORD})
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/account/security/"
    assert client.get("/account/security/").status_code == 200
    assert client.get("/account/security/totp/").status_code == 200
    assert client.post("/logout/").status_code == 302


@override_settings(MFA_REQUIRED_ROLES=["security_engineer"])
def test_roles_not_named_are_not_sent_to_enrol(cast):
    client = Client()
    client.post("/login/", {"username": "sam", "password": PASSWORD})
    assert client.get("/").status_code == 200


@override_settings(MFA_REQUIRED_ROLES=["security_engineer"])
def test_a_single_sign_on_with_the_providers_mfa_is_not_sent_to_enrol(cast):
    UserFactory(username="sec", roles=["security_engineer"])
    client = Client()
    client.post("/login/", {"username": "sec", "password": PASSWORD})
    session = client.session
    session[stepup.SESSION_KEY], session[stepup.METHOD_KEY] = 2_000_000_000, "idp"
    session.save()
    assert client.get("/").status_code == 200


def test_a_platform_pipeline_changes_a_connection_with_its_token_without_a_factor(cast):
    _, key = service_account_with_key(username="terraform", roles=("platform_engineer",))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    store = cast["dataset"].store
    response = client.put(f"/api/v1/stores/{store.pk}/connection/", {"host": "db", "database": "x"}, format="json")
    assert response.status_code != 403, response.json()


def test_the_group_mapping_admin_asks_for_a_step_up_before_saving(cast):
    from django.contrib import admin
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.test import RequestFactory

    from identity.models import GroupRoleMapping

    class MappingAdmin(stepup.StepUpAdminMixin, admin.ModelAdmin):
        pass

    model_admin = MappingAdmin(GroupRoleMapping, admin.site)
    request = RequestFactory().post("/admin/identity/grouprolemapping/add/", {"group_name": "Data"})
    request.user = cast["admin"]
    request.session = Client().session
    request._messages = FallbackStorage(request)
    response = model_admin.changeform_view(request)
    assert response.status_code == 302
    assert response["Location"] == "/account/security/verify/?next=%2Fadmin%2Fidentity%2Fgrouprolemapping%2Fadd%2F"
    assert not GroupRoleMapping.objects.exists()


# Found by an insider pass: admin paths and privileged actions around the step-up ----------------


def test_admin_user_changes_need_a_fresh_factor_and_are_audited(cast):
    from access.models import Role, User

    pete = UserFactory(username="pete", roles=["product_manager"])
    client = signed_in(cast["admin"])
    url = f"/admin/access/user/{pete.pk}/change/"
    security = Role.objects.get(slug="security_engineer").group
    data = {"username": "pete", "is_active": "on", "is_staff": "on", "is_superuser": "on",
            "groups": [security.pk], "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
            "warehouse_role": ""}

    held = client.post(url, data)
    assert held.status_code == 302 and "/account/security/verify/" in held["Location"]
    assert not User.objects.get(pk=pete.pk).is_superuser

    session_step_up(client)
    saved = client.post(url, data)
    assert saved.status_code == 302 and "/verify/" not in saved["Location"]
    pete.refresh_from_db()
    assert pete.is_superuser and pete.groups.filter(pk=security.pk).exists()
    event = AuditEvent.objects.get(action="user.changed_in_admin")
    assert event.actor == cast["admin"]
    assert {"is_staff", "is_superuser", "groups"} <= set(event.details["changed"])
    assert event.details["groups"] == [security.name]


def test_the_admin_cannot_unrevoke_a_token_nor_delete_a_connection(cast):
    from access.models import ServiceToken
    from access.service_tokens import service_token_revoke
    from catalog.connections import connection_save
    from catalog.models import Connection

    account, key = service_account_with_key(username="etl")
    token = ServiceToken.objects.get(user=account)
    service_token_revoke(token=token, actor=cast["admin"])
    client = signed_in(cast["admin"])
    session_step_up(client)

    response = client.post(f"/admin/access/servicetoken/{token.pk}/change/",
                           {"revoked_at_0": "", "revoked_at_1": "", "expires_at_0": "2030-01-01", "expires_at_1": "00:00:00"})
    assert response.status_code in (302, 403)
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get(f"{API}/requests/").status_code == 401

    store = StoreFactory(name="shop", platform="postgresql")
    engineer = UserFactory(username="pia", roles=["platform_engineer"])
    connection_save(principal=engineer, store=store, host="127.0.0.1", database="postgres", username="reader")
    connection = Connection.objects.get(store=store)
    stale = signed_in(cast["admin"])  # no fresh factor: sent to verify, nothing removed
    held = stale.post(f"/admin/catalog/connection/{connection.pk}/delete/", {"post": "yes"})
    assert held.status_code == 302 and "/account/security/verify/" in held["Location"]
    assert Connection.objects.filter(pk=connection.pk).exists()
    deleted = client.post(f"/admin/catalog/connection/{connection.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert AuditEvent.objects.filter(action="connection.removed", actor=cast["admin"]).exists()


def test_approving_a_proposal_and_minting_a_token_need_a_fresh_factor(cast):
    account, _ = service_account_with_key(username="etl")
    client = signed_in(cast["admin"], APIClient)
    minted = client.post(f"/api/v1/service-accounts/{account.pk}/tokens/", {}, format="json")
    assert minted.status_code == 403 and minted.json()["code"] == "step_up_required"
    proposal = client.post("/api/v1/access/proposals/999999/approve/", {}, format="json")
    assert proposal.status_code == 403 and proposal.json()["code"] == "step_up_required"
    session_step_up(client)
    assert client.post(f"/api/v1/service-accounts/{account.pk}/tokens/", {}, format="json").status_code == 201


def test_a_scim_filter_nested_too_deep_is_an_invalid_filter():
    from identity.scim_filters import FilterError, scim_filter_q

    with pytest.raises(FilterError, match="nests too deeply"):
        scim_filter_q("(" * 400 + 'userName eq "x"' + ")" * 400, {})
