"""The browser pages of warehouse sync: a store's connection, sync runs and classification suggestions."""

import sqlite3

import pytest
from django.test import Client
from django.urls import reverse

from catalog.connections import connection_save
from catalog.models import (
    ColumnSuggestion,
    Connection,
    Dataset,
    DatasetVersion,
    SuggestionStatus,
    SyncOutcome,
    SyncRun,
    SyncRunEvent,
    SyncStatus,
)
from catalog.sync import sync_run_execute, sync_run_request
from catalog.vocabulary import Sensitivity
from catalog.views import evidence_text
from tests.factories import StoreFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "Hunter2-very-secret"


def make_warehouse(path, *, customers=12):
    """A small shop warehouse: three tables, a view, and a column named email."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        create table customers (id integer primary key, email text not null, full_name text, created_at text);
        create table orders (id integer primary key, customer_id integer references customers(id), total numeric);
        create table products (sku text primary key, title text, price numeric);
        create view customer_orders as
            select c.id as customer_id, c.email as email, count(o.id) as order_count
            from customers c left join orders o on o.customer_id = c.id group by c.id, c.email;
        """
    )
    db.executemany(
        "insert into customers (email, full_name, created_at) values (?, ?, ?)",
        [(f"person{i}@example.com", f"Person Number{i}", "2024-01-01") for i in range(customers)],
    )
    db.executemany("insert into products values (?, ?, ?)", [(f"SKU{i}", f"Thing {i}", i) for i in range(5)])
    db.commit()
    db.close()
    return path


@pytest.fixture
def engineer(db):
    return UserFactory(username="pat", roles=["platform_engineer"])


@pytest.fixture
def engineer_web(engineer):
    client = Client()
    client.force_login(engineer)
    return client


@pytest.fixture
def reader_web(reader):
    client = Client()
    client.force_login(reader)
    return client


@pytest.fixture
def warehouse(tmp_path):
    return make_warehouse(tmp_path / "shop.db")


@pytest.fixture
def shop(db):
    """A SQLite store without a connection yet."""
    return StoreFactory(name="shop", kind="transactional", platform="sqlite")


@pytest.fixture
def connected_shop(shop, warehouse, engineer):
    connection_save(principal=engineer, store=shop, database=str(warehouse), sampling_enabled=True, sample_size=50)
    return shop


@pytest.fixture
def appdb(db):
    """A PostgreSQL store: host, user and password (never contacted by these tests)."""
    return StoreFactory(name="appdb", kind="transactional", platform="postgresql")


def run_sync(store, principal):
    run, _ = sync_run_request(principal=principal, store=store, enqueue=False)
    return sync_run_execute(run.pk)


@pytest.fixture
def synced_run(connected_shop, engineer):
    return run_sync(connected_shop, engineer)


@pytest.fixture
def email_suggestion(synced_run):
    return ColumnSuggestion.objects.select_related("column", "dataset").get(
        dataset__qualified_name="shop.customers", column__name="email", label="email"
    )


def html(response) -> str:
    return response.content.decode()


def connection_post(**fields):
    data = {"host": "db.internal", "port": "5432", "database": "app", "username": "harvester", "password": "",
            "include_schemas": "public\nsales_*", "exclude_schemas": "tmp_*", "options": "",
            "sample_size": "50", "schedule": ""}
    data.update(fields)
    return data


# Who may open and do what -------------------------------------------------------------------


@pytest.mark.parametrize("url_name", ["catalog:store-detail", "catalog:connection-edit"])
def test_anonymous_is_sent_to_login_from_store_pages(client, shop, url_name):
    url = reverse(url_name, args=[shop.pk])

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_anonymous_is_sent_to_login_from_run_and_suggestion_pages(client, synced_run):
    for url in (reverse("catalog:sync-run-detail", args=[synced_run.pk]), reverse("catalog:suggestion-list")):
        response = client.get(url)

        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_reader_sees_store_page_without_buttons(reader_web, connected_shop, synced_run):
    response = reader_web.get(reverse("catalog:store-detail", args=[connected_shop.pk]))

    content = html(response)
    assert response.status_code == 200
    assert "Connection" in content and str(connected_shop.connection.database) in content
    for button in ("Edit connection", "Test connection", "Sync now"):
        assert button not in content
    assert reverse("catalog:sync-run-detail", args=[synced_run.pk]) in content


