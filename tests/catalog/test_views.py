"""The browser UI: who may open what, what the pages show, and the register/edit forms."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.models import Column, Dataset, DatasetVersion, DataStore
from tests.factories import StoreFactory, column_payload, dataset_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(registrar, store):
    return dataset_create(principal=registrar, store=store)


@pytest.fixture
def reviews(registrar, store):
    """A dataset with two versions: v2 drops ``stars`` (breaking) and adds ``rating``."""
    v1 = [column_payload("review_id", mode="REQUIRED"), column_payload("stars", type_="SMALLINT", sensitivity="Public")]
    v2 = [column_payload("review_id", mode="REQUIRED"), column_payload("rating", type_="NUMERIC", sensitivity="Public")]
    dataset_create(principal=registrar, store=store, name="public.reviews", columns=v1)
    return dataset_create(principal=registrar, store=store, name="public.reviews", columns=v2)


@pytest.fixture
def reader_web(client, reader):
    client.force_login(reader)
    return client


@pytest.fixture
def registrar_web(client, registrar):
    client.force_login(registrar)
    return client


@pytest.fixture
def admin_web(client, admin_user):
    client.force_login(admin_user)
    return client


def form_data(*, store="analytics", name="marketing.campaigns", columns=(), owners="", description="", **extra):
    """The POST body of the register/edit form, with its column formset."""
    data = {
        "store": store,
        "name": name,
        "description": description,
        "owners": owners,
        "registered_by": extra.pop("registered_by", ""),
        "version": extra.pop("version", ""),
        "columns-TOTAL_FORMS": str(len(columns)),
        "columns-INITIAL_FORMS": "0",
        "columns-MIN_NUM_FORMS": "0",
        "columns-MAX_NUM_FORMS": "2000",
        "save": "1",
    }
    for index, column in enumerate(columns):
        row = {"mode": "NULLABLE", "protection": "None", "sensitivity": "", "type": "", "originating_source": "",
               "description": "", **column}
        for key, value in row.items():
            if key == "DELETE":
                if value:
                    data[f"columns-{index}-DELETE"] = "on"
                continue
            data[f"columns-{index}-{key}"] = value
    data.update(extra)
    return data


def row(name, type_="STRING", sensitivity="Regular", **fields):
    return {"name": name, "type": type_, "sensitivity": sensitivity, **fields}


def listed(response) -> list[str]:
    return [dataset.qualified_name for dataset in response.context["datasets"]]


def written():
    return Dataset.objects.count(), DatasetVersion.objects.count(), Column.objects.count()


# Who may open what ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url_name, needs_dataset",
    [
        ("catalog:dataset-list", False),
        ("catalog:dataset-create", False),
        ("catalog:dataset-detail", True),
        ("catalog:dataset-edit", True),
        ("catalog:dataset-diff", True),
        ("catalog:store-list", False),
        ("catalog:store-create", False),
    ],
)
def test_anonymous_is_sent_to_login(client, dataset, url_name, needs_dataset):
    url = reverse(url_name, args=[dataset.pk] if needs_dataset else [])

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_anonymous_is_sent_to_login_from_version_page(client, dataset):
    url = reverse("catalog:dataset-version-detail", args=[dataset.pk, 1])

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_page_has_labelled_autofocused_username(client):
    response = client.get(reverse("login"))

    content = response.content.decode()
    assert response.status_code == 200
    assert '<label for="id_username">' in content
    assert "autofocus" in content


def test_reader_gets_403_on_register_form(reader_web):
    assert reader_web.get(reverse("catalog:dataset-create")).status_code == 403


def test_reader_posting_register_form_gets_403_and_nothing_is_written(reader_web, store):
    before = written()

    response = reader_web.post(reverse("catalog:dataset-create"), form_data(columns=[row("id")]))

    assert response.status_code == 403
    assert written() == before


def test_reader_gets_403_on_edit_form(reader_web, dataset):
    assert reader_web.get(reverse("catalog:dataset-edit", args=[dataset.pk])).status_code == 403


def test_owner_without_registrar_role_may_edit_own_dataset(reader_web, reader, dataset):
    dataset.owners.add(reader)

    assert reader_web.get(reverse("catalog:dataset-edit", args=[dataset.pk])).status_code == 200


def test_unknown_dataset_is_404(reader_web):
    assert reader_web.get(reverse("catalog:dataset-detail", args=[999999])).status_code == 404


# Dataset list --------------------------------------------------------------------------


def test_reader_sees_dataset_list(reader_web, dataset):
    response = reader_web.get(reverse("catalog:dataset-list"))

    assert response.status_code == 200
    assert listed(response) == [dataset.qualified_name]
    assert reverse("catalog:dataset-detail", args=[dataset.pk]) in response.content.decode()


def test_register_button_is_hidden_from_reader(reader_web, dataset):
    response = reader_web.get(reverse("catalog:dataset-list"))

    assert reverse("catalog:dataset-create") not in response.content.decode()


def test_search_matches_column_name(reader_web, registrar, store):
    dataset_create(principal=registrar, store=store, name="crm.accounts", columns=[column_payload("iban")])
    dataset_create(principal=registrar, store=store, name="crm.visits", columns=[column_payload("page")])

    response = reader_web.get(reverse("catalog:dataset-list"), {"q": "IBAN"})

    assert listed(response) == ["analytics.crm.accounts"]


def test_sensitivity_filter_narrows_results(reader_web, registrar, store):
    dataset_create(principal=registrar, store=store, name="crm.secrets",
                   columns=[column_payload("password_hash", sensitivity="Restricted", protection="Hashed")])
    dataset_create(principal=registrar, store=store, name="crm.visits", columns=[column_payload("page")])

    response = reader_web.get(reverse("catalog:dataset-list"), {"sensitivity": "Restricted"})

    assert listed(response) == ["analytics.crm.secrets"]
    assert response.context["result_count"] == 1


def test_filter_with_no_match_shows_empty_state_with_clear_link(reader_web, dataset):
    response = reader_web.get(reverse("catalog:dataset-list"), {"q": "no-such-thing"})

    content = response.content.decode()
    assert "No datasets match these filters" in content
    assert "Clear filters" in content


def test_empty_catalog_shows_first_run_message(reader_web):
    response = reader_web.get(reverse("catalog:dataset-list"))

    assert "The catalog is empty" in response.content.decode()


def test_pagination_links_keep_the_filters(reader_web, registrar, store):
    for index in range(27):
        dataset_create(principal=registrar, store=store, name=f"bulk.t{index:02d}", columns=[column_payload("id")])

    response = reader_web.get(reverse("catalog:dataset-list"), {"q": "bulk"})

    assert len(response.context["datasets"]) == 25
    assert "?q=bulk&amp;page=2" in response.content.decode()
    second = reader_web.get(reverse("catalog:dataset-list"), {"q": "bulk", "page": 2})
    assert len(second.context["datasets"]) == 2


def _list_page_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("catalog:dataset-list"))
    assert response.status_code == 200
    return len(captured)


def test_list_page_query_count_does_not_grow_with_rows(reader_web, registrar, django_assert_max_num_queries):
    owners = ["dave", "mia"]
    stores = [StoreFactory(name=f"store{index}") for index in range(3)]
    for index in range(3):
        dataset_create(principal=registrar, store=stores[index % 3], name=f"s.small{index}",
                       columns=[column_payload("a"), column_payload("b")], owners=owners)
    with django_assert_max_num_queries(10):
        few = _list_page_queries(reader_web)

    for index in range(27):
        dataset_create(principal=registrar, store=stores[index % 3], name=f"s.more{index}",
                       columns=[column_payload("a"), column_payload("b")], owners=owners)
    with django_assert_max_num_queries(10):
        many = _list_page_queries(reader_web)

    assert few == many


# Detail, versions, diff -------------------------------------------------------------


def test_detail_shows_badges_and_originating_source(reader_web, registrar, store):
    dataset = dataset_create(
        principal=registrar, store=store, name="users.accounts",
        columns=[column_payload("password_hash", sensitivity="Restricted", protection="Hashed",
                                originatingSource="transactional:Users")],
    )

    response = reader_web.get(reverse("catalog:dataset-detail", args=[dataset.pk]))

    content = response.content.decode()
    assert '<span class="badge sens-restricted">Restricted</span>' in content
    assert '<span class="badge prot-hashed">Hashed</span>' in content
    assert "transactional:Users" in content


def test_detail_shows_segmentation_and_declared_and_real_registrant(reader_web, registrar, store):
    store.residency, store.line_of_business, store.customer = "DE", "payments", "acme"
    store.save()
    dataset = dataset_create(principal=registrar, store=store)

    content = reader_web.get(reverse("catalog:dataset-detail", args=[dataset.pk])).content.decode()

    for text in ("DE", "payments", "acme", "ServiceAccount1", registrar.username):
        assert text in content


def test_detail_hides_edit_button_from_reader(reader_web, dataset):
    response = reader_web.get(reverse("catalog:dataset-detail", args=[dataset.pk]))

    assert reverse("catalog:dataset-edit", args=[dataset.pk]) not in response.content.decode()


def test_detail_shows_edit_button_to_registrar(registrar_web, dataset):
    response = registrar_web.get(reverse("catalog:dataset-detail", args=[dataset.pk]))

    assert reverse("catalog:dataset-edit", args=[dataset.pk]) in response.content.decode()


def test_version_page_shows_columns_as_of_that_version(reader_web, reviews):
    response = reader_web.get(reverse("catalog:dataset-version-detail", args=[reviews.pk, 1]))

    content = response.content.decode()
    assert "stars" in content
    assert "rating" not in content


def test_diff_shows_removed_column_marked_breaking(reader_web, reviews):
    response = reader_web.get(reverse("catalog:dataset-diff", args=[reviews.pk]), {"from": 1, "to": 2})

    content = response.content.decode()
    removed = content[content.index('data-column="stars"'):]
    removed = removed[: removed.index("</li>")]
    assert "Breaking" in removed
    assert 'data-column="rating"' in content
    assert response.context["diff"]["breaking"] is True


def test_diff_shows_changed_field_from_and_to(reader_web, registrar, store):
    dataset_create(principal=registrar, store=store, columns=[column_payload("email", sensitivity="Regular")])
    dataset = dataset_create(principal=registrar, store=store,
                             columns=[column_payload("email", sensitivity="Sensitive", protection="Masked")])

    response = reader_web.get(reverse("catalog:dataset-diff", args=[dataset.pk]), {"from": 1, "to": 2})

    (change,) = response.context["changed"]
    assert change["name"] == "email"
    assert {(f["key"], f["from"], f["to"]) for f in change["fields"]} == {
        ("sensitivity", "Regular", "Sensitive"), ("protection", "None", "Masked"),
    }
    assert change["breaking"] is False


def test_diff_without_versions_in_url_compares_previous_with_current(reader_web, reviews):
    response = reader_web.get(reverse("catalog:dataset-diff", args=[reviews.pk]))

    assert (response.context["old"].number, response.context["new"].number) == (1, 2)


def test_diff_with_unknown_version_says_so_and_falls_back(reader_web, reviews):
    response = reader_web.get(reverse("catalog:dataset-diff", args=[reviews.pk]), {"from": "9", "to": "abc"})

    assert response.status_code == 200
    assert "There is no version “9”" in response.content.decode()
    assert (response.context["old"].number, response.context["new"].number) == (1, 2)


def test_diff_of_a_version_with_itself_shows_no_differences(reader_web, reviews):
    response = reader_web.get(reverse("catalog:dataset-diff", args=[reviews.pk]), {"from": 2, "to": 2})

    assert "No differences" in response.content.decode()


def test_diff_of_single_version_dataset_says_nothing_to_compare(reader_web, dataset):
    response = reader_web.get(reverse("catalog:dataset-diff", args=[dataset.pk]))

    assert "Nothing to compare yet" in response.content.decode()


# Register and edit forms ----------------------------------------------------------------


def test_registrar_registers_dataset_through_form(registrar_web, registrar, store):
    data = form_data(columns=[
        row("CampaignID", mode="REQUIRED", originating_source="transactional:Campaigns"),
        row("Budget", type_="NUMERIC", sensitivity="Sensitive", protection="Masked"),
    ], description="Marketing campaigns", registered_by="ServiceAccount1", version="7")

    response = registrar_web.post(reverse("catalog:dataset-create"), data)

    dataset = Dataset.objects.get(qualified_name="analytics.marketing.campaigns")
    assert response.status_code == 302
    assert response["Location"] == reverse("catalog:dataset-detail", args=[dataset.pk])
    version = dataset.current_version
    assert version.number == 1
    assert version.declared_version == "7"
    assert version.registered_by == "ServiceAccount1"
    assert version.registered_by_user == registrar
    assert [c["name"] for c in version.columns] == ["CampaignID", "Budget"]
    assert version.columns[1]["protection"] == "Masked"
    assert version.columns[0]["originatingSource"] == "transactional:Campaigns"
    assert list(dataset.owners.all()) == [registrar]


def test_successful_registration_says_which_version(registrar_web, store):
    response = registrar_web.post(reverse("catalog:dataset-create"), form_data(columns=[row("id")]), follow=True)

    assert "Registered version 1" in response.content.decode()


def test_edit_form_is_prefilled_from_current_version(registrar_web, dataset):
    response = registrar_web.get(reverse("catalog:dataset-edit", args=[dataset.pk]))

    formset = response.context["formset"]
    assert [form.initial.get("name") for form in formset.forms[:2]] == ["ReviewID", "ReviewSentiment"]
    assert formset.forms[1].initial["originating_source"] == "mlmodel:Sentiment"
    assert response.context["form"]["name"].value() == "marketing.review_sentiment"
    assert response.context["form"].fields["store"].disabled


def test_editing_adds_a_column_as_version_2(registrar_web, dataset):
    data = form_data(store="", name="", columns=[
        row("ReviewID", mode="REQUIRED", originating_source="transactional:Reviews"),
        row("ReviewSentiment", type_="FLOAT", mode="REQUIRED", originating_source="mlmodel:Sentiment"),
        row("Language", sensitivity="Public"),
    ], owners="dave")

    response = registrar_web.post(reverse("catalog:dataset-edit", args=[dataset.pk]), data)

    dataset.refresh_from_db()
    assert response.status_code == 302
    assert dataset.current_version.number == 2
    assert [c["name"] for c in dataset.current_version.columns][-1] == "Language"
    assert dataset.current_version.diff["added"] == ["Language"]


def test_edit_ignores_posted_store_and_name(registrar_web, dataset):
    data = form_data(store="elsewhere", name="other.table", columns=[row("ReviewID")], owners="dave")

    registrar_web.post(reverse("catalog:dataset-edit", args=[dataset.pk]), data)

    assert Dataset.objects.count() == 1
    dataset.refresh_from_db()
    assert dataset.current_version.number == 2


def test_saving_unchanged_schema_says_nothing_new_was_versioned(registrar_web, dataset):
    columns = [{"name": c["name"], "type": c["type"], "mode": c["mode"], "sensitivity": c["sensitivity"],
                "protection": c["protection"], "originating_source": c["originatingSource"],
                "description": c["description"]} for c in dataset.current_version.columns]

    response = registrar_web.post(reverse("catalog:dataset-edit", args=[dataset.pk]),
                                  form_data(columns=columns, owners="dave"), follow=True)

    assert "No schema change; nothing new was versioned" in response.content.decode()
    assert DatasetVersion.objects.count() == 1


def test_duplicate_column_name_is_shown_on_its_row_and_nothing_is_written(registrar_web, store):
    before = written()
    data = form_data(columns=[row("ReviewID"), row("ReviewSentiment"), row("ReviewSentiment")])

    response = registrar_web.post(reverse("catalog:dataset-create"), data)

    assert response.status_code == 200
    rows = response.context["formset"].forms
    assert "Duplicate column name 'ReviewSentiment'" in rows[2].errors["name"][0]
    assert not rows[0].errors and not rows[1].errors
    assert "Nothing was saved" in response.content.decode()
    assert written() == before


def test_column_error_lands_on_the_right_row_past_blank_and_removed_rows(registrar_web, store):
    """Payload index 1 is form row 3: row 1 is removed and row 2 is blank, so neither is sent."""
    before = written()
    data = form_data(columns=[
        row("id"),
        row("dropped", originating_source="nonsense", DELETE=True),
        {},
        row("review", originating_source="Reviews"),
    ])

    response = registrar_web.post(reverse("catalog:dataset-create"), data)

    rows = response.context["formset"].forms
    assert "must have the form <kind>:<name>" in rows[3].errors["originating_source"][0]
    assert [bool(form.errors) for form in rows] == [False, False, False, True]
    assert written() == before


def test_duplicate_column_error_names_the_form_row_not_the_payload_index(registrar_web, store):
    """Row 1 is removed, so the payload's columns[0] is form row 2: the browser says "row 2"."""
    data = form_data(columns=[
        row("dropped", DELETE=True),
        row("ReviewID"),
        {},
        row("reviewid"),
    ])

    response = registrar_web.post(reverse("catalog:dataset-create"), data)

    error = response.context["formset"].forms[3].errors["name"][0]
    assert error == "Duplicate column name 'reviewid' (also row 2)."
    page = response.content.decode()
    assert "columns[" not in page
    assert "Row 4, Name</a>: Duplicate column name &#x27;reviewid&#x27; (also row 2)." in page


