"""Single sign-on without a browser: who the catalog signs in for a verified ID token, the password
form under LOCAL_LOGIN, the sign-in page, and the group mapping admin."""

import pytest

from access.models import AuditEvent, Role
from access.services import role_ensure_defaults
from identity.models import DirectoryAccount, DirectoryGroup, ExternalIdentity, GroupRoleMapping
from identity.oidc import SignInRefused, oidc_user_sign_in, second_factor_done_at_provider
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ISSUER = "https://idp.example.test"
PASSWORD = "pw-for-tests"  # UserFactory's


def claims(sub="u-1", **extra):
    return {"iss": ISSUER, "sub": sub, "aud": "catalog", "preferred_username": "alice", "email": "alice@example.test",
            "name": "Alice Example", "groups": [], **extra}


def roles_of(user) -> set[str]:
    return set(Role.objects.filter(group__user=user).values_list("slug", flat=True))


def test_a_taken_username_gets_a_suffix_and_the_email_links_nobody(settings):
    local = UserFactory(username="alice", email="alice@example.test")

    user = oidc_user_sign_in(claims=claims())

    assert user.pk != local.pk and user.username == "alice-2"
    assert not user.has_usable_password()
    assert ExternalIdentity.objects.get(user=user).subject == "u-1"
    assert DirectoryAccount.objects.get(user=user).source == "oidc"
    assert not DirectoryAccount.objects.filter(user=local).exists()


def test_the_same_subject_is_the_same_user_and_groups_are_set_exactly(settings):
    settings.OIDC_GROUP_ROLES = ["data-engineers=data_engineer", "security-engineers=security_engineer"]
    role_ensure_defaults()
    first = oidc_user_sign_in(claims=claims(groups=["data-engineers", "staff"]))
    assert roles_of(first) == {"data_engineer"}

    again = oidc_user_sign_in(claims=claims(groups=["security-engineers"], email="alice@new.example.test",
                                            name="Alice Renamed"))

    assert again.pk == first.pk
    again.refresh_from_db()
    assert again.email == "alice@new.example.test" and again.get_full_name() == "Alice Renamed"
    assert list(again.directory_groups.values_list("display_name", flat=True)) == ["security-engineers"]
    assert roles_of(again) == {"security_engineer"}
    assert DirectoryGroup.objects.filter(display_name="staff").exists()  # the group stays, without her
    assert AuditEvent.objects.filter(action="signin.succeeded").count() == 2


def test_another_issuer_with_the_same_subject_is_another_person():
    one = oidc_user_sign_in(claims=claims())
    other = oidc_user_sign_in(claims=claims() | {"iss": "https://other-idp.example.test"})
    assert one.pk != other.pk


def test_a_disabled_account_is_not_signed_in():
    user = oidc_user_sign_in(claims=claims())
    user.is_active = False
    user.save()
    with pytest.raises(SignInRefused):
        oidc_user_sign_in(claims=claims())


def test_amr_or_acr_counts_as_a_second_factor(settings):
    settings.OIDC_MFA_AMR = ["mfa", "otp"]
    settings.OIDC_MFA_ACR = ["urn:example:loa:2"]
    assert second_factor_done_at_provider({"amr": ["pwd", "otp"]})
    assert second_factor_done_at_provider({"amr": ["pwd"], "acr": "urn:example:loa:2"})
    assert not second_factor_done_at_provider({"amr": ["pwd"], "acr": "urn:example:loa:1"})
    assert not second_factor_done_at_provider({})


# The sign-in page and LOCAL_LOGIN ---------------------------------------------------------------

def test_the_sso_button_shows_only_when_configured(client, settings):
    assert "Sign in with" not in client.get("/login/").content.decode()
    assert client.get("/oidc/login/").status_code == 404

    settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID, settings.OIDC_PROVIDER_NAME = ISSUER, "catalog", "Okta"
    page = client.get("/login/").content.decode()
    assert "Sign in with Okta" in page and 'name="password"' in page


def sign_in(client, username):
    return client.post("/login/", {"username": username, "password": PASSWORD})