def test_engineer_sees_store_page_with_buttons(engineer_web, connected_shop):
    content = html(engineer_web.get(reverse("catalog:store-detail", args=[connected_shop.pk])))

    for button in ("Edit connection", "Test connection", "Sync now"):
        assert button in content


def test_store_list_links_to_store_page(reader_web, shop):
    content = html(reader_web.get(reverse("catalog:store-list")))

    assert reverse("catalog:store-detail", args=[shop.pk]) in content


@pytest.mark.parametrize("url_name", ["catalog:connection-test", "catalog:store-sync", "catalog:connection-delete"])
def test_reader_posting_store_actions_gets_403(reader_web, connected_shop, url_name):
    response = reader_web.post(reverse(url_name, args=[connected_shop.pk]))

    assert response.status_code == 403
    assert not SyncRun.objects.exists()
    assert Connection.objects.filter(store=connected_shop, last_tested_at__isnull=True).exists()


def test_reader_gets_403_on_connection_form_and_saves_nothing(reader_web, appdb):
    url = reverse("catalog:connection-edit", args=[appdb.pk])

    assert reader_web.get(url).status_code == 403
    assert reader_web.post(url, connection_post(password=PASSWORD)).status_code == 403
    assert not Connection.objects.exists()


def test_reader_cannot_accept_a_suggestion(reader_web, email_suggestion):
    response = reader_web.post(reverse("catalog:suggestion-accept", args=[email_suggestion.pk]))

    assert response.status_code == 403
    email_suggestion.refresh_from_db()
    assert email_suggestion.status == SuggestionStatus.PENDING


def test_reader_sees_suggestions_without_decision_buttons(reader_web, email_suggestion):
    response = reader_web.get(reverse("catalog:suggestion-list"))

    content = html(response)
    assert response.status_code == 200
    assert "shop.customers" in content
    assert reverse("catalog:suggestion-accept", args=[email_suggestion.pk]) not in content


def test_reader_sees_run_page(reader_web, synced_run):
    response = reader_web.get(reverse("catalog:sync-run-detail", args=[synced_run.pk]))

    assert response.status_code == 200
    assert "Sync #" in html(response)


def test_unknown_store_and_run_are_404(reader_web):
    assert reader_web.get(reverse("catalog:store-detail", args=[999])).status_code == 404
    assert reader_web.get(reverse("catalog:sync-run-detail", args=[999])).status_code == 404


# Store page --------------------------------------------------------------------------------


def test_store_without_connection_says_how_to_add_one(engineer_web, shop):
    content = html(engineer_web.get(reverse("catalog:store-detail", args=[shop.pk])))

    assert "No connection yet" in content
    assert "No syncs yet" in content
    assert reverse("catalog:connection-edit", args=[shop.pk]) in content


def test_store_on_platform_without_connector_says_it_cannot_be_synced(engineer_web):
    lake = StoreFactory(name="lake", kind="object", platform="s3")

    content = html(engineer_web.get(reverse("catalog:store-detail", args=[lake.pk])))

    assert "cannot be harvested" in content
    assert reverse("catalog:connection-edit", args=[lake.pk]) not in content


def test_store_page_shows_schedule_and_its_next_run(engineer_web, engineer, appdb):
    connection_save(principal=engineer, store=appdb, host="db.internal", database="app", schedule="0 2 * * *")

    content = html(engineer_web.get(reverse("catalog:store-detail", args=[appdb.pk])))

    assert "<code>0 2 * * *</code>" in content
    assert "next run" in content and " 02:00 " in content


