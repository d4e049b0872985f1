"""The graph walk (``lineage_graph``): the same nodes and edges as ``lineage_walk``, in one
statement whatever the size of the graph, with what the reader may not see hidden in SQL."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import Dataset
from lineage.models import Edge, EdgeKind, EdgeLevel, Node
from lineage.selectors import MAX_DEPTH, lineage_graph, lineage_walk
from lineage.services import dataset_nodes_ensure
from tests.factories import StoreFactory
from tests.lineage.test_apis import chain  # noqa: F401 (a fixture)
from tests.lineage.test_visibility import LEAKS, flow, manager  # noqa: F401 (fixtures)
from tests.lineage.test_views import appdb  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def same_walk(user, starts, **options):
    """The graph and the model walk agree on every node (id, depth, hidden, label) and edge."""
    graph = lineage_graph(user=user, starts=starts, **options)
    walk = lineage_walk(user=user, starts=starts, **options)
    assert [(n["id"], n["depth"], n["hidden"], n["label"]) for n in graph.nodes] == [
        (n.pk, n.depth, n.hidden, n.label) for n in walk.nodes
    ]
    assert sorted((e["id"], e["source"], e["target"], e["touches_hidden"]) for e in graph.edges) == sorted(
        (e.pk, e.source_id, e.target_id, e.touches_hidden) for e in walk.edges
    )
    assert graph.partial == walk.partial
    return graph


@pytest.mark.parametrize("direction", ["upstream", "downstream", "both"])
@pytest.mark.parametrize("depth", [1, 2, MAX_DEPTH])
def test_the_graph_walks_as_lineage_walk_does(chain, reader, direction, depth):  # noqa: F811
    datasets, branch, nodes = chain
    for start in (datasets[0], datasets[4], branch):
        same_walk(reader, [nodes[start.pk]], direction=direction, depth=depth)


def test_a_cycle_through_the_start_shows_each_node_once_upstream_first(chain, reader):  # noqa: F811
    datasets, _, nodes = chain
    graph = same_walk(reader, [nodes[datasets[6].pk]], depth=MAX_DEPTH)
    ids = [node["id"] for node in graph.nodes]
    assert len(ids) == len(set(ids))
    assert {n["name"]: n["depth"] for n in graph.nodes}["wh.s.d7"] == -2  # upstream (d7 -> d5 -> d6) and downstream (d6 -> d7)


def test_the_node_cap_and_the_row_cap_mark_the_graph_partial(chain, reader, db):  # noqa: F811
    datasets, _, nodes = chain
    graph = same_walk(reader, [nodes[datasets[0].pk]], direction="downstream", depth=10, limit=3)
    assert graph.partial and len(graph.nodes) == 4
    store = StoreFactory(name="fan", kind="analytical", platform="postgresql")
    root = Dataset.objects.create(store=store, name="root")
    leaves = Dataset.objects.bulk_create(Dataset(store=store, name=f"leaf{i}", qualified_name=f"fan.leaf{i}") for i in range(30))
    fan = dataset_nodes_ensure([root, *leaves])
    now = timezone.now()
    Edge.objects.bulk_create(
        Edge(source=fan[root.pk], target=fan[leaf.pk], level=EdgeLevel.DATASET, kind=EdgeKind.JOB, first_seen=now, last_seen=now)
        for leaf in leaves
    )
    cut = same_walk(reader, [fan[root.pk]], direction="downstream", limit=5)
    assert cut.partial and len(cut.nodes) == 6
    whole = same_walk(reader, [fan[root.pk]], direction="downstream", limit=30)
    assert not whole.partial and len(whole.nodes) == 31


def test_hidden_nodes_are_decided_as_lineage_hide_invisible_decides(flow, manager, registrar):  # noqa: F811
    rollup_columns = list(Node.objects.filter(dataset=flow["rollup"], kind="column"))
    for user in (manager, registrar):
        dataset_walk = same_walk(user, Node.objects.filter(dataset=flow["rollup"], kind="dataset"), depth=5)
        column_walk = same_walk(user, rollup_columns, level=EdgeLevel.COLUMN, depth=5)
    assert [n["hidden"] for n in column_walk.nodes] == [False, False, False]  # the registrar sees everything
    hidden = [n for n in same_walk(manager, rollup_columns, level=EdgeLevel.COLUMN).nodes if n["hidden"]]
    assert len(hidden) == 2 and dataset_walk.nodes


def test_the_graph_api_names_nothing_hidden(client, flow, manager):  # noqa: F811
    client.force_login(manager)
    for url in (f"/api/v1/datasets/{flow['rollup'].pk}/lineage/",
                f"/api/v1/datasets/{flow['rollup'].pk}/lineage/?level=column&depth=5"):
        page = client.get(url).content.decode()
        assert not any(leak in page for leak in LEAKS)
        assert Node.HIDDEN_LABEL in page


def long_chain(count: int):
    """``count`` datasets in a line, each with a dataset node and an edge to the next."""
    store = StoreFactory(name=f"line{count}", kind="analytical", platform="postgresql")
    datasets = Dataset.objects.bulk_create(
        Dataset(store=store, schema="s", name=f"t{i}", qualified_name=f"line{count}.s.t{i}") for i in range(count)
    )
    nodes = dataset_nodes_ensure(datasets)
    now = timezone.now()
    Edge.objects.bulk_create(
        Edge(source=nodes[a.pk], target=nodes[b.pk], level=EdgeLevel.DATASET, kind=EdgeKind.JOB, first_seen=now, last_seen=now)
        for a, b in zip(datasets, datasets[1:])
    )
    return datasets, nodes


@pytest.mark.parametrize("who", ["reader", "manager"])
def test_a_graph_is_two_statements_at_any_size(request, who, db):
    user = request.getfixturevalue(who)
    counts = []
    for size in (3, 60):
        datasets, nodes = long_chain(size)
        lineage_graph(user=user, starts=[nodes[datasets[0].pk]])  # the reader's roles, read once and kept
        with CaptureQueriesContext(connection) as queries:
            graph = lineage_graph(user=user, starts=[nodes[datasets[0].pk]], direction="downstream", depth=MAX_DEPTH)
        assert len(graph.nodes) == min(size, MAX_DEPTH + 1)
        counts.append(len(queries))
    assert counts == [2, 2]  # the walk, then everything the graph shows of its nodes


def test_the_api_walk_costs_the_same_queries_at_two_graph_sizes(reader_client, db):
    counts = []
    for size in (3, 60):
        datasets, _ = long_chain(size)
        url = f"/api/v1/datasets/{datasets[size // 2].pk}/lineage/"
        reader_client.get(url)  # warm the session
        with CaptureQueriesContext(connection) as queries:
            response = reader_client.get(url, {"depth": MAX_DEPTH})
        assert response.status_code == 200 and len(response.json()["nodes"]) == min(size, 2 * MAX_DEPTH + 1)
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_garbage_collector_is_on_again_after_a_graph(chain, reader):  # noqa: F811
    import gc

    from lineage.selectors import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: the outer one turns it back on
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    datasets, _, nodes = chain
    graph = lineage_graph(user=reader, starts=[nodes[datasets[0].pk]], direction="downstream", depth=3)
    assert graph.nodes and gc.isenabled()
