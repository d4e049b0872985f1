import re
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from access.models import Role, User
from catalog.models import Column, Dataset, DatasetVersion, DataStore


def test_load_demo_is_idempotent(db):
    call_command("load_demo")
    counts = (DataStore.objects.count(), Dataset.objects.count(), DatasetVersion.objects.count(), User.objects.count())
    call_command("load_demo")
    assert (DataStore.objects.count(), Dataset.objects.count(), DatasetVersion.objects.count(), User.objects.count()) == counts


def test_demo_has_the_guidance_platform(db):
    call_command("load_demo")
    assert set(DataStore.objects.values_list("kind", flat=True)) == {"transactional", "object", "analytical", "ml_model"}
    assert DataStore.objects.filter(name="analytics", kind="analytical").exists()
    password = Column.objects.get(dataset__qualified_name="appdb.public.users", name="password_hash")
    assert (password.get_sensitivity_display(), password.get_protection_display()) == ("Restricted", "Hashed")
    document = Column.objects.get(dataset__name="identity_verification_documents", name="document_hash")
    assert (document.get_sensitivity_display(), document.get_protection_display()) == ("Restricted", "Hashed")
    email = Column.objects.get(dataset__name="user_demographics", name="email")
    assert (email.get_sensitivity_display(), email.get_protection_display()) == ("Sensitive", "Masked")
    marketing = Dataset.objects.get(qualified_name="analytics.marketing.review_sentiment")
    assert marketing.current_version.registered_by == "ServiceAccount1"
    assert marketing.current_version.registered_by_user.username == "marketing-pipeline"
    assert marketing.columns.get(name="ReviewSentiment").originating_source == "mlmodel:Sentiment"
    assert Dataset.objects.get(qualified_name="appdb.public.reviews").current_version.is_breaking


def test_demo_has_a_user_for_every_company_role(db):
    from access.roles import COMPANY_ROLES

    call_command("load_demo")
    for slug, *_ in COMPANY_ROLES:  # the platform and operations engineers included
        assert User.objects.filter(groups__company_role__slug=slug, is_service_account=False).exists(), slug
    assert User.objects.get(username="admin").is_superuser
    assert Role.objects.get(slug="data_engineer").can_register


def test_demo_has_lineage_with_a_masking_step_and_violations(db):
    from lineage.models import Edge, EdgeLevel, Node, NodeKind

    call_command("load_demo")
    edges = (DataStore.objects.count(), Edge.objects.count(), Node.objects.count())
    call_command("load_demo")
    assert (DataStore.objects.count(), Edge.objects.count(), Node.objects.count()) == edges

    reviews = Node.objects.get(kind=NodeKind.DATASET, dataset__qualified_name="appdb.public.reviews")
    marketing = Node.objects.get(kind=NodeKind.DATASET, dataset__qualified_name="analytics.marketing.review_sentiment")
    assert Edge.objects.filter(source=reviews, target=marketing, level=EdgeLevel.DATASET).exists()
    assert Edge.objects.filter(source=marketing, level=EdgeLevel.DATASET).exists()  # something is built from it
    masking = Edge.objects.get(level=EdgeLevel.DATASET, masking=True)
    assert (masking.source.label, masking.target.label) == ("appdb.public.users", "analytics.marketing.campaign_audience")
    violations = {(node.dataset.qualified_name, node.name) for node in Node.objects.filter(is_violation=True)}
    assert ("analytics.reporting.review_digest", "reviewer_email") in violations


def test_demo_has_a_synced_warehouse_with_view_lineage_and_suggestions(db, settings, tmp_path):
    from catalog.models import ColumnSuggestion, SyncRun
    from lineage.models import Edge

    settings.VAR_DIR = tmp_path
    call_command("load_demo")
    call_command("load_demo")  # idempotent: no second sync
    run = SyncRun.objects.get(store__name="support-replica")
    assert run.status == "succeeded" and run.new_count == 4
    # In the file store directory of the local settings, never directly in var/ beside the catalog's files.
    assert run.store.connection.database == str(tmp_path / "warehouses" / "demo-support-desk.sqlite3")
    assert Edge.objects.filter(kind="view", target__dataset__name="open_tickets_by_agent").exists()
    labels = set(ColumnSuggestion.objects.filter(dataset__store__name="support-replica").values_list("label", flat=True))
    assert {"email", "credit_card"} <= labels