def test_store_page_lists_runs_with_counts(reader_web, connected_shop, synced_run):
    response = reader_web.get(reverse("catalog:store-detail", args=[connected_shop.pk]))

    (run,) = response.context["runs"]
    assert run.pk == synced_run.pk
    assert 'class="run-status run-succeeded"' in html(response)


# Connection form ---------------------------------------------------------------------------


def test_connection_form_saves_and_never_renders_the_password(engineer_web, appdb):
    url = reverse("catalog:connection-edit", args=[appdb.pk])

    response = engineer_web.post(url, connection_post(password=PASSWORD))

    assert response.status_code == 302
    connection = Connection.objects.get(store=appdb)
    assert (connection.host, connection.port, connection.include_schemas) == ("db.internal", 5432, ["public", "sales_*"])
    assert connection.secret_id is not None
    for page in (url, reverse("catalog:store-detail", args=[appdb.pk])):
        content = html(engineer_web.get(page))
        assert PASSWORD not in content
        assert "stored" in content


def test_blank_password_keeps_the_stored_one(engineer_web, engineer, appdb):
    connection_save(principal=engineer, store=appdb, host="db.internal", port=5432, database="app",
                    username="harvester", password=PASSWORD)
    secret_id = Connection.objects.get(store=appdb).secret_id

    engineer_web.post(reverse("catalog:connection-edit", args=[appdb.pk]), connection_post(sample_size="20"))

    connection = Connection.objects.get(store=appdb)
    assert (connection.sample_size, connection.secret_id) == (20, secret_id)


def test_a_new_host_with_a_blank_password_asks_for_the_password_again(engineer_web, engineer, appdb):
    connection_save(principal=engineer, store=appdb, host="db.internal", port=5432, database="app",
                    username="harvester", password=PASSWORD)

    response = engineer_web.post(reverse("catalog:connection-edit", args=[appdb.pk]), connection_post(host="db2.internal"))

    assert response.status_code == 200
    assert "Enter the password again" in html(response)
    assert Connection.objects.get(store=appdb).host == "db.internal"


def test_remove_password_checkbox_removes_the_stored_one(engineer_web, engineer, appdb):
    connection_save(principal=engineer, store=appdb, host="db.internal", database="app", password=PASSWORD)

    engineer_web.post(reverse("catalog:connection-edit", args=[appdb.pk]), connection_post(remove_password="on"))

    assert Connection.objects.get(store=appdb).secret_id is None


def test_wrong_cron_shows_the_field_error_and_saves_nothing(engineer_web, appdb):
    response = engineer_web.post(reverse("catalog:connection-edit", args=[appdb.pk]),
                                 connection_post(schedule="every night", password=PASSWORD))

    assert response.status_code == 200
    form = response.context["form"]
    assert "five cron fields" in form.errors["schedule"][0]
    assert form.fields["schedule"].widget.attrs["autofocus"] is True
    assert "Type the password again" in html(response)
    assert PASSWORD not in html(response)
    assert not Connection.objects.exists()


def test_bad_options_json_shows_the_field_error(engineer_web, appdb):
    response = engineer_web.post(reverse("catalog:connection-edit", args=[appdb.pk]), connection_post(options="{oops"))

    assert response.context["form"].errors["options"] == ["Must be a JSON object."]


def test_sqlite_form_asks_for_a_file_path_and_no_password(engineer_web, shop):
    response = engineer_web.get(reverse("catalog:connection-edit", args=[shop.pk]))

    form = response.context["form"]
    assert "password" not in form.fields and "host" not in form.fields
    assert form.fields["database"].widget.attrs["autofocus"] is True
    assert "file" in form.fields["database"].help_text


def test_sqlite_without_a_file_path_shows_the_error_on_it(engineer_web, shop):
    response = engineer_web.post(reverse("catalog:connection-edit", args=[shop.pk]), {"database": "", "sample_size": "50"})

    assert response.context["form"].errors["database"] == ["Required: the database file path."]


