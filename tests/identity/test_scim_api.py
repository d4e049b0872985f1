"""SCIM 2.0 through DRF's APIClient: tokens, errors with scimType, filters, pagination, group PATCH."""

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from access.models import AuditEvent, Role
from access.services import role_ensure_defaults
from identity.models import DirectoryGroup, ScimToken
from identity.scim_tokens import scim_token_create
from tests.factories import UserFactory, service_account_with_key

pytestmark = pytest.mark.django_db
SCIM = "application/scim+json"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture
def scim():
    _, key = scim_token_create(name="okta")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def post(client, path, body):
    return client.post(f"/scim/v2/{path}", body, format="json")


def patch(client, path, *operations):
    return client.patch(f"/scim/v2/{path}", {"schemas": [PATCH], "Operations": list(operations)}, format="json")


def make_user(client, user_name, **extra):
    response = post(client, "Users", {"schemas": [USER], "userName": user_name,
                                      "emails": [{"value": f"{user_name}@example.com", "primary": True}], **extra})
    assert response.status_code == 201, response.content
    return response.json()


def test_create_read_and_list_a_user_in_scim_json(scim):
    created = make_user(scim, "bjensen", externalId="00u1", name={"givenName": "Barbara", "familyName": "Jensen"})

    assert created["userName"] == "bjensen" and created["externalId"] == "00u1" and created["active"] is True
    assert created["meta"]["location"].endswith(f"/scim/v2/Users/{created['id']}")
    read = scim.get(f"/scim/v2/Users/{created['id']}")
    assert read["Content-Type"].startswith(SCIM) and read["ETag"] == created["meta"]["version"]
    assert read.json()["name"]["givenName"] == "Barbara" and read.json()["emails"][0]["value"] == "bjensen@example.com"
    event = AuditEvent.objects.get(action="identity.user_provisioned")
    assert event.actor_name == "scim:okta" and event.details["client"] == "okta"


@pytest.mark.parametrize("flt, expected", [
    ('userName eq "BJENSEN"', ["bjensen"]),
    ('userName sw "b"', ["bjensen", "bob"]),
    ('emails.value co "alice@"', ["alice"]),
    ('emails[value co "alice@"]', ["alice"]),
    ('externalId eq "x-2"', ["bob"]),
    ('active eq false', ["alice"]),
    ('userName sw "b" and active eq true', ["bjensen", "bob"]),
    ('userName eq "alice" or (externalId eq "x-2" and not (active eq false))', ["alice", "bob"]),
])
def test_user_filters(scim, flt, expected):
    make_user(scim, "bjensen", externalId="x-1")
    make_user(scim, "bob", externalId="x-2")
    make_user(scim, "alice", externalId="x-3", active=False)

    response = scim.get("/scim/v2/Users", {"filter": flt})

    assert response.status_code == 200, response.content
    assert sorted(r["userName"] for r in response.json()["Resources"]) == expected
    assert response.json()["totalResults"] == len(expected)


@pytest.mark.parametrize("flt", ['userName eq', 'userName xx "a"', 'password eq "a"', '(userName eq "a"', 'active eq "yes"'])
def test_a_bad_filter_is_a_400_invalid_filter(scim, flt):
    response = scim.get("/scim/v2/Users", {"filter": flt})

    assert response.status_code == 400
    body = response.json()
    assert body["scimType"] == "invalidFilter" and body["status"] == "400"
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"] and "filter" in body["detail"]


