import json

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from catalog.models import Column, Dataset, DatasetVersion
from catalog.registration import KNOWN_COLUMN_FIELDS, KNOWN_FIELDS
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create, registration_payload

URL = "/api/v1/datasets/"


def catalog_state():
    """Everything a registration could write, to prove a refused one wrote nothing."""
    return (
        Dataset.objects.count(),
        DatasetVersion.objects.count(),
        sorted(Column.objects.values_list("dataset_id", "name", "type", "sensitivity")),
    )


# Registration: the pipeline contract


def test_service_token_registers_a_new_dataset_with_201(token_client, service_account, store):
    response = token_client.post(URL, registration_payload(store=store), format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["qualifiedName"] == "analytics.marketing.review_sentiment"
    assert body["versionNumber"] == 1
    assert body["registeredBy"] == "ServiceAccount1"
    assert body["registeredByPrincipal"] == service_account[0].username
    assert body["registrationTime"] == "2021-06-08T15:55:11Z"
    assert body["columns"][0] == {
        "name": "ReviewID", "description": "", "mode": "REQUIRED", "type": "STRING",
        "originatingSource": "transactional:Reviews", "sensitivity": "Regular", "protection": "None",
    }


def test_same_schema_again_answers_200_without_a_new_version(token_client, store):
    first = token_client.post(URL, registration_payload(store=store), format="json")
    again = token_client.post(URL, registration_payload(store=store), format="json")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["versionNumber"] == 1
    assert DatasetVersion.objects.count() == 1


def test_changed_schema_answers_201_with_the_next_version(token_client, store):
    token_client.post(URL, registration_payload(store=store), format="json")
    changed = registration_payload(store=store, columns=[column_payload("ReviewID", sensitivity="Sensitive")])
    response = token_client.post(URL, changed, format="json")
    assert response.status_code == 201
    assert response.json()["versionNumber"] == 2
    assert response.json()["sensitivity"] == "Sensitive"


def test_detail_returns_the_registration_shape(token_client, store):
    created = token_client.post(URL, registration_payload(store=store), format="json").json()
    detail = token_client.get(f"{URL}{created['id']}/").json()
    assert created.pop("pendingProposal") is None  # the registration answer says what waits for review
    assert detail == created
    assert set(KNOWN_FIELDS) - {"owners", "tags"} <= set(detail)
    assert detail["segmentation"] == {"environment": "prod", "residency": "CA", "lineOfBusiness": "reviews", "customer": ""}


# Bad input: 400 (or 413) with an error per field, and nothing written


def _with(**changes):
    def build(store):
        payload = registration_payload(store=store)
        payload.update(changes)
        return payload

    return build


def _column(**changes):
    def build(store):
        payload = registration_payload(store=store)
        payload["columns"][1].update(changes)
        return payload

    return build


def _without(key):
    def build(store):
        payload = registration_payload(store=store)
        del payload[key]
        return payload

    return build


def _duplicate_column(store):
    payload = registration_payload(store=store)
    payload["columns"].append(dict(payload["columns"][1]))
    return payload


BAD_INPUTS = {
    "duplicate column": (_duplicate_column, "columns[2].name", "Duplicate column name 'ReviewSentiment'"),
    "unknown sensitivity": (_column(sensitivity="Top secret"), "columns[1].sensitivity", "Unknown sensitivity"),
    "unknown protection": (_column(protection="rot13"), "columns[1].protection", "Unknown protection"),
    "missing name": (_without("name"), "name", "required"),
    "unknown store": (_with(store="nowhere"), "store", "Unknown store 'nowhere'"),
    "malformed originatingSource": (_column(originatingSource="Sentiment"), "columns[1].originatingSource", "<kind>:<name>"),
    "columns not an array": (_with(columns="ReviewID"), "columns", "array"),
    "name not a string": (_with(name=42), "name", "string"),
    "column name not a string": (_column(name=["x"]), "columns[1].name", "string"),
    "sensitivity not a string": (_column(sensitivity=3), "columns[1].sensitivity", "string"),
}


@pytest.mark.parametrize("case", BAD_INPUTS.keys())
def test_bad_registration_is_refused_per_field_and_writes_nothing(case, token_client, registrar, store):
    dataset_create(principal=registrar, store=store, name="marketing.review_sentiment",
                   columns=[column_payload("Existing")])
    before = catalog_state()
    build, field, message = BAD_INPUTS[case]
    response = token_client.post(URL, build(store), format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert field in errors
    assert message in " ".join(errors[field])
    assert catalog_state() == before


def test_malformed_json_is_refused_and_writes_nothing(token_client, store):
    before = catalog_state()
    response = token_client.post(URL, '{"name": "x", "columns": [', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert catalog_state() == before


def test_a_json_array_body_is_refused(token_client, store):
    response = token_client.post(URL, json.dumps([registration_payload(store=store)]), content_type="application/json")
    assert response.status_code == 400
    assert "Expected a JSON object" in response.json()["errors"]["non_field_errors"][0]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000)
def test_oversized_body_is_refused_with_413_and_writes_nothing(token_client, store):
    before = catalog_state()
    payload = registration_payload(store=store, description="x" * 20_000)
    response = token_client.post(URL, payload, format="json")
    assert response.status_code == 413
    assert response.json()["detail"] == "Request body exceeds the limit of 10000 bytes."
    assert catalog_state() == before


# Who may do what


def test_anonymous_gets_401_and_nothing_is_written(api_client, store):
    assert api_client.get(URL).status_code == 401
    response = api_client.post(URL, registration_payload(store=store), format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert not Dataset.objects.exists()


def test_invalid_token_gets_401(store):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    assert client.get(URL).status_code == 401


def test_revoked_token_gets_401(token_client, service_account):
    user, _ = service_account
    user.service_tokens.update(revoked_at="2026-01-01T00:00:00Z")
    assert token_client.get(URL).status_code == 401


def test_reader_lists_and_reads_but_cannot_register(reader_client, registrar, store):
    dataset = dataset_create(principal=registrar, store=store)
    assert reader_client.get(URL).status_code == 200
    assert reader_client.get(f"{URL}{dataset.pk}/").status_code == 200
    response = reader_client.post(URL, registration_payload(store=store, name="new.one"), format="json")
    assert response.status_code == 403
    assert Dataset.objects.count() == 1


def test_service_account_without_registrar_role_cannot_register(store):
    from tests.factories import service_account_with_key

    _, key = service_account_with_key(username="reporting", roles=["data_analyst"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.post(URL, registration_payload(store=store), format="json").status_code == 403


def test_session_post_without_csrf_token_is_refused(registrar, store):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(registrar)
    response = client.post(URL, registration_payload(store=store), format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Dataset.objects.exists()


def test_registrar_session_registers(registrar_client, store):
    assert registrar_client.post(URL, registration_payload(store=store), format="json").status_code == 201


def test_unknown_dataset_is_404(reader_client):
    assert reader_client.get(f"{URL}999999/").status_code == 404


# Listing, search, filters, pagination


@pytest.fixture
def demo_like(registrar):
    prod = StoreFactory(name="appdb", kind="transactional", platform="postgresql", environment="prod", residency="CA")
    dev = StoreFactory(name="lake", kind="object", platform="s3", environment="dev", residency="DE")
    owner = UserFactory(username="olga")
    dataset_create(principal=registrar, store=prod, name="public.users", owners=["olga"], columns=[
        column_payload("password_hash", sensitivity="Restricted", protection="Hashed")])
    dataset_create(principal=registrar, store=prod, name="public.reviews", description="What diners wrote", columns=[
        column_payload("body", sensitivity="Regular")])
    dataset_create(principal=registrar, store=dev, name="exports", columns=[
        column_payload("email", sensitivity="Sensitive", protection="masking")])
    return owner


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", ["appdb.public.reviews", "appdb.public.users", "lake.exports"]),
        ("q=password", ["appdb.public.users"]),
        ("q=DINERS", ["appdb.public.reviews"]),
        ("q=lake.exp", ["lake.exports"]),
        ("sensitivity=Restricted", ["appdb.public.users"]),
        ("sensitivity=Restricted&sensitivity=Sensitive", ["appdb.public.users", "lake.exports"]),
        ("protection=Masked", ["lake.exports"]),
        ("environment=dev", ["lake.exports"]),
        ("store=appdb", ["appdb.public.reviews", "appdb.public.users"]),
        ("store_kind=object", ["lake.exports"]),
        ("residency=de", ["lake.exports"]),
        ("owner=olga", ["appdb.public.users"]),
        ("status=deprecated", []),
    ],
)
def test_list_search_and_filters(reader_client, demo_like, query, expected):
    response = reader_client.get(f"{URL}?{query}")
    assert response.status_code == 200
    assert [d["qualifiedName"] for d in response.json()["results"]] == expected


def test_unknown_filter_value_is_a_400_naming_the_filter(reader_client, demo_like):
    response = reader_client.get(f"{URL}?sensitivity=Secretish")
    assert response.status_code == 400
    assert "sensitivity" in response.json()["errors"]


def test_cursor_pagination_walks_every_dataset_once(reader_client, demo_like):
    seen, url = [], f"{URL}?page_size=2"
    while url:
        body = reader_client.get(url).json()
        seen += [d["qualifiedName"] for d in body["results"]]
        url = body["next"]
    assert seen == ["appdb.public.reviews", "appdb.public.users", "lake.exports"]


def _make_datasets(registrar, store, start, count):
    for i in range(start, start + count):
        dataset_create(principal=registrar, store=store, name=f"s.t{i:03}", owners=["dave", "mia"],
                       columns=[column_payload("a"), column_payload("b", sensitivity="Sensitive")])


def test_list_query_count_does_not_grow_with_page_size(reader_client, registrar, reader, store, django_assert_num_queries):
    _make_datasets(registrar, store, 0, 3)
    reader_client.get(URL)  # warm the session
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        assert len(reader_client.get(f"{URL}?page_size=100").json()["results"]) == 3
    _make_datasets(registrar, store, 3, 27)
    with CaptureQueriesContext(connection) as large:
        assert len(reader_client.get(f"{URL}?page_size=100").json()["results"]) == 30
    assert len(small) == len(large)
    # A search with a filter (ranked, with its facets and the column names q matched) costs at most
    # one query more than the plain list (tests/catalog/test_search.py pins it at two sizes).
    with CaptureQueriesContext(connection) as searched:
        reader_client.get(f"{URL}?page_size=100&sensitivity=Sensitive&q=s.t")
    assert len(searched) <= len(small) + 1


# Versions and diffs


@pytest.fixture
def versioned(registrar, store):
    dataset_create(principal=registrar, store=store, columns=[column_payload("a"), column_payload("b")])
    return dataset_create(principal=registrar, store=store, version="2",
                          columns=[column_payload("a", type_="INT64"), column_payload("c")])


def test_versions_are_listed_newest_first(reader_client, versioned):
    body = reader_client.get(f"{URL}{versioned.pk}/versions/").json()
    assert [v["number"] for v in body["results"]] == [2, 1]
    assert body["results"][0]["isBreaking"] is True
    assert body["results"][0]["declaredVersion"] == "2"


def test_a_version_keeps_its_own_columns(reader_client, versioned):
    body = reader_client.get(f"{URL}{versioned.pk}/versions/1/").json()
    assert [c["name"] for c in body["columns"]] == ["a", "b"]


def test_diff_between_two_versions(reader_client, versioned):
    body = reader_client.get(f"{URL}{versioned.pk}/diff/?from=1&to=2").json()
    assert body["from"] == 1 and body["to"] == 2
    assert body["added"] == ["c"] and body["removed"] == ["b"]
    assert body["changed"] == [{"name": "a", "fields": {"type": {"from": "STRING", "to": "INT64"}}, "breaking": True}]
    assert body["breaking"] is True


def test_diff_backwards_is_the_reverse(reader_client, versioned):
    body = reader_client.get(f"{URL}{versioned.pk}/diff/?from=2&to=1").json()
    assert body["added"] == ["b"] and body["removed"] == ["c"]


def test_diff_needs_both_version_numbers(reader_client, versioned):
    response = reader_client.get(f"{URL}{versioned.pk}/diff/?from=1")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"to"}


def test_diff_with_an_unknown_version_is_404(reader_client, versioned):
    assert reader_client.get(f"{URL}{versioned.pk}/diff/?from=1&to=9").status_code == 404


# Stores


def test_stores_are_listed_for_readers(reader_client, store):
    body = reader_client.get("/api/v1/stores/").json()
    assert [s["name"] for s in body] == ["analytics"]


def test_reader_cannot_create_a_store(reader_client):
    assert reader_client.post("/api/v1/stores/", {"name": "lake", "kind": "object", "platform": "s3"}, format="json").status_code == 403


def test_admin_creates_and_edits_a_store(admin_user):
    client = APIClient()
    client.force_login(admin_user)
    created = client.post("/api/v1/stores/", {"name": "lake", "kind": "object", "platform": "s3", "residency": "eu",
                                              "lineOfBusiness": "ads"}, format="json")
    assert created.status_code == 201
    assert created.json()["residency"] == "EU" and created.json()["lineOfBusiness"] == "ads"
    edited = client.patch(f"/api/v1/stores/{created.json()['id']}/", {"lineOfBusiness": "payments"}, format="json")
    assert edited.status_code == 200 and edited.json()["lineOfBusiness"] == "payments"
    # Its environment places its data: changing it is proposed, for a security engineer to approve.
    moved = client.patch(f"/api/v1/stores/{created.json()['id']}/", {"environment": "staging"}, format="json")
    assert moved.status_code == 200 and moved.json()["environment"] == "prod"
    assert moved.json()["pendingProposal"]["summary"] == "environment prod → staging"


def test_bad_store_kind_names_the_field(admin_user):
    client = APIClient()
    client.force_login(admin_user)
    response = client.post("/api/v1/stores/", {"name": "lake", "kind": "pond", "platform": "s3"}, format="json")
    assert response.status_code == 400
    assert "kind" in response.json()["errors"]


def test_duplicate_store_name_names_the_field(admin_user, store):
    client = APIClient()
    client.force_login(admin_user)
    response = client.post("/api/v1/stores/", {"name": "analytics", "kind": "object", "platform": "s3"}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["errors"]


# OpenAPI


def test_openapi_schema_describes_the_registration_contract(api_client):
    response = api_client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/datasets/" in schema["paths"]
    request = schema["components"]["schemas"]["DatasetRegistrationRequest"]
    assert set(request["properties"]) == KNOWN_FIELDS
    column = schema["components"]["schemas"]["RegistrationColumnRequest"]
    assert set(column["properties"]) == KNOWN_COLUMN_FIELDS


def test_api_docs_are_served_without_a_cdn(api_client):
    response = api_client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    # Every script and stylesheet is served from the project (a random CSP nonce may spell "cdn").
    import re

    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(source.startswith("/") for source in sources), sources


def _count_queries(client, url):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_version_list_query_count_does_not_grow_with_versions(reader_client, registrar, store):
    dataset = dataset_create(principal=registrar, store=store, columns=[column_payload("v0")])
    reader_client.get("/api/v1/stores/")  # warm the session
    few = _count_queries(reader_client, f"{URL}{dataset.pk}/versions/")
    for n in range(1, 12):
        dataset_create(principal=registrar, store=store, columns=[column_payload(f"v{n}")])
    assert _count_queries(reader_client, f"{URL}{dataset.pk}/versions/") == few


def test_store_list_query_count_does_not_grow_with_stores(reader_client, registrar, store):
    dataset_create(principal=registrar, store=store)
    reader_client.get("/api/v1/stores/")
    few = _count_queries(reader_client, "/api/v1/stores/")
    for n in range(10):
        dataset_create(principal=registrar, store=StoreFactory(name=f"extra{n}"))
    assert _count_queries(reader_client, "/api/v1/stores/") == few


def test_list_counts_each_datasets_columns_and_zero_for_none(reader_client, registrar, store):
    from catalog.models import Dataset
    from catalog.services import columns_delete

    _make_datasets(registrar, store, 0, 2)
    emptied = Dataset.objects.get(name="t001")
    columns_delete(list(emptied.columns.values_list("pk", flat=True)))  # as a dataset known by lineage only

    results = {item["name"]: item["columnCount"] for item in reader_client.get(URL).json()["results"]}

    assert results == {"s.t000": 2, "s.t001": 0}
