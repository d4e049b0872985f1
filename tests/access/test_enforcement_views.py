"""The Enforcement tab and GET /api/v1/datasets/{id}/enforcement-plan/: who sees the plan, what it
shows (statements, purpose, dialect, redacted keys) and the empty state of stores without enforcement."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

COLUMNS = [
    column_payload("id", type_="INT"),
    column_payload("email", type_="VARCHAR(255)", sensitivity="Sensitive", protection="Masked"),
    column_payload("last_name", type_="VARCHAR(64)", sensitivity="Sensitive", protection="Hashed"),
]


@pytest.fixture
def owner(db):
    return UserFactory(username="olga", roles=["data_analyst"])


def make_dataset(registrar, owner, platform="mysql", name="sales.customers"):
    store = StoreFactory(name=f"st_{platform}", platform=platform, environment="prod")
    dataset = dataset_create(principal=registrar, store=store, name=name, columns=COLUMNS)
    dataset.owners.add(owner)
    return dataset


def api(user):
    client = APIClient()
    client.force_login(user)
    return client


@pytest.mark.parametrize("platform", ["mysql", "snowflake", "bigquery"])
def test_the_owner_reads_the_plan_with_the_key_redacted(registrar, owner, platform, django_assert_max_num_queries):
    dataset = make_dataset(registrar, owner, platform)
    client = api(owner)
    with django_assert_max_num_queries(20):
        response = client.get(f"/api/v1/datasets/{dataset.pk}/enforcement-plan/")

    assert response.status_code == 200
    body = response.json()
    assert body["enforced"] and body["platform"] == platform and body["qualifiedName"] == dataset.qualified_name
    assert body["appliedHere"] is False  # no connection: a plan to apply
    redacted = [s for s in body["statements"] if s["redacted"]]
    assert redacted and all(s["text"] == "-- (carries a key; not shown)" for s in redacted)
    assert all(set(s) == {"text", "purpose", "dialect", "redacted"} for s in body["statements"])


def test_a_security_engineer_reads_it_and_an_analyst_who_sees_the_dataset_may_not(registrar, owner):
    dataset = make_dataset(registrar, owner)
    security = UserFactory(username="sven", roles=["security_engineer"])
    analyst = UserFactory(username="ann", roles=["data_analyst"])

    assert api(security).get(f"/api/v1/datasets/{dataset.pk}/enforcement-plan/").status_code == 200
    assert api(analyst).get(f"/api/v1/datasets/{dataset.pk}/").status_code == 200
    assert api(analyst).get(f"/api/v1/datasets/{dataset.pk}/enforcement-plan/").status_code == 403


def test_someone_who_does_not_see_the_dataset_gets_404(registrar, owner):
    dataset = make_dataset(registrar, owner)
    executive = UserFactory(username="exe", roles=["executive"])  # aggregated datasets only
    assert api(executive).get(f"/api/v1/datasets/{dataset.pk}/enforcement-plan/").status_code == 404


def test_a_platform_without_enforcement_says_so(registrar, owner):
    dataset = make_dataset(registrar, owner, "sqlite", name="customers")
    body = api(owner).get(f"/api/v1/datasets/{dataset.pk}/enforcement-plan/").json()
    assert body["enforced"] is False and body["statements"] == []

    page = Client()
    page.force_login(owner)
    html = page.get(f"/access/enforcement/{dataset.pk}/").content.decode()
    assert 'id="enforcement-empty"' in html and "Its store is SQLite" in html


def test_the_tab_shows_statements_filtered_by_kind_in_the_url(registrar, owner):
    dataset = make_dataset(registrar, owner, "bigquery", name="proj.sales.customers")
    page = Client()
    page.force_login(owner)

    detail = page.get(f"/datasets/{dataset.pk}/").content.decode()
    assert f'href="/access/enforcement/{dataset.pk}/"' in detail
    everything = page.get(f"/access/enforcement/{dataset.pk}/").content.decode()
    only_json = page.get(f"/access/enforcement/{dataset.pk}/?dialect=json").content.decode()

    assert "Policy tag taxonomy" in everything and "CREATE SCHEMA IF NOT EXISTS catalog_governance" in everything
    assert "Policy tag taxonomy" in only_json and "CREATE SCHEMA IF NOT EXISTS" not in only_json
    assert "redacted" in everything and "FROM_HEX(" not in everything


def test_the_dataset_page_offers_the_tab_only_to_those_who_may_see_it(registrar, owner):
    dataset = make_dataset(registrar, owner)
    analyst = UserFactory(username="ann", roles=["data_analyst"])
    page = Client()
    page.force_login(analyst)
    assert 'id="enforcement-tab"' not in page.get(f"/datasets/{dataset.pk}/").content.decode()
    assert page.get(f"/access/enforcement/{dataset.pk}/").status_code == 403


def test_the_demo_shows_the_masked_view_of_a_postgresql_dataset(db, client):
    """``make run`` (SQLite, no warehouse): the Enforcement tab of the demo's payment methods shows the
    protected view that masks each column, the key redacted, with nothing applied."""
    from io import StringIO

    from django.core.management import call_command
    from django.utils.html import escape

    from access.models import DatasetKey
    from access.warehouses import postgresql
    from catalog.models import Dataset

    call_command("load_demo", stdout=StringIO())
    dataset = Dataset.objects.get(qualified_name="appdb.public.payment_methods")
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    page = client.get(f"/access/enforcement/{dataset.pk}/")

    assert page.status_code == 200
    text = page.content.decode()
    view = next(s.text for s in postgresql.dataset_plan(dataset).statements if s.text.startswith("CREATE VIEW"))
    assert 'CREATE VIEW "governed"."payment_methods"' in view
    assert "split_part" in view and "tok_" in view and "sha256" in view and "date_trunc" in view
    assert "% 100)" in view and "THEN t.\"card_cvv\" ELSE NULL END" in view
    assert escape(view) in text  # the whole statement, readable and copyable
    assert "-- (carries a key; not shown)" in text
    assert "6 of 8 columns are masked, hashed, tokenized or hidden" in text
    assert not DatasetKey.objects.filter(dataset=dataset).exists()  # a preview makes no key
