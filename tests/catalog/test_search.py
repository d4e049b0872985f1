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


# The facet values in the search documents follow every write path --------------------------------


def facet_values_drift() -> list:
    """Datasets whose stored facet values differ from what their rows say now (none when the
    triggers kept them): store, environment, residency, status, sensitivity, tags, owners, protections."""
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT d.id FROM catalog_dataset d JOIN catalog_datastore s ON s.id = d.store_id
            LEFT JOIN catalog_datasetfacets ds ON ds.dataset_id = d.id LEFT JOIN catalog_datasetsearch n ON n.dataset_id = d.id
            WHERE ds.dataset_id IS NULL OR n.dataset_id IS NULL
               OR (ds.store, ds.environment, ds.residency, ds.status, ds.sensitivity, ds.classified)
                  IS DISTINCT FROM (s.name, s.environment, s.residency, d.status, d.sensitivity, d.classified)
               OR ds.tags IS DISTINCT FROM ARRAY(SELECT jsonb_array_elements_text(d.tags))
               OR ds.owners IS DISTINCT FROM coalesce((SELECT array_agg(DISTINCT u.username) FROM catalog_dataset_owners o
                                                       JOIN access_user u ON u.id = o.user_id WHERE o.dataset_id = d.id)::text[], '{}')
               OR ds.protections IS DISTINCT FROM coalesce((SELECT array_agg(DISTINCT c.protection) FROM catalog_column c
                                                            WHERE c.dataset_id = d.id)::text[], '{}')
               OR n.name_document IS DISTINCT FROM setweight(to_tsvector('english', catalog_search_words(d.qualified_name)), 'A')
        """)
        return [row[0] for row in cursor.fetchall()]


def test_a_stores_environment_and_residency_change_moves_its_datasets_between_facets(reader_client, faceted):
    from catalog.models import DataStore

    DataStore.objects.filter(name="sandbox").update(environment="staging", residency="CA")
    assert facet(reader_client, "environment", q="contact") == {"prod": 2, "staging": 1}
    assert facet(reader_client, "residency", q="contact") == {"EU": 2, "CA": 1}
    assert set(names(reader_client, q="contact", environment="staging")) == {"sandbox.crm.contacts_copy"}
    store = DataStore.objects.get(name="warehouse")
    store.name = "lakehouse"
    store.save()  # a rename, one row at a time, as the store form saves it
    assert facet(reader_client, "store", q="contact") == {"lakehouse": 2, "sandbox": 1}
    assert facet_values_drift() == []


def test_status_sensitivity_and_store_moves_update_the_facets_without_a_new_document(reader_client, registrar, faceted):
    from catalog.models import DataStore

    before = _documents()
    Dataset.objects.filter(name="contacts").update(status="deprecated", sensitivity=3)
    Dataset.objects.filter(name="contacts_copy").update(store=DataStore.objects.get(name="warehouse"), classified=False)
    assert facet(reader_client, "status", q="contact") == {"active": 2, "deprecated": 1}
    assert facet(reader_client, "sensitivity", q="contact") == {
        "Restricted": 1, "Sensitive": 1, "Regular": 0, "Public": 0, "Unclassified": 1,
    }
    assert facet(reader_client, "store", q="contact") == {"warehouse": 3}
    assert _documents() == before  # facet values only: no document was rebuilt
    assert facet_values_drift() == []


def _documents() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT dataset_id, document::text FROM catalog_datasetsearch")
        return dict(cursor.fetchall())


def test_owner_tag_and_column_changes_update_the_facets(reader_client, registrar, faceted):
    contacts = Dataset.objects.get(name="contacts")
    owner = UserFactory(username="olga_zz")
    contacts.owners.add(owner)
    assert facet(reader_client, "owner", q="contact") == {"dave": 3, "olga_zz": 1}
    owner.username = "olivia_zz"
    owner.save()
    assert facet(reader_client, "owner", q="contact") == {"dave": 3, "olivia_zz": 1}
    contacts.owners.remove(owner)
    Dataset.objects.filter(name="contacts_copy").update(tags=["gold"])
    Column.objects.filter(dataset__name="contact_events").update(protection="encrypted")
    assert facet(reader_client, "owner", q="contact") == {"dave": 3}
    assert facet(reader_client, "tag", q="contact") == {"pii": 2, "events": 1, "gold": 1}
    assert facet(reader_client, "protection", q="contact") == {
        "None": 2, "Masked": 1, "Tokenized": 0, "Hashed": 0, "Encrypted": 1,
    }
    assert facet_values_drift() == []


def test_browsing_counts_every_visible_dataset_and_only_those(outsider_client, reader_client, faceted, hidden):
    """Without a search or a filter, counts come from the documents alone for a reader who sees
    everything, and from the visible datasets for one who does not."""
    assert facet(reader_client, "store") == {"warehouse": 2, "sandbox": 1, "vault": 1}  # an analyst sees all
    # A product manager sees aggregated datasets only.
    assert facet(outsider_client, "store") == {}
    assert sum(facet(outsider_client, "status").values()) == 0
    Dataset.objects.filter(name="contacts_copy").update(tags=["aggregated"])
    assert facet(outsider_client, "store") == {"sandbox": 1}
    assert facet(outsider_client, "tag") == {"aggregated": 1}


def test_name_matches_page_through_to_column_matches_in_one_order(reader_client, registrar, store):
    """The first pages come from the name tier alone; the pages after it rank every match; one
    order throughout, and backwards."""
    for index in range(5):
        dataset_create(principal=registrar, store=store, name=f"sales.ledger_{index}", columns=[column_payload("id")])
        dataset_create(principal=registrar, store=store, name=f"sales.other_{index}", columns=[column_payload("ledger_ref")])
    dataset_create(principal=registrar, store=store, name="sales.misc", description="Copied from the ledger",
                   columns=[column_payload("id")])
    seen, pages, url = [], [], "/api/v1/datasets/?q=ledger&page_size=2"
    while url:
        body = reader_client.get(url).json()
        pages.append(body)
        seen += [row["qualifiedName"] for row in body["results"]]
        url = body["next"]
    assert len(seen) == 11 and len(set(seen)) == 11
    assert {name.split(".")[-1] for name in seen[:5]} == {f"ledger_{index}" for index in range(5)}
    assert {name.split(".")[-1] for name in seen[5:10]} == {f"other_{index}" for index in range(5)}
    assert seen[10] == "analytics.sales.misc"
    back = reader_client.get(pages[-1]["previous"]).json()
    assert [row["qualifiedName"] for row in back["results"]] == seen[8:10]


def browsing_counts_drift() -> dict:
    """Facet values whose kept browsing count differs from a count over every facet row."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT family, value, sum(n) FROM catalog_datasetfacetcounts GROUP BY 1, 2 HAVING sum(n) <> 0")
        kept = {(family, value): n for family, value, n in cursor.fetchall()}
        cursor.execute("SELECT p.family, p.value, count(*) FROM catalog_datasetfacets f, catalog_search_facet_pairs(f) p GROUP BY 1, 2")
        counted = {(family, value): n for family, value, n in cursor.fetchall()}
    return {key: (kept.get(key), counted.get(key)) for key in kept.keys() | counted.keys() if kept.get(key) != counted.get(key)}


