"""Walk every URL of the project as people who may not see a dataset, and fail if its name shows.

The scene has a dataset nobody below may see (Restricted, in prod, not aggregated) with
distinctive names everywhere: its qualified name, its columns, the external source that feeds
it, the job that copies it onward. Around it is everything that could name it: a visible
aggregated dataset fed by it (lineage at dataset and column level, a violation), a sync run of
their store with events for both and an error naming a warehouse object, a classification
suggestion, an access request and its grant by someone else, audit events, and mail.

Every URL pattern (``get_resolver``, filled as ``tests/access/test_permission_walk.py`` fills
them, once with the visible dataset and once with the hidden one) is fetched with GET, plain
and with the query strings that change what a page shows, by a signed-in user without a role,
the same user owning the visible dataset, and a product manager (aggregated datasets only).
No response body or header, HTML or JSON, htmx partial or export, may contain a hidden name.
"""

import uuid

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.db import transaction
from django.test import Client
from django.utils import timezone

from access import grants
from access.models import MetadataProposal, RolePermission
from access.notifications import access_notify
from catalog.models import ColumnSuggestion, Connection, SyncOutcome, SyncRun, SyncRunEvent, SyncStatus
from catalog.notifications import breaking_changes_notify
from lineage.models import EdgeKind, EdgeLevel, Job, Run
from lineage.sensitivity import sensitivity_refresh
from lineage.services import EdgeSpec, column_nodes_ensure, dataset_nodes_ensure, job_ensure, lineage_edges_upsert
from tests.access.test_permission_walk import QUERIES, fill, lineage_job_touching, url_patterns
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create, service_account_with_key

pytestmark = pytest.mark.django_db

STORE = "visstore"
HIDDEN_NAME = "secret.hidden_dossier_xyz"
HIDDEN_QUALIFIED = f"{STORE}.{HIDDEN_NAME}"
HIDDEN_COLUMNS = ("dossier_ssn_qqq", "dossier_note_qqq", "dossier_gone_qqq")
HIDDEN_SOURCE = "HiddenFeedXyz"
HIDDEN_JOB = "HiddenJobXyz"
# What must never reach the principals below, in any spelling case.
SECRETS = ("hidden_dossier_xyz", HIDDEN_QUALIFIED, *HIDDEN_COLUMNS, HIDDEN_SOURCE, HIDDEN_JOB)

PRINCIPALS = ("no_role", "no_role_owner", "product_manager")

# Query strings that change what a GET shows (besides none, and the ones the permission walk needs).
EXTRA_QUERIES = {
    "catalog:dataset-list": ["?q=dossier", f"?store={STORE}"],
    "api:dataset-list": ["?q=dossier", f"?store={STORE}"],
    "catalog:dataset-detail": ["?depth=20", "?direction=upstream&depth=20"],
    "api:dataset-lineage": ["?depth=20", "?level=column&depth=20", "?direction=upstream&level=column"],
    "api:column-lineage": ["?depth=20", "?direction=upstream"],
    "catalog:sync-run-detail": ["?outcome=error", "?outcome=new", "?outcome=breaking"],
    "catalog:sync-run-progress": ["?polling=1", "?polling=1&outcome=error"],
    "api:sync-run-event-list": ["?outcome=error", "?outcome=new"],
    "catalog:suggestion-list": ["?status=", f"?status=&store={STORE}"],
    "api:suggestion-list": ["?status=pending", f"?store={STORE}"],
    "access:audit-list": ["?action=metadata"],
    "lineage:job-list": ["?jobType=MODEL", "?q=hidden", "?integration=DBT&jobType=MODEL"],
    "api:lineage-job-list": ["?jobType=MODEL&integration=DBT", "?q=Hidden"],
}


