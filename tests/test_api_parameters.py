"""Every path and query parameter of the API is parsed and range-checked in one place
(catalog.api_support); a bad one is a 400 naming it, and the OpenAPI schema says the same."""

import pytest

from tests.factories import column_payload, dataset_create

pytestmark = pytest.mark.django_db

TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$"


@pytest.fixture
def dataset(store, registrar):
    dataset_create(principal=registrar, store=store, columns=[column_payload("id")])
    return dataset_create(principal=registrar, store=store, columns=[column_payload("id"), column_payload("email")])


@pytest.fixture
def admin_client(admin_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(admin_user)
    return client


def _errors(response) -> dict:
    assert response["Content-Type"] == "application/json", response.content[:200]
    return response.json()["errors"]


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/v1/access/requests/?dataset=-1.09e166", "dataset"),
        ("/api/v1/suggestions/?dataset=-8.4e211", "dataset"),
        ("/api/v1/suggestions/?run=9223372036854775808", "run"),
        ("/api/v1/access/grants/?dataset=1e3", "dataset"),
        ("/api/v1/access/proposals/?dataset=0", "dataset"),
        ("/api/v1/access/decide/?dataset=177625707766517042511872&action=read", "dataset"),
    ],
)
def test_an_id_in_a_query_parameter_out_of_range_is_a_400_naming_it(reader_client, url, parameter):
    response = reader_client.get(url)

    assert response.status_code == 400
    assert parameter in _errors(response)


def test_an_id_out_of_range_in_the_audit_filters_is_a_400_naming_it(admin_client):
    response = admin_client.get("/api/v1/access/audit/?dataset=-1.09e166")

    assert response.status_code == 400
    assert "dataset" in _errors(response)


def test_a_version_number_past_its_column_is_a_400_naming_it(reader_client, dataset):
    response = reader_client.get(f"/api/v1/datasets/{dataset.pk}/diff/?from=177625707766517042511872&to=1")

    assert response.status_code == 400
    assert set(_errors(response)) == {"from"}
    assert reader_client.get(f"/api/v1/datasets/{dataset.pk}/diff/?from=1&to=2").status_code == 200


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/datasets/9223372036854775808/", "id"),
        ("/api/v1/datasets/0/", "id"),
        ("/api/v1/access/grants/99999999999999999999999/", "id"),
        ("/api/v1/datasets/1/versions/2147483648/", "number"),
        ("/api/v1/datasets/1/columns/9223372036854775808/lineage/", "column_id"),
    ],
)
def test_an_integer_path_parameter_out_of_range_is_a_400_naming_it(reader_client, path, parameter):
    response = reader_client.get(path)

    assert response.status_code == 400
    assert parameter in _errors(response)