def test_connection_form_is_prefilled(engineer_web, engineer, appdb):
    connection_save(principal=engineer, store=appdb, host="db.internal", database="app", options={"sslmode": "require"},
                    include_schemas=["a", "b"], password=PASSWORD)

    form = engineer_web.get(reverse("catalog:connection-edit", args=[appdb.pk])).context["form"]

    assert form.initial["include_schemas"] == "a\nb"
    assert '"sslmode": "require"' in form.initial["options"]
    assert "remove_password" in form.fields


def test_removing_the_connection_keeps_the_datasets(engineer_web, connected_shop, synced_run):
    response = engineer_web.post(reverse("catalog:connection-delete", args=[connected_shop.pk]))

    assert response.status_code == 302
    assert not Connection.objects.filter(store=connected_shop).exists()
    assert Dataset.objects.filter(store=connected_shop).count() == 4


# Test and sync -------------------------------------------------------------------------------


def test_test_connection_with_htmx_shows_connected_in_place(engineer_web, connected_shop):
    response = engineer_web.post(reverse("catalog:connection-test", args=[connected_shop.pk]), HTTP_HX_REQUEST="true")

    content = html(response)
    assert "Connected to SQLite" in content
    assert '<span id="last-test" hx-swap-oob="true"><span class="test-ok">' in content
    assert "<html" not in content
    assert Connection.objects.get(store=connected_shop).last_test_ok is True


def test_test_connection_to_missing_file_says_it_failed(engineer_web, engineer, shop, tmp_path):
    connection_save(principal=engineer, store=shop, database=str(tmp_path / "missing.db"))

    response = engineer_web.post(reverse("catalog:connection-test", args=[shop.pk]), HTTP_HX_REQUEST="true")

    assert "Connection failed" in html(response)
    assert Connection.objects.get(store=shop).last_test_ok is False


def test_test_connection_without_javascript_redirects_with_a_message(engineer_web, connected_shop):
    response = engineer_web.post(reverse("catalog:connection-test", args=[connected_shop.pk]), follow=True)

    assert "Connected to SQLite" in html(response)