def _link_columns(source, source_column, target, target_column, *, job=None, description=""):
    source_node = column_nodes_ensure(source, [source_column])[source_column.lower()]
    target_node = column_nodes_ensure(target, [target_column])[target_column.lower()]
    nodes = dataset_nodes_ensure([source, target])
    job_id = job.pk if job else None
    return [
        EdgeSpec(source_node.pk, target_node.pk, EdgeLevel.COLUMN, EdgeKind.COPY, description=description, job_id=job_id),
        EdgeSpec(nodes[source.pk].pk, nodes[target.pk].pk, EdgeLevel.DATASET, EdgeKind.COPY, description=description,
                 job_id=job_id),
    ]


@pytest.fixture
def scene(db):
    users = {
        "no_role": UserFactory(username="vis_nobody"),
        "no_role_owner": UserFactory(username="vis_owner_nobody"),
        "product_manager": UserFactory(username="vis_pm", roles=["product_manager"]),
        "owner": UserFactory(username="vis_engineer", roles=["data_engineer"]),
        "requester": UserFactory(username="vis_scientist", roles=["data_scientist"]),
        "security": UserFactory(username="vis_security", roles=["security_engineer"]),
        "admin": UserFactory(username="vis_admin", is_staff=True, is_superuser=True),
    }
    owner = users["owner"]
    store = StoreFactory(name=STORE, environment="prod", platform="postgresql")
    Connection.objects.create(store=store, host="127.0.0.1", port=1, database="nowhere", username="nobody")
    hidden = dataset_create(
        principal=owner, store=store, name=HIDDEN_NAME, owners=[owner.username],
        description="Dossiers of people (hidden_dossier_xyz)",
        columns=[
            column_payload("dossier_ssn_qqq", sensitivity="Restricted", originatingSource=f"vendor:{HIDDEN_SOURCE}"),
            column_payload("dossier_note_qqq", originatingSource="vendor:SharedFeedAbc"),
            column_payload("dossier_gone_qqq"),
        ],
    )
    visible = dataset_create(
        principal=owner, store=store, name="shared.orders_rollup", owners=[owner.username, "vis_owner_nobody"],
        tags=["aggregated"],
        columns=[column_payload("order_total"), column_payload("customer_ref", originatingSource="vendor:SharedFeedAbc")],
    )
    # The hidden dataset flows into the visible one (a violation: Restricted into Regular, unmasked).
    job = job_ensure(namespace="etl", name=HIDDEN_JOB, description="Copies hidden_dossier_xyz onward")
    specs = _link_columns(hidden, "dossier_ssn_qqq", visible, "customer_ref", job=job,
                          description="dossier_ssn_qqq copied as is")
    sensitivity_refresh(node_ids=lineage_edges_upsert(specs))
    # A breaking version of the hidden dataset (a column removed), as a sync would find it.
    hidden = dataset_create(
        principal=owner, store=store, name=HIDDEN_NAME,
        columns=[
            column_payload("dossier_ssn_qqq", sensitivity="Restricted", originatingSource=f"vendor:{HIDDEN_SOURCE}"),
            column_payload("dossier_note_qqq", originatingSource="vendor:SharedFeedAbc"),
        ],
    )
    # A pending proposal on it: its owner lowers a column (someone else must approve).
    dataset_create(
        principal=owner, store=store, name=HIDDEN_NAME,
        columns=[
            column_payload("dossier_ssn_qqq", sensitivity="Restricted", originatingSource=f"vendor:{HIDDEN_SOURCE}"),
            column_payload("dossier_note_qqq", sensitivity="Public", originatingSource="vendor:SharedFeedAbc"),
        ],
    )
    proposal = MetadataProposal.objects.get(dataset=hidden)
    hidden.refresh_from_db()

    now = timezone.now()
    run = SyncRun.objects.create(
        store=store, status=SyncStatus.FAILED, trigger="manual", requested_by=owner, started_at=now, finished_at=now,
        objects_total=3, objects_done=3, new_count=1, changed_count=1, failed_count=1, suggestion_count=1,
        cursor=HIDDEN_QUALIFIED,
        message="Could not read schema secret: permission denied for table hidden_dossier_xyz_archive",
    )
    SyncRunEvent.objects.bulk_create([
        SyncRunEvent(run=run, object_name=HIDDEN_QUALIFIED, dataset=hidden, outcome=SyncOutcome.BREAKING,
                     message="removed dossier_gone_qqq"),
        SyncRunEvent(run=run, object_name=visible.qualified_name, dataset=visible, outcome=SyncOutcome.NEW,
                     message="2 columns"),
        SyncRunEvent(run=run, object_name=f"{HIDDEN_QUALIFIED}_archive", outcome=SyncOutcome.ERROR,
                     message="The catalog could not store this object; the worker log has details."),
    ])
    suggestion = ColumnSuggestion.objects.create(
        dataset=hidden, column=hidden.columns.get(name="dossier_note_qqq"), label="national_id", sensitivity=3,
        confidence=0.9, evidence={"name": "matches dossier"}, run=run,
    )

    request = grants.access_request_create(
        principal=users["requester"], dataset=hidden, level="read", duration=4, ticket="SEC-1",
        justification="Fraud case on hidden_dossier_xyz",
    )
    grants.access_request_review(principal=owner, request=request, approve=True)
    grants.access_request_review(principal=users["security"], request=request, approve=True)
    request.refresh_from_db()
    grant = request.grant
    grants.restricted_metadata_viewed(principal=users["security"], dataset=hidden)
    steward, steward_group = UserFactory(username="vis_steward"), Group.objects.create(name="vis-stewards")
    grants.dataset_steward_add(principal=owner, dataset=hidden, user=steward)
    grants.dataset_steward_add(principal=owner, dataset=hidden, group=steward_group)

    mail.outbox = []
    breaking_changes_notify(run_id=run.pk, dataset_ids=[hidden.pk])
    for kind in ("request_created", "request_decided"):
        access_notify(kind, request_id=request.pk)
    for kind in ("break_glass", "grant_ended", "enforcement_failed"):
        access_notify(kind, grant_id=grant.pk)

    cell = RolePermission.objects.get(role__slug="data_scientist", environment="prod", sensitivity=3)
    service_account, _ = service_account_with_key(username="vis_pipeline")
    # A visible job whose SQL names the hidden dataset, the parent run of a run of the hidden job.
    visible_job, visible_run = lineage_job_touching(
        visible, "order_total", "customer_ref", name="shared.rollup_model",
        sql="select d.dossier_ssn_qqq as customer_ref from secret.hidden_dossier_xyz d")
    hidden_job = Job.objects.get(name=HIDDEN_JOB)
    Job.objects.filter(pk=hidden_job.pk).update(
        job_type="MODEL", integration="DBT", sql="select dossier_ssn_qqq from secret.hidden_dossier_xyz")
    hidden_run = Run.objects.create(run_id=uuid.uuid4(), job=hidden_job, state="COMPLETE", last_event_time=now,
                                    parent=visible_run, parent_run_id=visible_run.run_id,
                                    notes=[f"Other owners for {HIDDEN_QUALIFIED} were proposed for review."])
    return {"jobs": {"visible": visible_job, "hidden": hidden_job},
            "lineage_runs": {"visible": visible_run, "hidden": hidden_run},
        "users": users, "store": store, "hidden": hidden, "visible": visible, "run": run, "suggestion": suggestion,
        "service_account": service_account, "service_token": service_account.service_tokens.get(),
        "request": request, "grant": grant, "cell": cell, "steward": steward, "steward_group": steward_group,
        "proposal": proposal, "mail": list(mail.outbox),
    }


