"""Dataset stewards: django-guardian object permissions (direct foreign-key tables) that make a
user, or every member of a group, approve access to a dataset like its owners do.

The cast: Olga (data analyst, not a registrar) owns crm.customers, a prod dataset with a
Sensitive column; Sara (data scientist) asks to read it; Stella (data analyst) is a steward;
Tom is in the "crm-team" group, a steward group; Paul (product manager) sees no prod
Sensitive metadata by role; Otto (data analyst) is an outsider; Dave (conftest's registrar)
registers datasets.
"""

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.models import GroupObjectPermission, UserObjectPermission
from rest_framework.test import APIClient

from access import decisions, grants, policies, proposals, selectors
from access.audit import audit_verify
from access.models import (
    AuditEvent,
    DatasetGroupObjectPermission,
    DatasetUserObjectPermission,
    Grant,
    GrantStatus,
    RequestStatus,
    User,
)
from catalog import selectors as catalog_selectors
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = pytest.mark.django_db

JUSTIFICATION = "Quarterly churn analysis for the board."
API = "/api/v1"


@pytest.fixture
def prod(db):
    return StoreFactory(name="warehouse", environment="prod")


@pytest.fixture
def owner(db):
    return UserFactory(username="olga", roles=["data_analyst"])


@pytest.fixture
def scientist(db):
    return UserFactory(username="sara", roles=["data_scientist"])


@pytest.fixture
def steward(db):
    return UserFactory(username="stella", roles=["data_analyst"])


@pytest.fixture
def team(db):
    """The "crm-team" group with Tom in it."""
    group = Group.objects.create(name="crm-team")
    tom = UserFactory(username="tom", roles=["data_analyst"])
    tom.groups.add(group)
    return group


@pytest.fixture
def tom(team):
    return User.objects.get(username="tom")


@pytest.fixture
def outsider(db):
    return UserFactory(username="otto", roles=["data_analyst"])


@pytest.fixture
def customers(registrar, prod, owner):
    return _dataset(registrar, prod, owner, "crm.customers")


def _dataset(registrar, store, owner, name):
    return dataset_create(principal=registrar, store=store, name=name, owners=[owner.username], columns=[
        column_payload("customer_id"), column_payload("email", sensitivity="Sensitive"),
    ])


def ask(user, dataset):
    return grants.access_request_create(principal=user, dataset=dataset, level="read", duration=4,
                                        justification=JUSTIFICATION, ticket="SEC-1")


def again(user):
    """The user as the next request sees them (nothing cached on the object)."""
    return User.objects.get(pk=user.pk)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# Reviewing requests ---------------------------------------------------------------------------------


def test_a_steward_sees_the_request_in_the_queue_approves_it_and_was_mailed(
    owner, steward, scientist, customers, django_capture_on_commit_callbacks,
):
    grants.dataset_steward_add(principal=owner, dataset=customers, user=steward)
    with django_capture_on_commit_callbacks(execute=True):
        request = ask(scientist, customers)
    assert {address for message in mail.outbox for address in message.to} == {owner.email, steward.email}
    assert list(selectors.approval_queue(user=again(steward))) == [request]
    assert selectors.request_visible(user=again(steward)).filter(pk=request.pk).exists()

    decided = grants.access_request_review(principal=again(steward), request=request, approve=True)
    assert decided.status == RequestStatus.APPROVED
    grant = Grant.objects.get(request=request)
    assert grant.status == GrantStatus.ACTIVE and grant.user == scientist
    assert selectors.grant_visible(user=again(steward)).filter(pk=grant.pk).exists()