def test_local_login_admins_refuses_others_with_a_clear_message(client, settings):
    settings.LOCAL_LOGIN = "admins"
    settings.OIDC_PROVIDER_NAME = "Okta"
    UserFactory(username="mia")
    UserFactory(username="root", is_superuser=True, is_staff=True)

    response = sign_in(client, "mia")
    assert response.status_code == 200
    assert "Password sign-in is for administrators only. Sign in with Okta instead." in response.content.decode()
    assert "_auth_user_id" not in client.session

    assert sign_in(client, "root").status_code == 302


def test_local_login_users_names_the_only_admins_who_may(client, settings):
    settings.LOCAL_LOGIN = "admins"
    settings.LOCAL_LOGIN_USERS = ["breakglass"]
    UserFactory(username="root", is_superuser=True, is_staff=True)
    UserFactory(username="breakglass", is_superuser=True, is_staff=True)

    assert "administrators only" in sign_in(client, "root").content.decode()
    assert sign_in(client, "breakglass").status_code == 302


def test_the_admin_sign_in_page_obeys_local_login(client, settings):
    settings.LOCAL_LOGIN = "admins"
    settings.LOCAL_LOGIN_USERS = ["breakglass"]
    UserFactory(username="root", is_superuser=True, is_staff=True)

    response = client.post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD})

    assert "administrators only" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_local_login_none_hides_the_form_and_refuses_every_password(client, settings):
    settings.LOCAL_LOGIN = "none"
    settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID, settings.OIDC_PROVIDER_NAME = ISSUER, "catalog", "Okta"
    UserFactory(username="root", is_superuser=True, is_staff=True)

    page = client.get("/login/").content.decode()
    assert "Sign in with Okta" in page and 'name="password"' not in page
    response = sign_in(client, "root")
    assert "Password sign-in is turned off. Sign in with Okta instead." in response.content.decode()
    assert "_auth_user_id" not in client.session


# The group mapping admin -----------------------------------------------------------------------

def test_saving_and_deleting_a_mapping_re_evaluates_everyone_and_is_audited(client, admin_user):
    role_ensure_defaults()
    analyst = Role.objects.get(slug="data_analyst")
    dana = oidc_user_sign_in(claims=claims(sub="dana", preferred_username="dana", groups=["analysts"]))
    assert roles_of(dana) == set()
    client.force_login(admin_user)

    response = client.post("/admin/identity/grouprolemapping/add/", {"group_name": "Analysts", "role": analyst.pk})

    assert response.status_code == 302
    assert roles_of(dana) == {"data_analyst"}
    event = AuditEvent.objects.get(action="identity.mapping_changed")
    assert event.actor_id == admin_user.pk and event.details == {"group": "Analysts", "role": "data_analyst",
                                                                 "change": "added"}

    mapping = GroupRoleMapping.objects.get()
    response = client.post(f"/admin/identity/grouprolemapping/{mapping.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302 and not GroupRoleMapping.objects.exists()
    assert roles_of(dana) == set()
    assert AuditEvent.objects.filter(action="identity.mapping_changed", details__change="removed").count() == 1


def test_directory_groups_are_read_only_in_the_admin(client, admin_user):
    group = DirectoryGroup.objects.create(display_name="staff")
    client.force_login(admin_user)
    assert client.get("/admin/identity/directorygroup/").status_code == 200
    assert client.get("/admin/identity/directorygroup/add/").status_code == 403
    response = client.post(f"/admin/identity/directorygroup/{group.pk}/change/", {"display_name": "x"})
    assert response.status_code == 403 or DirectoryGroup.objects.get().display_name == "staff"


def test_an_unreachable_provider_is_a_clear_page_and_audited(client, settings):
    settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID, settings.OIDC_PROVIDER_NAME = "http://127.0.0.1:9", "catalog", "Okta"
    settings.OIDC_HTTP_TIMEOUT = 1

    response = client.get("/oidc/login/")

    assert response.status_code == 502
    assert "could not verify your sign-in with Okta" in response.content.decode()
    assert AuditEvent.objects.get(action="signin.failed").details["reason"].startswith("provider unreachable")


def test_a_callback_without_a_sign_in_started_is_refused(client, settings):
    settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID = "http://127.0.0.1:9", "catalog"

    response = client.get("/oidc/callback/?code=abc&state=forged")

    assert response.status_code == 400
    assert "MismatchingStateError" in AuditEvent.objects.get(action="signin.failed").details["reason"]