def test_browsing_counts_follow_every_write_and_survive_compaction(reader_client, registrar, faceted, hidden):
    from catalog.models import DataStore
    from catalog.tasks import search_counts_compact

    assert browsing_counts_drift() == {}
    Dataset.objects.filter(name="contacts").update(status="deprecated", tags=["gold", "pii"])
    DataStore.objects.filter(name="sandbox").update(environment="staging")
    Column.objects.filter(dataset__name="contact_events").update(protection="encrypted")
    Dataset.objects.get(name="contacts_copy").owners.add(UserFactory(username="olga_zz"))
    assert browsing_counts_drift() == {}
    assert facet(reader_client, "status") == {"active": 3, "deprecated": 1}
    assert facet(reader_client, "environment") == {"prod": 3, "staging": 1}
    assert search_counts_compact() > 0  # deltas folded
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) = count(DISTINCT (family, value)) FROM catalog_datasetfacetcounts")
        assert cursor.fetchone()[0]
    assert browsing_counts_drift() == {}
    assert facet(reader_client, "tag") == {"pii": 2, "events": 2, "gold": 1, "dossier_tag_zq": 1}
    assert facet(reader_client, "owner") == {"dave": 4, "olga_zz": 1}
    assert search_counts_compact() == 0  # nothing more to fold