def test_a_member_of_a_steward_group_is_mailed_sees_the_queue_page_and_approves_through_the_api(
    client, owner, team, tom, scientist, customers, django_capture_on_commit_callbacks,
):
    grants.dataset_steward_add(principal=owner, dataset=customers, group=team)
    with django_capture_on_commit_callbacks(execute=True):
        request = ask(scientist, customers)
    assert tom.email in {address for message in mail.outbox for address in message.to}
    client.force_login(tom)
    page = client.get(reverse("access:approval-queue"))
    assert [item.pk for item in page.context["queue"]] == [request.pk]

    response = client_for(tom).post(f"{API}/access/requests/{request.pk}/approve/", {"reason": "ok"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "approved"


def test_someone_who_is_not_a_steward_neither_sees_nor_reviews_the_request(outsider, steward, owner, scientist, customers):
    grants.dataset_steward_add(principal=owner, dataset=customers, user=steward)
    request = ask(scientist, customers)
    assert not selectors.approval_queue(user=outsider).exists()
    assert not selectors.request_visible(user=outsider).filter(pk=request.pk).exists()
    assert outsider.email not in {user.email for user in grants.approvers_for(request)}
    with pytest.raises(PermissionDenied):
        grants.access_request_review(principal=outsider, request=request, approve=True)
    assert request.reviews.count() == 0


def test_a_steward_of_another_dataset_does_not_review_this_one(registrar, prod, owner, steward, scientist, customers):
    other = _dataset(registrar, prod, owner, "crm.leads")
    grants.dataset_steward_add(principal=owner, dataset=other, user=steward)
    request = ask(scientist, customers)
    assert not selectors.approval_queue(user=again(steward)).exists()
    assert not policies.can_review_request(again(steward), request)


def test_removing_a_steward_removes_the_right(owner, steward, scientist, customers):
    grants.dataset_steward_add(principal=owner, dataset=customers, user=steward)
    request = ask(scientist, customers)
    assert policies.can_review_request(again(steward), request)

    grants.dataset_steward_remove(principal=owner, dataset=customers, user=again(steward))
    assert not selectors.approval_queue(user=again(steward)).exists()
    assert steward.email not in {user.email for user in grants.approvers_for(request)}
    with pytest.raises(PermissionDenied):
        grants.access_request_review(principal=again(steward), request=request, approve=True)


def test_removing_a_steward_group_removes_its_members_right(owner, team, tom, scientist, customers):
    grants.dataset_steward_add(principal=owner, dataset=customers, group=team)
    request = ask(scientist, customers)
    assert policies.can_review_request(again(tom), request)
    grants.dataset_steward_remove(principal=owner, dataset=customers, group=team)
    assert not policies.can_review_request(again(tom), request)
    assert not selectors.approval_queue(user=again(tom)).exists()


# What else a steward does ---------------------------------------------------------------------------


def test_a_steward_sees_the_metadata_their_roles_would_not_show(owner, customers):
    manager = UserFactory(username="paul", roles=["product_manager"])  # aggregated-only standing
    assert not catalog_selectors.dataset_visible(user=manager).filter(pk=customers.pk).exists()
    grants.dataset_steward_add(principal=owner, dataset=customers, user=manager)
    manager = again(manager)
    assert catalog_selectors.dataset_visible(user=manager).filter(pk=customers.pk).exists()
    decision = decisions.access_decide(manager, "metadata", catalog_selectors.dataset_get(user=manager, pk=customers.pk))
    assert decision.allowed and decision.via == "steward"
    assert not decisions.access_decide(manager, "read", customers).allowed  # stewardship reads no data


def test_a_steward_edits_the_dataset_runs_its_access_review_and_revokes_its_grants(
    client, owner, steward, scientist, customers,
):
    grants.dataset_steward_add(principal=owner, dataset=customers, user=steward)
    request = ask(scientist, customers)
    grants.access_request_review(principal=owner, request=request, approve=True)
    grant = Grant.objects.get(request=request)
    steward = again(steward)
    assert policies.can_edit_dataset(steward, customers)
    client.force_login(steward)
    assert client.get(reverse("catalog:dataset-edit", args=[customers.pk])).status_code == 200
    assert client.get(reverse("access:access-review", args=[customers.pk])).status_code == 200
    grants.dataset_access_review_confirm(principal=steward, dataset=customers, note="All fine")
    grants.grant_revoke(principal=steward, grant=grant, reason="Analysis done")
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REVOKED


# Storage ------------------------------------------------------------------------------------------


def test_stewardship_is_stored_in_the_direct_foreign_key_tables(owner, steward, team, tom, outsider, customers):
    grants.dataset_steward_add(principal=owner, dataset=customers, user=steward)
    grants.dataset_steward_add(principal=owner, dataset=customers, group=team)
    user_row = DatasetUserObjectPermission.objects.get()
    group_row = DatasetGroupObjectPermission.objects.get()
    assert (user_row.user, user_row.content_object, user_row.permission.codename) == (steward, customers, "steward_dataset")
    assert (group_row.group, group_row.content_object) == (team, customers)
    assert not UserObjectPermission.objects.exists() and not GroupObjectPermission.objects.exists()
    # Django's permission API answers through guardian's backend.
    assert again(steward).has_perm("catalog.steward_dataset", customers)
    assert again(tom).has_perm("catalog.steward_dataset", customers)
    assert not again(outsider).has_perm("catalog.steward_dataset", customers)


# Who changes stewards, audit, bad input -----------------------------------------------------------------


def test_adding_and_removing_stewards_is_audited(owner, steward, team, customers):
    grants.dataset_steward_add(principal=owner, dataset=customers, user=steward, remote_addr="10.0.0.7")
    grants.dataset_steward_add(principal=owner, dataset=customers, group=team)
    grants.dataset_steward_remove(principal=owner, dataset=customers, user=steward)
    events = list(AuditEvent.objects.filter(action__startswith="steward.").order_by("id"))
    assert [(e.action, e.details, e.actor_id, e.dataset_id) for e in events] == [
        ("steward.added", {"user": "stella"}, owner.pk, customers.pk),
        ("steward.added", {"group": "crm-team"}, owner.pk, customers.pk),
        ("steward.removed", {"user": "stella"}, owner.pk, customers.pk),
    ]
    assert events[0].remote_addr == "10.0.0.7"
    assert audit_verify().intact


@pytest.mark.parametrize("who", ["owner", "registrar", "admin"])
def test_owners_registrars_and_admins_change_stewards(who, request, steward, owner, customers):
    principal = request.getfixturevalue({"admin": "admin_user"}.get(who, who))
    proposal = grants.dataset_steward_add(principal=principal, dataset=customers, user=steward)
    if who == "owner":  # an owner delegates at once
        assert proposal is None
    else:  # anyone else proposes; the owner and (Sensitive data) a security engineer approve
        assert not DatasetUserObjectPermission.objects.filter(user=steward).exists()
        proposals.proposal_review(principal=owner, proposal=proposal, approve=True)
        assert not DatasetUserObjectPermission.objects.filter(user=steward).exists()
        security = UserFactory(username="sam", roles=["security_engineer"])
        proposals.proposal_review(principal=security, proposal=proposal, approve=True)
    assert DatasetUserObjectPermission.objects.filter(user=steward).exists()
    grants.dataset_steward_remove(principal=principal, dataset=customers, user=steward)
    assert not DatasetUserObjectPermission.objects.exists()


@pytest.mark.parametrize("who", ["steward", "outsider", "security"])
def test_stewards_and_others_do_not_change_stewards(who, owner, steward, outsider, customers):
    grants.dataset_steward_add(principal=owner, dataset=customers, user=steward)
    principal = {"steward": again(steward), "outsider": outsider,
                 "security": UserFactory(username="sam", roles=["security_engineer"])}[who]
    newcomer = UserFactory(username="nina", roles=["data_analyst"])
    before = AuditEvent.objects.count()
    with pytest.raises(PermissionDenied):
        grants.dataset_steward_add(principal=principal, dataset=customers, user=newcomer)
    with pytest.raises(PermissionDenied):
        grants.dataset_steward_remove(principal=principal, dataset=customers, user=steward)
    assert list(DatasetUserObjectPermission.objects.values_list("user__username", flat=True)) == ["stella"]
    assert AuditEvent.objects.count() == before


def test_bad_steward_input_names_the_field_and_writes_nothing(owner, steward, customers, team):
    pipeline = UserFactory(username="pipeline", is_service_account=True)
    cases = [
        ({"user": steward, "group": team}, "user"),
        ({}, "user"),
        ({"user": pipeline}, "user"),
    ]
    for fields, field in cases:
        with pytest.raises(ValidationError) as error:
            grants.dataset_steward_add(principal=owner, dataset=customers, **fields)
        assert field in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        grants.dataset_steward_remove(principal=owner, dataset=customers, group=team)
    assert "group" in error.value.message_dict
    grants.dataset_steward_add(principal=owner, dataset=customers, user=steward)
    with pytest.raises(ValidationError) as error:
        grants.dataset_steward_add(principal=owner, dataset=customers, user=steward)
    assert "already a steward" in error.value.message_dict["user"][0]
    assert DatasetUserObjectPermission.objects.count() == 1 and not DatasetGroupObjectPermission.objects.exists()
    assert AuditEvent.objects.filter(action__startswith="steward.").count() == 1


# API ------------------------------------------------------------------------------------------------


def test_the_api_lists_adds_and_removes_stewards(owner, steward, team, tom, customers):
    client = client_for(owner)
    url = f"{API}/datasets/{customers.pk}/stewards/"
    assert client.post(url, {"user": "stella"}, format="json").status_code == 201
    response = client.post(url, {"group": "crm-team"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["dataset"]["qualifiedName"] == customers.qualified_name
    assert body["owners"] == ["olga"] and body["canChange"] is True
    assert [u["username"] for u in body["users"]] == ["stella"]
    assert body["groups"] == [{"name": "crm-team", "members": ["tom"]}]

    seen = client_for(steward).get(url)
    assert seen.status_code == 200 and seen.json()["canChange"] is False

    assert client.delete(f"{url}users/stella/").status_code == 204
    assert client.delete(f"{url}groups/crm-team/").status_code == 204
    assert client.delete(f"{url}groups/crm-team/").status_code == 404
    assert client.get(url).json()["users"] == [] and client.get(url).json()["groups"] == []


def test_the_api_refuses_outsiders_and_names_bad_fields(owner, outsider, customers):
    url = f"{API}/datasets/{customers.pk}/stewards/"
    refused = client_for(outsider).post(url, {"user": "otto"}, format="json")
    assert refused.status_code == 403
    hidden = client_for(UserFactory(username="paul", roles=["product_manager"])).get(url)
    assert hidden.status_code == 404  # does not see the dataset
    client = client_for(owner)
    assert client.post(url, {"user": "nobody-here"}, format="json").json()["errors"] == {
        "user": ["No active user named 'nobody-here'."]
    }
    assert "group" in client.post(url, {"group": "no-such-team"}, format="json").json()["errors"]
    assert "user" in client.post(url, {"user": "otto", "group": "x"}, format="json").json()["errors"]
    assert "colour" in client.post(url, {"user": "otto", "colour": "red"}, format="json").json()["errors"]
    assert not DatasetUserObjectPermission.objects.exists()


# The access review page ----------------------------------------------------------------------------


def test_the_access_review_page_shows_stewards_and_lets_the_owner_change_them(client, owner, steward, team, customers):
    client.force_login(owner)
    add = reverse("access:steward-add", args=[customers.pk])
    assert client.post(add, {"user": "stella"}).status_code == 302
    assert client.post(add, {"group": "crm-team"}).status_code == 302
    page = client.get(reverse("access:access-review", args=[customers.pk]))
    assert "stella" in page.text and "crm-team" in page.text and "tom" in page.text
    assert add in page.text and reverse("access:steward-remove", args=[customers.pk]) in page.text

    invalid = client.post(add, {"user": "nobody-here"})
    assert invalid.status_code == 400 and "No active user named" in invalid.text

    removed = client.post(reverse("access:steward-remove", args=[customers.pk]), {"kind": "user", "name": "stella"})
    assert removed.status_code == 302
    assert list(DatasetUserObjectPermission.objects.values_list("user__username", flat=True)) == []


def test_a_steward_sees_the_stewards_on_the_review_page_without_the_forms(client, owner, steward, customers):
    grants.dataset_steward_add(principal=owner, dataset=customers, user=steward)
    client.force_login(steward)
    page = client.get(reverse("access:access-review", args=[customers.pk]))
    assert page.status_code == 200 and "stella" in page.text
    assert reverse("access:steward-add", args=[customers.pk]) not in page.text
    newcomer = UserFactory(username="nina", roles=["data_analyst"])
    assert client.post(reverse("access:steward-add", args=[customers.pk]), {"user": newcomer.username}).status_code == 403
    assert not DatasetUserObjectPermission.objects.filter(user=newcomer).exists()


# Query counts --------------------------------------------------------------------------------------


def test_approval_queue_queries_stay_constant_with_stewards(client, registrar, prod, owner, team, tom):
    def fill(count, start):
        for index in range(start, start + count):
            dataset = _dataset(registrar, prod, owner, f"crm.t{index}")
            grants.dataset_steward_add(principal=owner, dataset=dataset, group=team)
            ask(UserFactory(username=f"asker{index}", roles=["data_scientist"]), dataset)
            # A break-glass grant waiting for review, listed on the same page.
            grants.break_glass_activate(principal=UserFactory(username=f"oncall{index}", roles=["software_engineer"]),
                                        dataset=dataset, level="read", reason="Incident: checkout is down", minutes=30)

    client.force_login(tom)
    api = client_for(tom)
    fill(2, 0)
    with CaptureQueriesContext(connection) as few:
        page = client.get(reverse("access:approval-queue"))
    assert len(page.context["queue"]) == 2 and len(page.context["break_glass"]) == 2
    with CaptureQueriesContext(connection) as few_api:
        assert len(api.get(f"{API}/access/approvals/").json()["results"]) == 2
    fill(6, 2)
    with CaptureQueriesContext(connection) as many:
        page = client.get(reverse("access:approval-queue"))
    assert len(page.context["queue"]) == 8 and len(page.context["break_glass"]) == 8
    with CaptureQueriesContext(connection) as many_api:
        assert len(api.get(f"{API}/access/approvals/").json()["results"]) == 8
    assert len(many) == len(few)
    assert len(many_api) == len(few_api)