def filled(scene, which: str) -> dict:
    """The scene as ``fill`` of the permission walk takes it, its dataset the ``which`` one."""
    dataset = scene[which]
    column_name = "customer_ref" if which == "visible" else "dossier_ssn_qqq"
    return {**scene, "dataset": dataset, "column": dataset.columns.get(name=column_name),
            "job": scene["jobs"][which], "lineage_run": scene["lineage_runs"][which]}


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    found = []
    for secret in SECRETS:
        at = lowered.find(secret.lower())
        if at >= 0:
            found.append(f"{secret!r} in …{text[max(0, at - 80):at + len(secret) + 40]!r}…")
    return found


def _get(client, url, **headers):
    with transaction.atomic():
        response = client.get(url, **headers)
        if hasattr(response, "streaming_content"):
            body = b"".join(response.streaming_content)
        else:
            body = response.content
        transaction.set_rollback(True)
    header_text = "\n".join(f"{name}: {value}" for name, value in response.items())
    return response, header_text + "\n" + body.decode("utf-8", errors="replace")


def test_the_scene_hides_the_dataset_from_the_walkers_and_shows_the_rest(scene):
    from catalog.selectors import dataset_visible

    for principal in PRINCIPALS:
        seen = set(dataset_visible(user=scene["users"][principal]).values_list("pk", flat=True))
        assert scene["hidden"].pk not in seen
        assert (scene["visible"].pk in seen) == (principal != "no_role")
    assert scene["hidden"].sensitivity == 3


