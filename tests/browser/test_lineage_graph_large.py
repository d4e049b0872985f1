"""The lineage graph of a dataset with 5,000 datasets downstream: drawn, laid out in columns by
hop count (not dagre, which freezes the page at this size) and usable: a node is found by name."""

import random

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from catalog.models import Dataset
from lineage.models import Edge, EdgeKind, EdgeLevel
from lineage.services import dataset_nodes_ensure
from tests.browser.test_lineage_graph import log_in
from tests.factories import StoreFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAYERS = (1, 9, 60, 400, 4530)  # 5,000 datasets, all downstream of the first within 4 hops


@pytest.fixture
def big_lineage():
    UserFactory(username="mia", roles=["data_engineer"])
    store = StoreFactory(name="big", kind="analytical", platform="postgresql")
    rng = random.Random(17)
    datasets, layers = [], []
    for layer, size in enumerate(LAYERS):
        batch = Dataset.objects.bulk_create(
            Dataset(store=store, schema=f"l{layer}", name=f"t{len(datasets) + i:04d}",
                    qualified_name=f"big.l{layer}.t{len(datasets) + i:04d}")
            for i in range(size)
        )
        datasets += batch
        layers.append(batch)
    nodes = dataset_nodes_ensure(datasets)
    now = timezone.now()
    edges = []
    for parents, children in zip(layers, layers[1:]):
        for index, child in enumerate(children):
            parent = parents[index] if index < len(parents) else rng.choice(parents)
            edges.append(Edge(source=nodes[parent.pk], target=nodes[child.pk], level=EdgeLevel.DATASET,
                              kind=EdgeKind.JOB, first_seen=now, last_seen=now))
    Edge.objects.bulk_create(edges)
    return layers


def test_a_graph_of_5000_nodes_is_drawn_and_a_node_is_found_by_name(live_server, page, big_lineage, screenshot):
    root, last = big_lineage[0][0], big_lineage[-1][-1]
    page.set_default_timeout(120_000)
    log_in(page, live_server)

    page.goto(f"{live_server.url}/datasets/{root.pk}/?direction=downstream&depth=5")
    graph = page.locator("#lineage-graph")
    expect(graph).to_have_attribute("data-state", "ready", timeout=240_000)  # a loaded machine takes a while
    expect(graph).to_have_attribute("data-node-count", "5000")
    expect(graph).to_have_attribute("data-layout", "layered")
    expect(page.locator(".lineage-graph-count")).to_contain_text("5000 datasets")
    # Every node has a place of its own: columns by hop count, wrapped into blocks.
    assert page.evaluate(
        "new Set(window.lineageGraph.nodes().map((n) => Math.round(n.position('x')) + ',' + Math.round(n.position('y')))).size"
    ) == 5000
    page.get_by_role("button", name="Fit to view").click()
    screenshot("lineage-large-01-fit")

    finder = page.get_by_label("Find a node in the graph")
    finder.fill(last.qualified_name)
    finder.press("Enter")
    panel = page.locator("#lineage-panel")
    expect(panel.get_by_role("heading")).to_have_text(last.qualified_name, timeout=60_000)
    expect(panel).to_contain_text("Downstream, 4 hops")
    assert page.evaluate("window.lineageGraph.nodes(':selected').map((n) => n.data('fullLabel'))") == [last.qualified_name]
    expect(page.locator(".lineage-graph-find-status")).to_have_text("1 of 1")
    screenshot("lineage-large-02-found")

    finder.fill("no such dataset")
    finder.press("Enter")
    expect(page.locator(".lineage-graph-find-status")).to_have_text("No node matches")
