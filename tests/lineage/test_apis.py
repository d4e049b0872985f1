"""Walks over the lineage graph: depth, cycles, the node cap, the API's parameters and query counts."""

import pytest
from django.utils import timezone

from catalog.models import Dataset
from lineage.models import Edge, EdgeKind, EdgeLevel, Node, NodeKind
from lineage.selectors import MAX_DEPTH, lineage_walk
from lineage.services import dataset_nodes_ensure
from tests.factories import StoreFactory


@pytest.fixture
def chain(db):
    """d0 -> d1 -> ... -> d7 at dataset level, plus a cycle d7 -> d5 and a branch d1 -> b."""
    store = StoreFactory(name="wh", kind="analytical", platform="postgresql")
    datasets = [Dataset.objects.create(store=store, schema="s", name=f"d{i}") for i in range(8)]
    branch = Dataset.objects.create(store=store, schema="s", name="b")
    nodes = dataset_nodes_ensure([*datasets, branch])
    now = timezone.now()
    pairs = [(datasets[i], datasets[i + 1]) for i in range(7)] + [(datasets[7], datasets[5]), (datasets[1], branch)]
    Edge.objects.bulk_create(
        Edge(source=nodes[a.pk], target=nodes[b.pk], level=EdgeLevel.DATASET, kind=EdgeKind.JOB, first_seen=now, last_seen=now)
        for a, b in pairs
    )
    return datasets, branch, nodes


def names(walk):
    return {node.dataset.name: node.depth for node in walk.nodes}


def test_downstream_stops_at_the_depth_asked_for(chain, reader):
    datasets, branch, nodes = chain
    walk = lineage_walk(user=reader, starts=[nodes[datasets[0].pk]], direction="downstream", depth=2)
    assert names(walk) == {"d0": 0, "d1": 1, "d2": 2, "b": 2}
    assert not walk.partial


def test_a_cycle_is_walked_once_and_each_node_appears_once(chain, reader):
    datasets, _, nodes = chain
    walk = lineage_walk(user=reader, starts=[nodes[datasets[4].pk]], direction="downstream", depth=MAX_DEPTH)
    assert names(walk) == {"d4": 0, "d5": 1, "d6": 2, "d7": 3}
    assert len(walk.nodes) == len({node.pk for node in walk.nodes})
    assert {(e.source.dataset.name, e.target.dataset.name) for e in walk.edges} == {
        ("d4", "d5"), ("d5", "d6"), ("d6", "d7"), ("d7", "d5"),
    }


def test_upstream_depths_are_negative(chain, reader):
    datasets, _, nodes = chain
    walk = lineage_walk(user=reader, starts=[nodes[datasets[3].pk]], direction="upstream", depth=2)
    assert names(walk) == {"d3": 0, "d2": -1, "d1": -2}


def test_the_node_cap_marks_the_walk_partial(chain, reader):
    datasets, _, nodes = chain
    walk = lineage_walk(user=reader, starts=[nodes[datasets[0].pk]], direction="downstream", depth=10, limit=3)
    assert len(walk.nodes) == 4  # the start and three more, nearest first
    assert names(walk) == {"d0": 0, "d1": 1, "d2": 2, "b": 2}
    assert walk.partial


def test_a_wide_fan_out_is_cut_by_the_row_cap_and_says_so(reader, db):
    store = StoreFactory(name="fan", kind="analytical", platform="postgresql")
    root = Dataset.objects.create(store=store, name="root")
    leaves = Dataset.objects.bulk_create(Dataset(store=store, name=f"leaf{i}", qualified_name=f"fan.leaf{i}") for i in range(30))
    nodes = dataset_nodes_ensure([root, *leaves])
    now = timezone.now()
    Edge.objects.bulk_create(
        Edge(source=nodes[root.pk], target=nodes[leaf.pk], level=EdgeLevel.DATASET, kind=EdgeKind.JOB, first_seen=now, last_seen=now)
        for leaf in leaves
    )
    walk = lineage_walk(user=reader, starts=[nodes[root.pk]], direction="downstream", limit=5)
    assert walk.partial and len(walk.nodes) == 6
    full = lineage_walk(user=reader, starts=[nodes[root.pk]], direction="downstream", limit=30)
    assert not full.partial and len(full.nodes) == 31


def test_the_api_returns_nodes_and_edges_for_a_dataset(chain, reader_client):
    datasets, _, _ = chain
    response = reader_client.get(f"/api/v1/datasets/{datasets[2].pk}/lineage/", {"depth": 1})
    assert response.status_code == 200
    body = response.json()
    by_id = {node["id"]: node for node in body["nodes"]}
    assert sorted((node["label"], node["depth"]) for node in body["nodes"]) == [
        ("wh.s.d1", -1), ("wh.s.d2", 0), ("wh.s.d3", 1),
    ]
    assert sorted((by_id[e["source"]]["label"], by_id[e["target"]]["label"]) for e in body["edges"]) == [
        ("wh.s.d1", "wh.s.d2"), ("wh.s.d2", "wh.s.d3"),
    ]
    assert body["partial"] is False and body["level"] == "dataset"
    assert by_id[body["starts"][0]]["dataset"]["url"] == f"/datasets/{datasets[2].pk}/"