def test_originating_source_error_uses_the_forms_label(registrar_web, store):
    response = registrar_web.post(reverse("catalog:dataset-create"),
                                  form_data(columns=[row("id", originating_source="Reviews")]))

    error = response.context["formset"].forms[0].errors["originating_source"][0]
    assert error.startswith("Originating source 'Reviews' must have the form <kind>:<name>")
    page = response.content.decode()
    assert "originatingSource" not in page
    assert "Row 1, Originating source</a>:" in page


def test_the_api_keeps_its_field_paths_and_zero_based_indexes(registrar, store):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(registrar)
    payload = {"name": "marketing.campaigns", "store": "analytics", "columns": [
        column_payload("id"), column_payload("ID", originatingSource="nonsense")]}

    response = client.post("/api/v1/datasets/", payload, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["columns[1].name"] == ["Duplicate column name 'ID' (also columns[0])."]
    assert errors["columns[1].originatingSource"][0].startswith("originatingSource 'nonsense'")


def test_dataset_level_error_is_shown_next_to_its_field(registrar_web, store):
    before = written()

    response = registrar_web.post(reverse("catalog:dataset-create"),
                                  form_data(columns=[row("id")], owners="dave, nobody-here"))

    assert "nobody-here" in response.context["form"].errors["owners"][0]
    assert written() == before


def test_form_without_columns_shows_the_services_error(registrar_web, store):
    response = registrar_web.post(reverse("catalog:dataset-create"), form_data(columns=[{}]))

    assert "at least one column" in " ".join(response.context["formset"].non_form_errors())
    assert Dataset.objects.count() == 0


def test_add_column_adds_a_row_without_saving(registrar_web, store):
    data = form_data(columns=[row("id")])
    del data["save"]
    data["add_column"] = "1"

    response = registrar_web.post(reverse("catalog:dataset-create"), data)

    assert response.status_code == 200
    assert len(response.context["formset"].forms) == 2
    assert response.context["formset"].forms[0]["name"].value() == "id"
    assert Dataset.objects.count() == 0


# Stores ---------------------------------------------------------------------------------


def test_reader_sees_store_list_with_dataset_count(reader_web, dataset):
    response = reader_web.get(reverse("catalog:store-list"))

    assert response.status_code == 200
    (store,) = response.context["stores"]
    assert (store.name, store.dataset_count) == ("analytics", 1)


def test_reader_gets_403_on_store_create(reader_web):
    assert reader_web.get(reverse("catalog:store-create")).status_code == 403


def test_reader_posting_store_create_gets_403_and_nothing_is_written(reader_web):
    response = reader_web.post(reverse("catalog:store-create"),
                               {"name": "lake", "kind": "object", "platform": "s3", "environment": "prod"})

    assert response.status_code == 403
    assert not DataStore.objects.filter(name="lake").exists()


def test_admin_creates_store(admin_web):
    response = admin_web.post(reverse("catalog:store-create"), {
        "name": "lake", "kind": "object", "platform": "s3", "environment": "dev", "residency": "eu",
        "line_of_business": "ads", "customer": "",
    })

    assert response.status_code == 302
    store = DataStore.objects.get(name="lake")
    assert (store.environment, store.residency, store.line_of_business) == ("dev", "EU", "ads")


def test_store_form_shows_error_next_to_field(admin_web):
    response = admin_web.post(reverse("catalog:store-create"),
                              {"name": "Bad Name", "kind": "object", "platform": "s3", "environment": "prod"})

    assert response.status_code == 200
    assert response.context["form"].errors["name"]
    assert not DataStore.objects.filter(name="Bad Name").exists()


def test_admin_edits_store(admin_web, store):
    response = admin_web.post(reverse("catalog:store-edit", args=[store.pk]), {
        "name": store.name, "kind": store.kind, "platform": store.platform, "environment": "staging",
        "residency": "CA", "line_of_business": "reviews", "customer": "acme",
    })

    assert response.status_code == 302
    store.refresh_from_db()
    # The customer changes at once; the environment waits for a security engineer's approval.
    assert (store.environment, store.customer) == ("prod", "acme")
    assert store.metadata_proposals.get().changes == {"environment": {"from": "prod", "to": "staging"}}
    assert "Not applied yet: environment prod → staging" in admin_web.get(response["Location"]).content.decode()


def test_reader_gets_403_on_store_edit(reader_web, store):
    assert reader_web.get(reverse("catalog:store-edit", args=[store.pk])).status_code == 403


# Layout ---------------------------------------------------------------------------------


def test_logout_is_a_post_form_with_csrf(reader_web):
    content = reader_web.get(reverse("catalog:dataset-list")).content.decode()

    form = content[content.index(f'action="{reverse("logout")}"') - 40:]
    form = form[: form.index("</form>")]
    assert 'method="post"' in form
    assert "csrfmiddlewaretoken" in form


def test_admin_link_is_shown_only_to_staff(reader_web, admin_user, client):
    assert reverse("admin:index") not in reader_web.get(reverse("catalog:dataset-list")).content.decode()
    client.force_login(admin_user)

    assert reverse("admin:index") in client.get(reverse("catalog:dataset-list")).content.decode()


def test_unknown_filter_value_is_reported_and_ignored(reader_web, dataset):
    response = reader_web.get(reverse("catalog:dataset-list"), {"sensitivity": "Bogus"})

    assert response.status_code == 200
    assert "Some filters were not understood" in response.content.decode()
    assert response.context["result_count"] == 1


def test_htmx_search_gets_the_page_with_its_results(reader_web, dataset):
    response = reader_web.get(reverse("catalog:dataset-list"), {"q": "sentiment"}, HTTP_HX_REQUEST="true")

    assert 'id="results"' in response.content.decode()
    assert listed(response) == [dataset.qualified_name]
