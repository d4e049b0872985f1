"""The dataset search says why a dataset matched (its name, description or a column name),
highlighted and escaped, on the list page and as ``matched`` in the list API."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import column_payload, dataset_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def digest(registrar, store):
    return dataset_create(principal=registrar, store=store, name="reporting.review_digest",
                          description="Daily digest of reviews", columns=[
                              column_payload("review_id"), column_payload("reviewer_email"),
                          ])


@pytest.fixture
def mailing(registrar, store):
    return dataset_create(principal=registrar, store=store, name="marketing.email_campaigns",
                          description="Campaigns <b>sent</b> by email & SMS", columns=[column_payload("campaign_id")])


def list_page(client, user, **query):
    client.force_login(user)
    response = client.get(reverse("catalog:dataset-list"), query)
    assert response.status_code == 200
    return response.text


def row_of(page: str, name: str) -> str:
    return next(row for row in page.split("<tr>") if f"{name}" in row.replace("<mark>", "").replace("</mark>", "").replace("<wbr>", ""))


def test_a_column_match_is_shown_highlighted(client, reader, digest):
    page = list_page(client, reader, q="email")
    row = row_of(page, "review_digest")
    assert "Matched: column <code>reviewer_<mark>email</mark></code>" in row


def test_name_and_description_matches_are_highlighted_and_escaped(client, reader, mailing):
    page = list_page(client, reader, q="EMAIL")
    row = row_of(page, "email_campaigns")
    assert "<mark>email</mark>_campaigns" in row  # the name, in its own case
    assert "Campaigns &lt;b&gt;sent&lt;/b&gt; by <mark>email</mark> &amp; SMS" in row
    assert "Matched: name, description" in row
    page = list_page(client, reader, q="<b>")
    assert "Campaigns <mark>&lt;b&gt;</mark>sent&lt;/b&gt;" in page and "<b>sent" not in page


def test_no_search_shows_no_matched_line(client, reader, digest):
    assert "search-matched" not in list_page(client, reader)


def test_list_api_says_what_matched(reader_client, digest, mailing):
    rows = {row["name"]: row["matched"] for row in reader_client.get("/api/v1/datasets/", {"q": "email"}).json()["results"]}
    assert rows == {
        "marketing.email_campaigns": {"name": True, "description": True, "columns": []},
        "reporting.review_digest": {"name": False, "description": False, "columns": ["reviewer_email"]},
    }
    assert all(row["matched"] is None for row in reader_client.get("/api/v1/datasets/").json()["results"])


def test_searching_keeps_the_list_page_at_a_constant_number_of_queries(client, reader, registrar, store):
    client.force_login(reader)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("catalog:dataset-list"), {"q": "email"}).status_code == 200
        return len(captured)

    dataset_create(principal=registrar, store=store, name="s.first", columns=[column_payload("email")])
    few = queries()
    for index in range(12):
        dataset_create(principal=registrar, store=store, name=f"s.more{index}",
                       columns=[column_payload("email"), column_payload("backup_email")])
    assert queries() == few