@pytest.mark.parametrize("which", ["visible", "hidden"])
@pytest.mark.parametrize("principal", PRINCIPALS)
def test_no_response_names_a_dataset_the_reader_may_not_see(scene, principal, which):
    client = Client()
    client.force_login(scene["users"][principal])
    values = filled(scene, which)
    problems = []
    for key, route, _pattern in url_patterns():
        url, missing = fill(route, values)
        if missing:
            problems.append(f"{key} ({route}): fill() has no value for {', '.join(missing)}")
            continue
        queries = [""]
        if key in QUERIES:
            queries.append(QUERIES[key](values))
        queries += EXTRA_QUERIES.get(key, [])
        for query in queries:
            for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
                response, text = _get(client, url + query, **headers)
                if "logout" in key:
                    client.force_login(scene["users"][principal])
                if response.status_code >= 500:
                    problems.append(f"GET {url}{query} [{key}] -> {response.status_code}")
                for leak in leaks(text):
                    problems.append(f"GET {url}{query} [{key}]{' (htmx)' if headers else ''} "
                                    f"-> {response.status_code}: {leak}")
    assert not problems, f"{principal}, walking with the {which} dataset:\n" + "\n".join(problems)


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_no_mail_names_a_dataset_the_reader_may_not_see(scene, principal):
    address = scene["users"][principal].email
    received = [message for message in scene["mail"] if address in message.to]
    if principal == "no_role_owner":
        assert received, "the owner of the downstream dataset is told of the breaking change upstream"
    for message in received:
        assert not leaks(message.subject + "\n" + message.body), message.subject


# What the walk relies on, stated one by one ------------------------------------------------------


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_store_dataset_counts_count_only_visible_datasets(scene, django_assert_max_num_queries):
    manager, admin = _client(scene["users"]["product_manager"]), _client(scene["users"]["admin"])

    def count(client):
        return next(s["datasetCount"] for s in client.get("/api/v1/stores/").json() if s["name"] == STORE)

    assert (count(manager), count(admin)) == (1, 2)
    for index in range(5):  # more stores and datasets: the same queries (a correlated count per store row)
        store = StoreFactory(name=f"more{index}", environment="prod")
        dataset_create(principal=scene["users"]["owner"], store=store, name=f"s.t{index}", columns=[column_payload("c")])
    with django_assert_max_num_queries(4):
        manager.get("/api/v1/stores/")
    page = manager.get(f"/stores/{scene['store'].pk}/").content.decode()
    assert "1 dataset<" in page.replace("\n", "")


def test_the_run_lists_only_events_the_reader_may_see_and_says_how_many_are_left_out(scene):
    manager, engineer = _client(scene["users"]["product_manager"]), _client(
        UserFactory(username="vis_platform", roles=["platform_engineer"]))
    run = scene["run"]

    page = manager.get(f"/syncs/{run.pk}/")
    assert [event.object_name for event in page.context["events"]] == [scene["visible"].qualified_name]
    assert page.context["event_total"] == 1 and page.context["events_left_out"] == 2
    assert {value: count for value, _, count in page.context["outcome_choices"]}["breaking"] == 0
    assert "2 more objects of this run are left out" in page.content.decode()
    body = manager.get(f"/api/v1/syncs/{run.pk}/").json()
    assert body["message"] == "Store managers (platform engineers and admins) see why on this page."

    # A store manager (who sees every dataset here) gets everything, errors about warehouse objects too.
    events = engineer.get(f"/api/v1/syncs/{run.pk}/events/").json()["results"]
    assert sorted(event["objectName"] for event in events) == sorted(
        [HIDDEN_QUALIFIED, scene["visible"].qualified_name, f"{HIDDEN_QUALIFIED}_archive"])
    assert "hidden_dossier_xyz_archive" in engineer.get(f"/api/v1/syncs/{run.pk}/").json()["message"]
    assert engineer.get(f"/syncs/{run.pk}/").context["events_left_out"] == 0


