"""Dataset search on PostgreSQL: full-text over names, columns, descriptions, tags and owners,
ranked, typo-tolerant on names, with facet counts that count only what the reader may see, in a
constant number of queries; the search document follows every change to a dataset."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from catalog.models import Column, Dataset
from catalog.services import dataset_register
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create, registration_payload

pytestmark = pytest.mark.django_db


def names(client, **query) -> list[str]:
    response = client.get("/api/v1/datasets/", query)
    assert response.status_code == 200, response.content
    return [row["qualifiedName"] for row in response.json()["results"]]


def facet(client, family, **query) -> dict[str, int]:
    response = client.get("/api/v1/datasets/", query)
    assert response.status_code == 200, response.content
    return {entry["value"]: entry["count"] for entry in response.json()["facets"][family]}


@pytest.fixture
def ranked(registrar, store):
    """One dataset per place the word ``customer`` can be: name, column name, description."""
    dataset_create(principal=registrar, store=store, name="sales.visits", description="Site visits, one row per customer",
                   columns=[column_payload("visit_id")])
    dataset_create(principal=registrar, store=store, name="sales.orders", description="Orders placed",
                   columns=[column_payload("order_id"), column_payload("customer_id")])
    dataset_create(principal=registrar, store=store, name="sales.customers", description="Who buys",
                   columns=[column_payload("id")])


def test_name_matches_rank_above_column_matches_above_description_matches(reader_client, ranked):
    assert names(reader_client, q="customer") == [
        "analytics.sales.customers", "analytics.sales.orders", "analytics.sales.visits",
    ]


def test_the_ranked_order_pages_with_the_cursor(reader_client, ranked):
    first = reader_client.get("/api/v1/datasets/", {"q": "customer", "page_size": 2}).json()
    second = reader_client.get(first["next"]).json()
    assert [row["qualifiedName"] for row in first["results"] + second["results"]] == [
        "analytics.sales.customers", "analytics.sales.orders", "analytics.sales.visits",
    ]
    assert second["next"] is None


def test_a_typo_in_a_name_still_finds_it(reader_client, ranked):
    assert names(reader_client, q="custmer")[0] == "analytics.sales.customers"
    assert names(reader_client, q="zzqqxx") == []


def test_two_words_must_both_match(reader_client, ranked):
    assert names(reader_client, q="orders customer") == ["analytics.sales.orders"]


def test_tags_owners_and_column_descriptions_are_searched(reader_client, registrar, store):
    dataset_create(principal=registrar, store=store, name="hr.people", tags=["payroll"], owners=[registrar.username],
                   columns=[column_payload("grade", description="Seniority band from the ladder")])
    assert names(reader_client, q="payroll") == ["analytics.hr.people"]
    assert names(reader_client, q=registrar.username) == ["analytics.hr.people"]
    assert names(reader_client, q="seniority") == ["analytics.hr.people"]


def test_the_api_says_what_matched_by_word(reader_client, ranked):
    rows = {row["name"]: row["matched"] for row in reader_client.get("/api/v1/datasets/", {"q": "customer"}).json()["results"]}
    assert rows["sales.customers"] == {"name": True, "description": False, "columns": []}
    assert rows["sales.orders"] == {"name": False, "description": False, "columns": ["customer_id"]}
    assert rows["sales.visits"] == {"name": False, "description": True, "columns": []}


# Facets ------------------------------------------------------------------------------------------


@pytest.fixture
def faceted(registrar):
    prod = StoreFactory(name="warehouse", environment="prod", residency="EU")
    dev = StoreFactory(name="sandbox", environment="dev", residency="US")
    dataset_create(principal=registrar, store=prod, name="crm.contacts", tags=["pii"], columns=[
        column_payload("email", sensitivity="Sensitive", protection="Masked"), column_payload("id"),
    ])
    dataset_create(principal=registrar, store=prod, name="crm.contact_events", tags=["pii", "events"], columns=[
        column_payload("contact_id"), column_payload("ip_address", sensitivity="Sensitive", protection="Hashed"),
    ])
    dataset_create(principal=registrar, store=dev, name="crm.contacts_copy", tags=["events"], columns=[
        column_payload("contact_name"),
    ])


def test_facet_counts_count_the_results(reader_client, faceted):
    body = reader_client.get("/api/v1/datasets/", {"q": "contact"}).json()
    counts = {family: {entry["value"]: entry["count"] for entry in entries} for family, entries in body["facets"].items()}
    assert counts["sensitivity"] == {"Restricted": 0, "Sensitive": 2, "Regular": 1, "Public": 0, "Unclassified": 0}
    assert counts["protection"] == {"None": 3, "Masked": 1, "Tokenized": 0, "Hashed": 1, "Encrypted": 0}
    assert counts["store"] == {"warehouse": 2, "sandbox": 1}
    assert counts["environment"] == {"prod": 2, "dev": 1}
    assert counts["residency"] == {"EU": 2, "US": 1}
    assert counts["tag"] == {"pii": 2, "events": 2}
    assert counts["status"] == {"active": 3}
    assert counts["owner"] == {"dave": 3}  # the registrar owns what they register


def test_filters_combine_and_each_facet_counts_the_other_filters(reader_client, faceted):
    assert set(names(reader_client, q="contact", tag="pii", environment="prod", sensitivity="Sensitive")) == {
        "warehouse.crm.contacts", "warehouse.crm.contact_events",
    }
    assert set(names(reader_client, q="contact", tag="events", store="warehouse")) == {"warehouse.crm.contact_events"}
    assert names(reader_client, q="contact", tag="events", store="warehouse", protection="Masked") == []
    # The tag facet counts with the store filter applied but not the tag filter: the other tags show.
    assert facet(reader_client, "tag", q="contact", tag="events", store="warehouse") == {"pii": 2, "events": 1}
    assert facet(reader_client, "store", q="contact", tag="events", store="warehouse") == {"warehouse": 1, "sandbox": 1}
    assert facet(reader_client, "environment", q="contact", tag="events", store="warehouse") == {"prod": 1}


def test_facets_without_a_search_count_every_visible_dataset(reader_client, faceted):
    assert facet(reader_client, "store") == {"warehouse": 2, "sandbox": 1}


# Visibility --------------------------------------------------------------------------------------


@pytest.fixture
def hidden(registrar):
    """Restricted, in prod: the reader (a data analyst) may not see it."""
    vault = StoreFactory(name="vault", environment="prod", residency="DE")
    return dataset_create(principal=registrar, store=vault, name="secret.dossiers_zq", tags=["dossier_tag_zq"],
                          description="contact dossiers", columns=[
                              column_payload("contact_ssn", sensitivity="Restricted", protection="Encrypted"),
                          ])


@pytest.fixture
def outsider_client(db):
    """A product manager: sees Regular metadata, not Restricted in prod."""
    client = APIClient()
    client.force_login(UserFactory(username="pam", roles=["product_manager"]))
    return client


def test_a_hidden_dataset_is_neither_found_nor_counted(outsider_client, registrar, registrar_client, faceted, hidden):
    reader_client = outsider_client  # product managers see aggregated datasets only
    dataset_create(principal=registrar, store=StoreFactory(name="warehouse"), name="crm.contact_rollup",
                   tags=["aggregated"], columns=[column_payload("contact_count")])
    assert names(reader_client, q="dossiers") == []
    assert names(reader_client, q="dosiers") == []  # nor by a typo of its name
    body = reader_client.get("/api/v1/datasets/", {"q": "contact"}).json()
    assert hidden.qualified_name not in str(body)
    counts = {family: {entry["value"]: entry["count"] for entry in entries} for family, entries in body["facets"].items()}
    assert counts["sensitivity"]["Restricted"] == 0
    assert counts["protection"]["Encrypted"] == 0
    assert "vault" not in counts["store"] and "DE" not in counts["residency"] and "dossier_tag_zq" not in counts["tag"]
    assert body["results"] and sum(counts["status"].values()) == len(body["results"])
    # Someone who may see it finds it and counts it.
    assert names(registrar_client, q="dossiers") == ["vault.secret.dossiers_zq"]
    assert facet(registrar_client, "sensitivity", q="contact")["Restricted"] == 1
    assert facet(registrar_client, "tag", q="contact")["dossier_tag_zq"] == 1


def test_the_list_page_facets_do_not_count_a_hidden_dataset(client, faceted, hidden):
    client.force_login(UserFactory(username="pam", roles=["product_manager"]))
    page = client.get(reverse("catalog:dataset-list"), {"q": "contact"}).text
    assert "vault" not in page and "dossier_tag_zq" not in page and "dossiers_zq" not in page


# Queries -----------------------------------------------------------------------------------------


def test_the_search_endpoint_runs_a_constant_number_of_queries(reader_client, registrar, store):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = reader_client.get("/api/v1/datasets/", {"q": "email", "tag": "pii", "sensitivity": "Regular"})
            assert response.status_code == 200
        return len(captured)

    dataset_create(principal=registrar, store=store, name="s.first", tags=["pii"], columns=[column_payload("email")])
    few = queries()
    other = StoreFactory(name="other")
    for index in range(12):
        dataset_create(principal=registrar, store=other if index % 2 else store, name=f"s.more{index}",
                       tags=["pii", f"t{index}"], owners=[registrar.username],
                       columns=[column_payload("email"), column_payload("backup_email", protection="Masked")])
    assert queries() == few


def test_the_search_page_runs_a_constant_number_of_queries(client, reader, registrar, store):
    client.force_login(reader)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("catalog:dataset-list"), {"q": "email", "tag": "pii"}).status_code == 200
        return len(captured)

    dataset_create(principal=registrar, store=store, name="s.first", tags=["pii"], columns=[column_payload("email")])
    few = queries()
    for index in range(12):
        dataset_create(principal=registrar, store=StoreFactory(name=f"st{index}"), name=f"s.more{index}",
                       tags=["pii", f"t{index}"], columns=[column_payload("email")])
    assert queries() == few


# The search document follows changes ------------------------------------------------------------


def test_a_new_version_is_searchable_at_once(reader_client, registrar, store):
    dataset_create(principal=registrar, store=store, name="ops.tickets", columns=[column_payload("ticket_id")])
    assert names(reader_client, q="escalation") == []
    dataset_register(principal=registrar, payload=registration_payload(
        store=store, name="ops.tickets", columns=[column_payload("ticket_id"), column_payload("escalation_level")],
    ))
    assert names(reader_client, q="escalation") == ["analytics.ops.tickets"]


def test_a_classification_change_moves_the_dataset_between_facets(reader_client, registrar, store):
    dataset_create(principal=registrar, store=store, name="ops.calls", columns=[column_payload("caller_phone")])
    assert facet(reader_client, "protection", q="calls")["Masked"] == 0
    # A tightening (a protection added, a higher tier) applies at once.
    dataset_register(principal=registrar, payload=registration_payload(store=store, name="ops.calls", columns=[
        column_payload("caller_phone", sensitivity="Sensitive", protection="Masked"),
    ]))
    assert facet(reader_client, "protection", q="calls") == {"None": 0, "Masked": 1, "Tokenized": 0, "Hashed": 0, "Encrypted": 0}
    assert facet(reader_client, "sensitivity", q="calls")["Sensitive"] == 1


def test_an_owner_change_and_a_rename_are_searchable(reader_client, registrar, store):
    dataset = dataset_create(principal=registrar, store=store, name="ops.shifts", columns=[column_payload("shift_id")])
    owner = UserFactory(username="quentin_zz", first_name="Quentin")
    dataset.owners.set([owner])  # as an approved owner proposal applies it
    assert names(reader_client, q="quentin_zz") == ["analytics.ops.shifts"]
    owner.username = "rosalind_zz"
    owner.save()
    assert names(reader_client, q="rosalind_zz") == ["analytics.ops.shifts"]
    assert names(reader_client, q="quentin_zz") == ["analytics.ops.shifts"]  # still by first name
    dataset.owners.clear()
    assert names(reader_client, q="rosalind_zz") == []


def test_bulk_writes_keep_the_document_true(reader_client, registrar, store):
    """Writes that skip services (a sync's bulk updates, SQL) are covered by the triggers."""
    dataset = dataset_create(principal=registrar, store=store, name="ops.rosters", columns=[column_payload("roster_id")])
    Column.objects.filter(dataset=dataset).update(description="Weekly rota of nurses")
    Dataset.objects.filter(pk=dataset.pk).update(tags=["staffing"])
    assert names(reader_client, q="nurses") == ["analytics.ops.rosters"]
    assert names(reader_client, q="staffing") == ["analytics.ops.rosters"]
    dataset_register(principal=registrar, payload=registration_payload(
        store=store, name="ops.rosters", columns=[column_payload("rota_week")],
    ))  # the column with that description is gone
    assert names(reader_client, q="nurses") == []
    assert names(reader_client, q="rota") == ["analytics.ops.rosters"]


def test_a_search_with_symbols_is_matched_literally(reader_client, registrar, store):
    dataset_create(principal=registrar, store=store, name="ops.rates", description="Discount of 50% on <b>rates</b>",
                   columns=[column_payload("rate")])
    assert names(reader_client, q="50%") == ["analytics.ops.rates"]
    assert names(reader_client, q="<b>") == ["analytics.ops.rates"]


def test_bad_facet_values_are_a_400_naming_the_parameter(reader_client):
    response = reader_client.get("/api/v1/datasets/", {"sensitivity": "Secretish"})
    assert response.status_code == 400
    assert "sensitivity" in response.text
