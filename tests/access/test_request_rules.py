"""The request form tells what the chosen scope needs (approvals, a security engineer, the
longest duration, who decides), through htmx and without JavaScript; the request page says who
a pending request waits for."""

import re

import pytest
from django.urls import reverse

from access import grants
from access.models import AccessRequest
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = pytest.mark.django_db

JUSTIFICATION = "Quarterly churn analysis for the board."


@pytest.fixture
def prod(db):
    return StoreFactory(name="warehouse", environment="prod")


@pytest.fixture
def owner(db):
    return UserFactory(username="olga", roles=["data_analyst"])


@pytest.fixture
def customers(registrar, prod, owner):
    """A Regular, a Sensitive and a Restricted column in prod, owned by olga."""
    dataset = dataset_create(principal=registrar, store=prod, name="crm.customers", columns=[
        column_payload("region"),
        column_payload("email", sensitivity="Sensitive"),
        column_payload("passport", sensitivity="Restricted"),
    ])
    dataset.owners.set([owner])
    return dataset


def rules(client, user, dataset, **query):
    client.force_login(user)
    response = client.get(reverse("access:request-rules", args=[dataset.pk]), query)
    assert response.status_code == 200
    return response.text


def test_rules_follow_the_columns_chosen(client, reader, customers):
    sensitive = rules(client, reader, customers, level="read", columns=["email"])
    assert "<strong>1</strong> approval, no security engineer needed" in sensitive
    assert "<strong>8</strong> hours" in sensitive and "required" in sensitive
    assert "1 approval from olga (owner)" in sensitive
    restricted = rules(client, reader, customers, level="read", columns=["email", "passport"])
    assert "<strong>2</strong> approvals, <strong>one from a security engineer</strong>" in restricted
    assert "<strong>4</strong> hours" in restricted
    held = rules(client, reader, customers, level="read", columns=["region"])
    assert "You already have this through your roles" in held


def test_rules_say_when_the_roles_may_not_ask(client, reader, customers):
    text = rules(client, reader, customers, level="write", columns=["email"])
    assert "Your roles may not ask for write access to prod data that is Sensitive." in text


def test_rules_of_an_unowned_restricted_dataset_name_who_decides(client, reader, customers):
    customers.owners.clear()
    UserFactory(username="sam", roles=["security_engineer"])
    text = rules(client, reader, customers, level="read")
    assert "from a security engineer" in text
    assert "Nobody owns this dataset, so only security engineers and admins decide" in text


def test_rules_of_a_dataset_outside_scope_are_404(client, customers):
    manager = UserFactory(username="pm", roles=["product_manager"])
    client.force_login(manager)
    assert client.get(reverse("access:request-rules", args=[customers.pk]), {"level": "read"}).status_code == 404


def test_rules_ignore_unknown_levels_and_columns(client, reader, customers):
    text = rules(client, reader, customers, level="drop", columns=["nope", "EMAIL"])
    assert "For your choice: read on <code>email</code>" in text


def test_form_without_javascript_previews_the_choice_and_sends_nothing(client, reader, customers):
    client.force_login(reader)
    url = reverse("access:request-create", args=[customers.pk])
    page = client.get(url)
    assert 'hx-get="%s"' % reverse("access:request-rules", args=[customers.pk]) in page.text
    assert 'name="preview"' in page.text  # the no-JavaScript button
    assert "For your choice: read on the whole dataset" in page.text
    response = client.post(url, {"level": "read", "columns": ["email"], "duration": "", "justification": "", "preview": "1"})
    assert response.status_code == 200
    assert "For your choice: read on <code>email</code>" in response.text
    assert "<strong>8</strong> hours" in response.text
    assert not response.context["form"].errors and "Nothing was requested" not in response.text
    assert re.search(r'<input[^>]*value="email"[^>]*checked', response.text)  # the choice is kept
    assert not AccessRequest.objects.exists()


def test_request_page_says_who_it_waits_for(client, reader, customers):
    request = grants.access_request_create(principal=reader, dataset=customers, level="read", columns=["email"],
                                           duration=4, justification=JUSTIFICATION, ticket="SEC-1")
    client.force_login(reader)
    page = client.get(reverse("access:request-detail", args=[request.pk]))
    assert "Waits for 1 approval from olga (owner)." in page.text


# Restricted datasets nobody owns -------------------------------------------------------------


def test_restricted_dataset_without_owner_is_listed_for_security_engineers(client, reader, registrar, prod, customers):
    orphan = dataset_create(principal=registrar, store=prod, name="hr.passports",
                            columns=[column_payload("passport", sensitivity="Restricted")])
    orphan.owners.clear()
    stewarded = dataset_create(principal=registrar, store=prod, name="hr.visas",
                               columns=[column_payload("visa", sensitivity="Restricted")])
    grants.dataset_steward_add(principal=registrar, dataset=stewarded, user=reader)  # by its owner, at once
    stewarded.owners.clear()
    security = UserFactory(username="sam", roles=["security_engineer"])
    client.force_login(security)
    page = client.get(reverse("catalog:suggestion-list"))
    section = page.text.split('id="restricted-unowned"')[1].split("</section>")[0]
    assert "warehouse.hr.passports" in section
    assert "hr.visas" not in section and "crm.customers" not in section  # a steward decides; olga owns it
    client.force_login(reader)
    assert 'id="restricted-unowned"' not in client.get(reverse("catalog:suggestion-list")).text


def test_owner_none_filter_lists_datasets_without_an_owner(registrar, reader, prod, customers):
    from rest_framework.test import APIClient

    orphan = dataset_create(principal=registrar, store=prod, name="hr.passports",
                            columns=[column_payload("passport", sensitivity="Restricted")])
    orphan.owners.clear()
    api = APIClient()
    api.force_login(UserFactory(username="sam", roles=["security_engineer"]))
    names = [row["qualifiedName"] for row in api.get("/api/v1/datasets/", {"owner": "none"}).json()["results"]]
    assert names == [orphan.qualified_name]
    names = [row["qualifiedName"] for row in api.get("/api/v1/datasets/", {"owner": "olga"}).json()["results"]]
    assert names == [customers.qualified_name]