def test_a_source_feeding_only_hidden_datasets_is_hidden_and_one_feeding_a_visible_dataset_is_not(scene):
    url = f"/api/v1/datasets/{scene['visible'].pk}/lineage/?direction=upstream&depth=5"
    manager_nodes = _client(scene["users"]["product_manager"]).get(url).json()
    sources = {node["label"]: node for node in manager_nodes["nodes"] if node["kind"] == "source"}
    assert set(sources) == {"vendor:SharedFeedAbc", "A source you may not see"}
    assert sources["A source you may not see"]["hidden"] is True
    assert sources["A source you may not see"]["sourceKind"] == ""
    hidden_ids = {node["id"] for node in manager_nodes["nodes"] if node["hidden"]}
    assert all(edge["job"] is None for edge in manager_nodes["edges"] if {edge["source"], edge["target"]} & hidden_ids)

    admin_nodes = _client(scene["users"]["admin"]).get(url).json()["nodes"]
    assert f"vendor:{HIDDEN_SOURCE}" in {node["label"] for node in admin_nodes}


def _restricted_views(user):
    from access.models import AuditEvent

    return list(AuditEvent.objects.filter(action="metadata.restricted_viewed", actor=user).order_by("id")
                .values_list("details", flat=True))


def test_every_display_of_restricted_column_metadata_is_audited(scene):
    hidden = scene["hidden"]
    ssn = hidden.columns.get(name="dossier_ssn_qqq")
    scientist = scene["users"]["requester"]  # sees Restricted prod metadata, may ask for it
    security = UserFactory(username="vis_security_two", roles=["security_engineer"])
    client = _client(scientist)

    assert client.get(f"/access/request/{hidden.pk}/").status_code == 200
    assert client.get(f"/api/v1/datasets/{hidden.pk}/columns/{ssn.pk}/lineage/").status_code == 200
    assert client.get(f"/api/v1/datasets/{hidden.pk}/lineage/?level=column").status_code == 200
    assert client.get(f"/datasets/{hidden.pk}/columns/{ssn.pk}/impact/").status_code == 200
    assert client.get(f"/api/v1/datasets/{hidden.pk}/lineage/").status_code == 200  # datasets only: no columns shown

    assert _restricted_views(scientist) == [
        {"via": "page:request"},
        {"via": "api:column-lineage", "columns": ["dossier_ssn_qqq"]},
        {"via": "api:lineage", "columns": ["dossier_ssn_qqq"]},
        {"via": "page:column-impact", "columns": ["dossier_ssn_qqq"]},
    ]
    # The violation downstream shows its path from the Restricted column.
    reviewer = _client(security)
    assert reviewer.get("/lineage/violations/").status_code == 200
    assert reviewer.get("/api/v1/lineage/violations/").status_code == 200
    assert _restricted_views(security) == [
        {"via": "page:violations", "columns": ["dossier_ssn_qqq"]},
        {"via": "api:violations", "columns": ["dossier_ssn_qqq"]},
    ]


def test_nothing_is_audited_where_no_restricted_column_shows(scene):
    manager = scene["users"]["product_manager"]
    client = _client(manager)
    client.get(f"/api/v1/datasets/{scene['visible'].pk}/lineage/?level=column&direction=upstream")
    client.get("/lineage/violations/")  # the path's Restricted step is hidden from them
    assert _restricted_views(manager) == []