def test_a_path_under_the_api_that_names_nothing_is_a_json_404(reader_client):
    response = reader_client.get("/api/v1/datasets/abc/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("value", ["null", "0", "501", "1.5", "-1"])
def test_page_size_that_is_not_a_whole_number_from_1_to_500_is_a_400(reader_client, dataset, value):
    response = reader_client.get(f"/api/v1/datasets/?page_size={value}")

    assert response.status_code == 400
    assert "page_size" in _errors(response)


def test_page_size_within_range_pages(reader_client, store, registrar):
    for name in ("a.one", "a.two", "a.three"):
        dataset_create(principal=registrar, store=store, name=name)

    page = reader_client.get("/api/v1/datasets/?page_size=2").json()

    assert len(page["results"]) == 2 and page["next"]
    assert len(reader_client.get(page["next"]).json()["results"]) == 1


def test_a_cursor_the_api_did_not_hand_out_is_a_400_naming_it(reader_client):
    assert "cursor" in _errors(reader_client.get("/api/v1/datasets/?cursor=zzz"))
    # Base64 of "p=abc": a position that is no id for a list ordered by id.
    response = reader_client.get("/api/v1/access/requests/?cursor=cD1hYmM=")
    assert response.status_code == 400
    assert "cursor" in _errors(response)


@pytest.mark.parametrize(("query", "parameter"), [("limit=abc", "limit"), ("limit=0", "limit"), ("offset=-3", "offset")])
def test_limit_and_offset_are_checked(reader_client, query, parameter):
    response = reader_client.get(f"/api/v1/lineage/jobs/?{query}")

    assert response.status_code == 400
    assert parameter in _errors(response)


def test_a_control_character_in_a_query_parameter_is_a_400_naming_it(reader_client):
    response = reader_client.get("/api/v1/datasets/?q=a%01b")

    assert response.status_code == 400
    assert "q" in _errors(response)
    assert reader_client.get("/api/v1/datasets/?q=a%09b").status_code == 200  # a tab is text


def test_a_nul_in_a_registration_is_a_400_naming_the_field_and_writes_nothing(registrar_client, store):
    body = {"name": "s.t", "store": store.name, "description": "a\x00b",
            "columns": [{"name": "a", "type": "STRING", "sensitivity": "Regular", "description": "x\x1by"}]}

    response = registrar_client.post("/api/v1/datasets/", body, format="json")

    assert response.status_code == 400
    assert {"description", "columns[0].description"} <= set(_errors(response))
    assert registrar_client.get("/api/v1/datasets/").json()["results"] == []


def test_line_breaks_and_tabs_in_text_are_kept(registrar_client, store):
    body = {"name": "s.t", "store": store.name, "description": "line one\r\n\tline two",
            "columns": [{"name": "a", "type": "STRING", "sensitivity": "Regular"}]}

    response = registrar_client.post("/api/v1/datasets/", body, format="json")

    assert response.status_code == 201
    assert response.json()["description"] == "line one\r\n\tline two"


def test_an_audit_date_with_an_offset_postgresql_refuses_is_read_in_utc(admin_client):
    since = "2000-01-01T00:00:00%2B16:00"

    assert admin_client.get(f"/api/v1/access/audit/?since={since}").status_code == 200
    export = admin_client.get(f"/api/v1/access/audit/export.json?since={since}")
    assert export.status_code == 200
    assert b"".join(export.streaming_content).startswith(b"[")


def test_a_bad_parameter_answers_before_anything_is_read(api_client):
    """Checked before authentication: it reveals nothing, and the answer is the same for everyone."""
    assert api_client.get("/api/v1/datasets/0/").status_code == 400
    assert api_client.get("/api/v1/datasets/1/").status_code == 401


# The schema says the same ------------------------------------------------------------------


@pytest.fixture
def schema(api_client):
    return api_client.get("/api/schema/?format=json").json()


def _parameter(operation, name):
    return next(parameter for parameter in operation["parameters"] if parameter["name"] == name)


def test_the_schema_states_the_ranges_of_ids_version_numbers_and_page_sizes(schema):
    paths = schema["paths"]
    detail = paths["/api/v1/datasets/{id}/"]["get"]
    assert {"minimum": 1, "maximum": 2**63 - 1}.items() <= _parameter(detail, "id")["schema"].items()
    version = paths["/api/v1/datasets/{id}/versions/{number}/"]["get"]
    assert _parameter(version, "number")["schema"]["maximum"] == 2**31 - 1
    diff = paths["/api/v1/datasets/{id}/diff/"]["get"]
    assert _parameter(diff, "from")["schema"]["maximum"] == 2**31 - 1
    requests = paths["/api/v1/access/requests/"]["get"]
    assert _parameter(requests, "dataset")["schema"]["minimum"] == 1
    assert _parameter(requests, "dataset")["schema"]["maximum"] == 2**63 - 1
    assert {"minimum": 1, "maximum": 500}.items() <= _parameter(requests, "page_size")["schema"].items()
    jobs = paths["/api/v1/lineage/jobs/"]["get"]
    assert _parameter(jobs, "limit")["schema"]["maximum"] == 500
    walk = paths["/api/v1/datasets/{id}/lineage/"]["get"]
    assert _parameter(walk, "depth")["schema"]["maximum"] == 20


def test_the_schema_forbids_control_characters_in_string_inputs(schema):
    components = schema["components"]["schemas"]
    assert _parameter(schema["paths"]["/api/v1/datasets/"]["get"], "q")["schema"]["pattern"] == TEXT_PATTERN
    assert components["DatasetRegistrationRequest"]["properties"]["description"]["pattern"] == TEXT_PATTERN
    assert components["AccessRequestCreateRequest"]["properties"]["justification"]["pattern"] == TEXT_PATTERN


def test_the_registration_schema_states_what_the_parser_enforces(schema):
    registration = schema["components"]["schemas"]["DatasetRegistrationRequest"]["properties"]
    column = schema["components"]["schemas"]["RegistrationColumnRequest"]["properties"]
    assert registration["name"]["maxLength"] == 500 and "pattern" in registration["name"]
    assert registration["store"]["maxLength"] == 64
    assert registration["registeredBy"]["maxLength"] == 255
    assert registration["columns"]["minItems"] == 1 and registration["columns"]["maxItems"] == 2000
    assert column["name"]["maxLength"] == 255 and "\\u200b" in column["name"]["pattern"]
    assert column["type"]["maxLength"] == 128
    assert column["sensitivity"]["allOf"] == [{"$ref": "#/components/schemas/SensitivityEnum"}]
    assert {"integer", "string"} == {choice["type"] for choice in registration["registrationTime"]["oneOf"]}


def test_every_operation_documents_its_error_statuses_with_their_shape(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"401", "403"} <= set(responses), (method, path)
            if method != "get" or operation.get("parameters"):
                assert responses["400"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ValidationError"}, (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            if "requestBody" in operation:
                assert {"413", "415"} <= set(responses), (method, path)
    errors = schema["components"]["schemas"]["ValidationError"]
    assert errors["required"] == ["detail"]
    assert errors["properties"]["errors"]["additionalProperties"]["type"] == "array"


def test_the_error_body_matches_the_documented_shape(reader_client, registrar_client, store):
    invalid = registrar_client.post("/api/v1/datasets/", {"name": "", "store": store.name, "columns": []}, format="json")
    assert invalid.status_code == 400
    assert set(invalid.json()) == {"detail", "errors"}
    assert all(isinstance(messages, list) for messages in invalid.json()["errors"].values())
    missing = reader_client.get("/api/v1/datasets/123/")
    assert missing.status_code == 404 and set(missing.json()) == {"detail"}