@pytest.mark.parametrize(
    "params, field",
    [({"depth": 21}, "depth"), ({"depth": "x"}, "depth"), ({"limit": 0}, "limit"),
     ({"direction": "sideways"}, "direction"), ({"level": "row"}, "level")],
)
def test_bad_walk_parameters_are_named(chain, reader_client, params, field):
    datasets, _, _ = chain
    response = reader_client.get(f"/api/v1/datasets/{datasets[0].pk}/lineage/", params)
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_walk_queries_do_not_grow_with_the_graph(chain, reader_client, django_assert_max_num_queries):
    datasets, _, _ = chain
    reader_client.get(f"/api/v1/datasets/{datasets[0].pk}/lineage/", {"depth": 1})  # warm the session
    with django_assert_max_num_queries(12) as short:
        reader_client.get(f"/api/v1/datasets/{datasets[0].pk}/lineage/", {"depth": 1})
    with django_assert_max_num_queries(12) as long:
        reader_client.get(f"/api/v1/datasets/{datasets[0].pk}/lineage/", {"depth": 20})
    assert len(short) == len(long)


def test_lineage_needs_a_signed_in_user_and_an_existing_dataset(chain, api_client, reader_client):
    datasets, _, _ = chain
    assert api_client.get(f"/api/v1/datasets/{datasets[0].pk}/lineage/").status_code == 401
    assert reader_client.get("/api/v1/datasets/999999/lineage/").status_code == 404


def test_column_lineage_walks_column_edges(registrar, reader_client, store):
    from catalog.services import dataset_register
    from tests.factories import column_payload, registration_payload

    appdb = StoreFactory(name="appdb", kind="transactional", platform="postgresql")
    source, _ = dataset_register(principal=registrar, payload=registration_payload(
        store=appdb, name="public.users", columns=[column_payload("email", sensitivity="Restricted")]))
    target, _ = dataset_register(principal=registrar, payload=registration_payload(
        store=store, name="m.contacts", columns=[column_payload("email", sensitivity="Public", originatingSource="transactional:users")]))
    email = source.columns.get(name="email")

    response = reader_client.get(f"/api/v1/datasets/{source.pk}/columns/{email.pk}/lineage/", {"direction": "downstream"})

    assert response.status_code == 200
    nodes = response.json()["nodes"]
    downstream = [node for node in nodes if node["depth"] == 1]
    assert [(n["dataset"]["qualifiedName"], n["column"]["name"], n["effectiveSensitivity"], n["violation"]) for n in downstream] == [
        (target.qualified_name, "email", "Restricted", True)
    ]
    assert reader_client.get(f"/api/v1/datasets/{target.pk}/columns/{email.pk}/lineage/").status_code == 404


def test_violations_are_listed_with_their_path(registrar, reader_client, store, django_assert_max_num_queries):
    from catalog.services import dataset_register
    from tests.factories import column_payload, registration_payload

    appdb = StoreFactory(name="appdb", kind="transactional", platform="postgresql")
    dataset_register(principal=registrar, payload=registration_payload(
        store=appdb, name="public.users", columns=[column_payload("email", sensitivity="Restricted")]))
    for i in range(3):
        dataset_register(principal=registrar, payload=registration_payload(
            store=store, name=f"m.copy{i}", columns=[column_payload("email", sensitivity="Regular", originatingSource="transactional:users")]))

    reader_client.get("/api/v1/lineage/violations/")
    # 8, and 5 for auditing the Restricted column on the paths (one write for the whole page).
    with django_assert_max_num_queries(13):
        response = reader_client.get("/api/v1/lineage/violations/")

    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3
    assert results[0]["declared"] == "Regular" and results[0]["inflow"] == "Restricted"
    assert [step["label"] for step in results[0]["path"]] == ["appdb.public.users.email", f"{results[0]['dataset']}.email"]
    assert results[0]["owners"] == ["dave"]


def test_jobs_are_listed_with_their_latest_run(token_client, reader_client):
    import uuid

    event = {
        "eventType": "COMPLETE", "eventTime": "2026-11-22T10:00:00Z", "producer": "test",
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "dbt", "name": "marts.orders"},
        "inputs": [{"namespace": "warehouse", "name": "raw.orders"}],
        "outputs": [{"namespace": "warehouse", "name": "marts.orders"}],
    }
    assert token_client.post("/api/v1/lineage", event, format="json").status_code == 202
    jobs = reader_client.get("/api/v1/lineage/jobs/").json()["results"]
    assert [(job["namespace"], job["name"], job["latestRun"]["state"]) for job in jobs] == [("dbt", "marts.orders", "COMPLETE")]
    # Datasets without a schema facet are discovered without a version and still render.
    discovered = Dataset.objects.get(name="orders", schema="raw")
    assert discovered.needs_review and discovered.current_version is None
    detail = reader_client.get(f"/api/v1/datasets/{discovered.pk}/")
    assert detail.status_code == 200 and detail.json()["columns"] is None
    page = reader_client.get(f"/datasets/{discovered.pk}/")
    assert page.status_code == 200 and b"raw.orders" in page.content
    assert reader_client.get("/").status_code == 200
    assert Node.objects.filter(kind=NodeKind.DATASET).count() == 2