def test_sync_now_creates_a_run_and_its_page_shows_the_counts(
    engineer_web, connected_shop, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = engineer_web.post(reverse("catalog:store-sync", args=[connected_shop.pk]))

    run = SyncRun.objects.get(store=connected_shop)
    assert response["Location"] == reverse("catalog:sync-run-detail", args=[run.pk])
    assert (run.status, run.new_count) == (SyncStatus.SUCCEEDED, 4)
    page = engineer_web.get(response["Location"])
    content = html(page)
    assert '<span class="run-count-value">4</span> <span class="run-count-label">New</span>' in content
    assert "shop.customers" in content
    assert 'hx-trigger="every 1s"' not in content


def test_sync_now_while_a_run_is_active_goes_to_that_run(engineer_web, engineer, connected_shop):
    active, _ = sync_run_request(principal=engineer, store=connected_shop, enqueue=False)

    response = engineer_web.post(reverse("catalog:store-sync", args=[connected_shop.pk]), follow=True)

    assert response.redirect_chain[-1][0] == reverse("catalog:sync-run-detail", args=[active.pk])
    assert "was already queued" in html(response)
    assert SyncRun.objects.count() == 1


def test_sync_now_without_a_connection_says_so(engineer_web, shop):
    response = engineer_web.post(reverse("catalog:store-sync", args=[shop.pk]), follow=True)

    assert "no connection" in html(response)
    assert not SyncRun.objects.exists()


# Run page ------------------------------------------------------------------------------------


def test_active_run_page_polls_its_progress(reader_web, engineer, connected_shop):
    run, _ = sync_run_request(principal=engineer, store=connected_shop, enqueue=False)

    content = html(reader_web.get(reverse("catalog:sync-run-detail", args=[run.pk])))

    assert f'hx-get="{reverse("catalog:sync-run-progress", args=[run.pk])}?polling=1"' in content
    assert 'hx-trigger="every 1s"' in content
    assert "Waiting for a worker" in content


def test_progress_of_a_finished_run_stops_polling_and_sends_the_events(reader_web, synced_run):
    response = reader_web.get(reverse("catalog:sync-run-progress", args=[synced_run.pk]), {"polling": "1"},
                              HTTP_HX_REQUEST="true")

    content = html(response)
    assert "hx-trigger" not in content
    assert 'id="run-events" aria-labelledby="run-events-title" hx-swap-oob="true"' in content
    assert "shop.customers" in content


def test_progress_shows_objects_done_of_total(reader_web, engineer, connected_shop):
    run, _ = sync_run_request(principal=engineer, store=connected_shop, enqueue=False)
    SyncRun.objects.filter(pk=run.pk).update(status=SyncStatus.RUNNING, phase="writing", objects_total=8, objects_done=2)

    content = html(reader_web.get(reverse("catalog:sync-run-progress", args=[run.pk]), {"polling": "1"}))

    assert "2 of 8 · 25%" in content
    assert 'aria-valuenow="2"' in content
    assert "Writing datasets" in content
    assert 'hx-trigger="every 1s"' in content


def test_failed_run_shows_its_message_to_store_managers_only(engineer_web, reader_web, engineer, shop, tmp_path):
    connection_save(principal=engineer, store=shop, database=str(tmp_path / "missing.db"))
    run = run_sync(shop, engineer)
    url = reverse("catalog:sync-run-detail", args=[run.pk])

    managed, read = html(engineer_web.get(url)), html(reader_web.get(url))

    assert run.status == SyncStatus.FAILED
    assert "The sync failed." in managed and run.message.split(":")[0] in managed
    # A driver's message can name any warehouse object, hidden datasets included.
    assert "The sync failed." in read and run.message.split(":")[0] not in read
    assert "Store managers (platform engineers and admins) see why" in read


def test_run_page_filters_events_by_outcome_in_the_url(engineer_web, synced_run):
    SyncRunEvent.objects.create(run=synced_run, object_name="shop.broken", outcome=SyncOutcome.ERROR, message="boom")

    response = engineer_web.get(reverse("catalog:sync-run-detail", args=[synced_run.pk]), {"outcome": "error"})

    assert [event.object_name for event in response.context["events"]] == ["shop.broken"]
    assert response.context["outcome"] == "error"


def test_errors_naming_no_dataset_are_left_out_for_readers_and_counted(reader_web, synced_run):
    SyncRunEvent.objects.create(run=synced_run, object_name="shop.broken", outcome=SyncOutcome.ERROR, message="boom")

    response = reader_web.get(reverse("catalog:sync-run-detail", args=[synced_run.pk]), {"outcome": "error"})

    assert list(response.context["events"]) == []
    assert response.context["events_left_out"] == 1
    assert ("error", "Error", 0) in response.context["outcome_choices"]
    assert "shop.broken" not in html(response) and "1 more object of this run is left out" in html(response)


def test_run_page_query_count_does_not_grow_with_events(reader_web, synced_run, django_assert_max_num_queries):
    url = reverse("catalog:sync-run-detail", args=[synced_run.pk])
    with django_assert_max_num_queries(7):
        reader_web.get(url)
    SyncRunEvent.objects.bulk_create([
        SyncRunEvent(run=synced_run, object_name=f"shop.t{i}", outcome=SyncOutcome.NEW,
                     dataset=Dataset.objects.first()) for i in range(60)
    ])

    with django_assert_max_num_queries(7):
        response = reader_web.get(url, {"page": "2"})

    assert response.context["page"].number == 2


# Suggestions ---------------------------------------------------------------------------------


def test_evidence_reads_as_a_sentence():
    text = evidence_text({"name": "matches 'email'", "type": None, "sampled": 50, "matched": 48,
                          "pattern": "email address"})

    assert text == "name matches 'email'; 48 of 50 sampled values match “email address”"


def test_suggestions_page_lists_pending_with_badges_and_evidence(engineer_web, email_suggestion):
    response = engineer_web.get(reverse("catalog:suggestion-list"))

    content = html(response)
    row = content[content.index(f'id="suggestion-{email_suggestion.pk}"'):]
    row = row[: row.index("</tr>")]
    assert 'class="badge sens-sensitive"' in row
    assert f"{round(email_suggestion.confidence * 100)}%" in row
    assert "name matches &#x27;email&#x27;" in row
    assert "sampled values match" in row
    assert reverse("catalog:suggestion-accept", args=[email_suggestion.pk]) in row


def test_suggestions_filter_by_store_and_status(engineer_web, engineer, email_suggestion):
    other = StoreFactory(name="other", platform="sqlite")
    url = reverse("catalog:suggestion-list")

    assert list(engineer_web.get(url, {"store": "other"}).context["suggestions"]) == []
    assert list(engineer_web.get(url, {"status": "rejected"}).context["suggestions"]) == []
    listed = engineer_web.get(url, {"store": "shop", "status": "pending"}).context["suggestions"]
    assert email_suggestion.pk in [suggestion.pk for suggestion in listed]
    assert other.name in engineer_web.get(url).context["store_names"]


def test_accept_raises_the_sensitivity_and_makes_a_new_version(engineer_web, email_suggestion):
    dataset = email_suggestion.dataset
    versions = DatasetVersion.objects.filter(dataset=dataset).count()

    response = engineer_web.post(reverse("catalog:suggestion-accept", args=[email_suggestion.pk]))

    assert response.status_code == 302
    email_suggestion.refresh_from_db()
    email_suggestion.column.refresh_from_db()
    assert email_suggestion.status == SuggestionStatus.ACCEPTED
    assert email_suggestion.column.sensitivity == Sensitivity.SENSITIVE
    assert DatasetVersion.objects.filter(dataset=dataset).count() == versions + 1


def test_reject_marks_it_rejected_without_a_new_version(engineer_web, email_suggestion):
    versions = DatasetVersion.objects.filter(dataset=email_suggestion.dataset).count()

    engineer_web.post(reverse("catalog:suggestion-reject", args=[email_suggestion.pk]))

    email_suggestion.refresh_from_db()
    assert email_suggestion.status == SuggestionStatus.REJECTED
    assert DatasetVersion.objects.filter(dataset=email_suggestion.dataset).count() == versions


def test_htmx_accept_swaps_in_the_decided_row(engineer_web, email_suggestion):
    response = engineer_web.post(reverse("catalog:suggestion-accept", args=[email_suggestion.pk]),
                                 HTTP_HX_REQUEST="true")

    content = html(response)
    assert content.lstrip().startswith(f'<tr id="suggestion-{email_suggestion.pk}"')
    assert "Accepted" in content and "now v2" in content
    assert '<span id="nav-suggestion-count" hx-swap-oob="true">' in content


def test_htmx_accept_on_the_list_updates_its_count_with_the_nav(engineer_web, email_suggestion):
    """The page says "3 pending suggestions" and the nav 3; after one accept both say 2."""
    listed = reverse("catalog:suggestion-list")
    page = engineer_web.get(listed)
    pending = ColumnSuggestion.objects.filter(status=SuggestionStatus.PENDING).count()
    assert f"<strong>{pending}</strong> pending suggestions" in html(page)

    response = engineer_web.post(reverse("catalog:suggestion-accept", args=[email_suggestion.pk]),
                                 {"next": listed}, HTTP_HX_REQUEST="true")

    content = html(response)
    assert (f'<span id="suggestion-result-total" hx-swap-oob="true"><strong>{pending - 1}</strong> '
            f"pending suggestion{'s' if pending - 1 != 1 else ''}</span>") in content
    assert f'<span class="nav-count" title="{pending - 1} pending suggestion' in content


def test_htmx_accept_keeps_the_lists_filters_in_its_count(engineer_web, email_suggestion):
    listed = reverse("catalog:suggestion-list") + "?status=accepted&store=shop"

    response = engineer_web.post(reverse("catalog:suggestion-accept", args=[email_suggestion.pk]),
                                 {"next": listed}, HTTP_HX_REQUEST="true")

    assert ('<span id="suggestion-result-total" hx-swap-oob="true"><strong>1</strong> accepted suggestion in shop'
            in html(response))


def test_deciding_twice_says_it_was_already_decided(engineer_web, email_suggestion):
    url = reverse("catalog:suggestion-reject", args=[email_suggestion.pk])
    engineer_web.post(url)

    response = engineer_web.post(reverse("catalog:suggestion-accept", args=[email_suggestion.pk]), follow=True)

    assert "already rejected" in html(response)
    email_suggestion.refresh_from_db()
    assert email_suggestion.status == SuggestionStatus.REJECTED


def test_decision_does_not_return_to_another_site(engineer_web, email_suggestion):
    response = engineer_web.post(reverse("catalog:suggestion-reject", args=[email_suggestion.pk]),
                                 {"next": "https://evil.example/"})

    assert response["Location"] == reverse("catalog:suggestion-list")


def test_decision_from_the_dataset_page_returns_to_it(engineer_web, email_suggestion):
    dataset_url = reverse("catalog:dataset-detail", args=[email_suggestion.dataset.pk])

    response = engineer_web.post(reverse("catalog:suggestion-accept", args=[email_suggestion.pk]), {"next": dataset_url})

    assert response["Location"] == dataset_url


def test_suggestions_page_query_count_does_not_grow_with_rows(
    engineer_web, reader_web, email_suggestion, tmp_path, engineer, django_assert_max_num_queries
):
    url = reverse("catalog:suggestion-list")
    limit = 9  # constant; the user's stewardships (read once per request) and the unclassified datasets are two of them
    with django_assert_max_num_queries(limit):
        engineer_web.get(url)
    more = StoreFactory(name="more", kind="transactional", platform="sqlite")
    connection_save(principal=engineer, store=more, database=str(make_warehouse(tmp_path / "more.db")),
                    sampling_enabled=True)
    run_sync(more, engineer)
    assert ColumnSuggestion.objects.filter(status=SuggestionStatus.PENDING).count() > 4

    for web in (engineer_web, reader_web):
        with django_assert_max_num_queries(limit):
            web.get(url)


def test_dataset_page_marks_columns_with_pending_suggestions(engineer_web, email_suggestion):
    response = engineer_web.get(reverse("catalog:dataset-detail", args=[email_suggestion.dataset.pk]))

    content = html(response)
    marker = content[content.index('<div class="suggested"'):]
    marker = marker[: marker.index("</div>")]
    assert "suggested:" in marker and "Sensitive" in marker
    assert f"(email, {round(email_suggestion.confidence * 100)}%)" in marker
    assert reverse("catalog:suggestion-accept", args=[email_suggestion.pk]) in marker


def test_dataset_page_hides_decision_buttons_from_reader(reader_web, email_suggestion):
    content = html(reader_web.get(reverse("catalog:dataset-detail", args=[email_suggestion.dataset.pk])))

    assert "suggested:" in content
    assert reverse("catalog:suggestion-accept", args=[email_suggestion.pk]) not in content


def test_nav_count_shows_pending_suggestions(reader_web, email_suggestion):
    pending = ColumnSuggestion.objects.filter(status=SuggestionStatus.PENDING).count()

    content = html(reader_web.get(reverse("catalog:suggestion-count")))

    assert f">{pending}</span>" in content
    assert reverse("catalog:suggestion-count") in html(reader_web.get(reverse("catalog:dataset-list")))