def test_pagination_with_start_index_and_count(scim):
    for number in range(5):
        make_user(scim, f"user{number}")

    page = scim.get("/scim/v2/Users", {"startIndex": 2, "count": 2}).json()

    assert page["totalResults"] == 5 and page["startIndex"] == 2 and page["itemsPerPage"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["user1", "user2"]
    assert scim.get("/scim/v2/Users", {"count": 0}).json()["Resources"] == []
    assert scim.get("/scim/v2/Users", {"count": "many"}).json()["detail"] == "'count' must be a whole number."


def test_user_list_queries_do_not_grow_with_users(scim, django_assert_max_num_queries):
    group = DirectoryGroup.objects.create(display_name="staff")
    for number in range(6):
        group.members.add(int(make_user(scim, f"user{number}")["id"]))

    with django_assert_max_num_queries(6):
        assert len(scim.get("/scim/v2/Users").json()["Resources"]) == 6


def test_errors_name_the_attribute_and_write_nothing(scim):
    missing = post(scim, "Users", {"schemas": [USER], "emails": [{"value": "x@example.com"}]})
    bad_email = post(scim, "Users", {"schemas": [USER], "userName": "x", "emails": [{"value": "not-mail"}]})
    make_user(scim, "taken")
    clash = post(scim, "Users", {"schemas": [USER], "userName": "TAKEN"})

    assert missing.status_code == 400 and missing.json()["scimType"] == "invalidValue"
    assert "userName" in missing.json()["detail"]
    assert bad_email.status_code == 400 and "emails.value" in bad_email.json()["detail"]
    assert clash.status_code == 409 and clash.json()["scimType"] == "uniqueness"
    assert scim.get("/scim/v2/Users").json()["totalResults"] == 1
    assert scim.get("/scim/v2/Users/999999").status_code == 404
    assert scim.get("/scim/v2/Users/999999").json()["status"] == "404"
    taken = scim.get("/scim/v2/Users", {"filter": 'userName eq "taken"'}).json()["Resources"][0]["id"]
    bad_patch = patch(scim, f"Users/{taken}", {"op": "move", "path": "active", "value": False})
    assert bad_patch.status_code == 400 and bad_patch.json()["scimType"] == "invalidSyntax"
    assert "op" in bad_patch.json()["detail"]
    not_json = scim.generic("POST", "/scim/v2/Users", "{not json", content_type=SCIM)
    assert not_json.status_code == 400 and not_json.json()["scimType"] == "invalidSyntax"
    no_target = patch(scim, f"Users/{taken}", {"op": "remove"})
    assert no_target.status_code == 400 and no_target.json()["scimType"] == "noTarget"
    assert scim.get(f"/scim/v2/Users/{taken}").json()["active"] is True


def test_patch_of_a_user_takes_entra_style_strings(scim):
    user = make_user(scim, "carol")

    response = patch(scim, f"Users/{user['id']}", {"op": "Replace", "path": "active", "value": "False"},
                     {"op": "replace", "path": "name.givenName", "value": "Carol"},
                     {"op": "replace", "path": 'emails[type eq "work"].value', "value": "carol@corp.example"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["active"] is False and body["name"]["givenName"] == "Carol"
    assert body["emails"][0]["value"] == "carol@corp.example"
    wrong = patch(scim, f"Users/{user['id']}", {"op": "replace", "path": "nickName", "value": "c"})
    assert wrong.status_code == 400 and wrong.json()["scimType"] == "invalidPath"


def test_group_members_patch_add_and_remove_with_a_value_filter_moves_roles(scim, settings):
    settings.OIDC_GROUP_ROLES = ["Data Engineers=data_engineer"]
    role_ensure_defaults()
    ann, ben = make_user(scim, "ann"), make_user(scim, "ben")
    group = post(scim, "Groups", {"displayName": "Data Engineers", "members": [{"value": ann["id"]}]}).json()
    engineers = Role.objects.get(slug="data_engineer").group

    added = patch(scim, f"Groups/{group['id']}", {"op": "add", "path": "members", "value": [{"value": ben["id"]}]})
    assert added.status_code == 204
    assert set(engineers.user_set.values_list("username", flat=True)) == {"ann", "ben"}

    removed = patch(scim, f"Groups/{group['id']}", {"op": "remove", "path": f'members[value eq "{ann["id"]}"]'})
    assert removed.status_code == 204
    members = scim.get(f"/scim/v2/Groups/{group['id']}").json()["members"]
    assert [m["value"] for m in members] == [ben["id"]]
    assert set(engineers.user_set.values_list("username", flat=True)) == {"ben"}
    assert scim.get("/scim/v2/Groups", {"filter": 'displayName eq "data engineers"'}).json()["totalResults"] == 1
    unknown = patch(scim, f"Groups/{group['id']}", {"op": "add", "path": "members", "value": [{"value": "424242"}]})
    assert unknown.status_code == 400 and "members.value" in unknown.json()["detail"]


def test_discovery_endpoints(scim):
    config = scim.get("/scim/v2/ServiceProviderConfig").json()
    types = scim.get("/scim/v2/ResourceTypes").json()
    schemas = scim.get("/scim/v2/Schemas").json()

    assert config["patch"]["supported"] is True and config["filter"]["supported"] is True
    assert {r["endpoint"] for r in types["Resources"]} == {"/Users", "/Groups"}
    assert {s["id"] for s in schemas["Resources"]} == {USER, "urn:ietf:params:scim:schemas:core:2.0:Group"}


def test_the_scim_token_cannot_call_the_api_and_api_tokens_cannot_call_scim(scim):
    _, api_key = service_account_with_key()
    api_token = APIClient()
    api_token.credentials(HTTP_AUTHORIZATION=f"Token {api_key}")
    api_bearer = APIClient()
    api_bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")

    assert scim.get("/api/v1/datasets/").status_code == 401
    assert api_token.get("/scim/v2/Users").status_code == 401
    assert api_bearer.get("/scim/v2/Users").status_code == 401
    assert api_bearer.get("/scim/v2/Users").json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert api_token.get("/api/v1/datasets/").status_code == 200


def test_a_signed_in_admin_cannot_call_scim():
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client = APIClient()
    client.force_login(admin)

    assert client.get("/scim/v2/Users").status_code == 401


def test_scim_token_command_prints_once_and_revokes(capsys):
    call_command("scim_token", "azure")
    key = capsys.readouterr().out.strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/scim/v2/Users").status_code == 200
    token = ScimToken.objects.get(name="azure")
    assert token.digest != key and key not in token.prefix + token.digest and token.last_used_at is not None

    call_command("scim_token", "azure", "--revoke")

    assert client.get("/scim/v2/Users").status_code == 401
    assert not AuditEvent.objects.filter(details__icontains=key).exists()


def test_a_group_patch_costs_the_same_queries_for_3_or_30_members(scim, settings, django_assert_max_num_queries):
    settings.OIDC_GROUP_ROLES = ["Small=data_analyst", "Big=data_analyst"]
    role_ensure_defaults()
    few = [make_user(scim, f"few{n}")["id"] for n in range(3)]
    many = [make_user(scim, f"many{n}")["id"] for n in range(30)]
    small = post(scim, "Groups", {"displayName": "Small"}).json()["id"]
    big = post(scim, "Groups", {"displayName": "Big"}).json()["id"]

    def add(group, ids):
        return patch(scim, f"Groups/{group}", {"op": "add", "path": "members", "value": [{"value": i} for i in ids]})

    with django_assert_max_num_queries(30) as small_run:
        assert add(small, few).status_code == 204
    with django_assert_max_num_queries(len(small_run.captured_queries)):
        assert add(big, many).status_code == 204
    analysts = Role.objects.get(slug="data_analyst").group
    assert analysts.user_set.count() == 33
    assert AuditEvent.objects.filter(action="identity.roles_changed").count() == 33


def test_group_replace_and_delete_take_the_role_away(scim, settings):
    settings.OIDC_GROUP_ROLES = ["Ops=ops_engineer"]
    role_ensure_defaults()
    ivy = make_user(scim, "ivy")
    group = post(scim, "Groups", {"displayName": "Ops", "externalId": "g-1", "members": [{"value": ivy["id"]}]}).json()
    ops = Role.objects.get(slug="ops_engineer").group
    assert list(ops.user_set.values_list("username", flat=True)) == ["ivy"]

    renamed = scim.put(f"/scim/v2/Groups/{group['id']}", {"displayName": "Former Ops", "members": [{"value": ivy["id"]}]},
                       format="json")
    assert renamed.status_code == 200 and renamed.json()["displayName"] == "Former Ops"
    assert not ops.user_set.exists()  # the new name maps to nothing

    assert scim.delete(f"/scim/v2/Groups/{group['id']}").status_code == 204
    assert scim.get(f"/scim/v2/Groups/{group['id']}").status_code == 404
    assert scim.get(f"/scim/v2/Users/{ivy['id']}").json()["groups"] == []


def test_scim_is_not_part_of_the_rest_api_schema(reader_client):
    schema = reader_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    assert not [path for path in schema["paths"] if "scim" in path.lower()]


def test_a_local_accounts_user_name_is_never_taken_over(scim):
    local = UserFactory(username="mia", roles=["data_analyst"])

    clash = post(scim, "Users", {"schemas": [USER], "userName": "Mia", "active": False})

    assert clash.status_code == 409 and clash.json()["scimType"] == "uniqueness"
    local.refresh_from_db()
    assert local.is_active and scim.get("/scim/v2/Users").json()["totalResults"] == 0


def test_a_body_over_the_limit_is_a_scim_413(scim, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = post(scim, "Users", {"schemas": [USER], "userName": "big", "name": {"givenName": "x" * 2000}})

    assert response.status_code == 413 and response.json()["status"] == "413"
    assert scim.get("/scim/v2/Users").json()["totalResults"] == 0


def test_delete_hides_the_user_and_a_new_post_brings_the_same_person_back(scim):
    first = make_user(scim, "zoe")

    assert scim.delete(f"/scim/v2/Users/{first['id']}").status_code == 204
    assert scim.get(f"/scim/v2/Users/{first['id']}").status_code == 404
    assert scim.delete(f"/scim/v2/Users/{first['id']}").status_code == 404
    again = make_user(scim, "zoe")

    assert again["id"] == first["id"] and again["active"] is True
    assert AuditEvent.objects.get(action="identity.user_provisioned", details__returning=True).actor_name == "scim:okta"