def test_demo_has_a_pending_request_for_dave_and_aggregated_datasets_for_executives(db):
    from access.models import AccessRequest
    from access.selectors import approval_queue
    from catalog.selectors import dataset_visible

    call_command("load_demo")
    call_command("load_demo")

    request = AccessRequest.objects.get(status="pending")  # the monitoring story's requests were decided
    assert (request.requester.username, request.dataset.qualified_name, request.status) == (
        "dana", "appdb.public.users", "pending"
    )
    assert list(approval_queue(user=User.objects.get(username="dave"))) == [request]
    erin = User.objects.get(username="erin")  # an executive
    assert set(dataset_visible(user=erin).values_list("qualified_name", flat=True)) == {
        "analytics.reporting.restaurant_sentiment_daily", "analytics.reporting.review_digest",
    }


def test_a_demo_loaded_before_file_store_directories_is_pointed_at_the_new_file(db, settings, tmp_path):
    from catalog.models import Connection

    settings.VAR_DIR = tmp_path
    call_command("load_demo")
    # Demos loaded before kept the file directly in var/, which no connection may open any more.
    Connection.objects.filter(store__name="support-replica").update(database=str(tmp_path / "demo-support-desk.sqlite3"))
    call_command("load_demo")
    assert Connection.objects.get(store__name="support-replica").database == str(
        tmp_path / "warehouses" / "demo-support-desk.sqlite3"
    )


def printed_logins(output: str) -> dict[str, str]:
    """``{username: role}`` of the "Demo logins" load_demo prints."""
    logins = output.split("Demo logins", 1)[1].splitlines()[1:]
    return dict(re.match(r"^  (\S+)\s+([^:]+):", line).groups() for line in logins if line.strip())


def test_load_demo_prints_the_counts_of_what_the_catalog_holds_after_loading(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = StringIO()

    call_command("load_demo", stdout=out)

    stores, datasets = DataStore.objects.count(), Dataset.objects.count()
    assert DataStore.objects.filter(name="support-replica").exists()  # the synced warehouse is counted
    assert f"Demo loaded: {stores} stores, {datasets} datasets." in out.getvalue()


def test_load_demo_prints_every_demo_login_with_its_role(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = StringIO()

    call_command("load_demo", stdout=out)

    logins = printed_logins(out.getvalue())
    people = User.objects.filter(is_service_account=False)
    assert set(logins) == set(people.values_list("username", flat=True))
    for user in people.exclude(username="admin").prefetch_related("groups__company_role"):
        roles = [group.company_role.name.lower() for group in user.groups.all()]
        assert roles == [logins[user.username]], user.username
    assert logins["admin"] == "administrator"
    assert logins["priya"] == "platform engineer"


def test_the_readme_lists_the_demo_logins_load_demo_prints(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("load_demo", stdout=out)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()

    personas = readme.split("<!-- The demo personas", 1)[1].split("\n\n", 1)[0]

    listed = dict(re.findall(r"^\| `(\S+)` \| ([^|]+?) \|", personas, flags=re.MULTILINE))

    assert listed == printed_logins(out.getvalue())


def test_the_demo_platform_engineer_tests_and_syncs_the_demo_warehouse(
    db, settings, tmp_path, django_capture_on_commit_callbacks
):
    from catalog.models import SyncRun

    settings.VAR_DIR = tmp_path
    call_command("load_demo")
    store = DataStore.objects.get(name="support-replica")
    priya = Client()
    priya.force_login(User.objects.get(username="priya"))

    page = priya.get(reverse("catalog:store-detail", args=[store.pk])).content.decode()
    assert "Test connection" in page and "Sync now" in page
    tested = priya.post(reverse("catalog:connection-test", args=[store.pk]), HTTP_HX_REQUEST="true")
    assert "Connected to SQLite" in tested.content.decode()
    with django_capture_on_commit_callbacks(execute=True):  # the sync task runs eagerly once queued
        synced = priya.post(reverse("catalog:store-sync", args=[store.pk]))
    run = SyncRun.objects.filter(store=store).latest("pk")
    assert synced["Location"] == reverse("catalog:sync-run-detail", args=[run.pk])
    assert run.requested_by.username == "priya" and run.status == "succeeded"
