"""The lineage graph in a real browser: drawn from the lineage API, expanded to columns, navigated."""

import re

import pytest
from playwright.sync_api import expect

from catalog.services import dataset_register
from lineage.models import EdgeKind, EdgeLevel
from lineage.sensitivity import sensitivity_refresh
from lineage.services import EdgeSpec, column_nodes_ensure, dataset_nodes_ensure, lineage_edges_upsert
from tests.factories import StoreFactory, UserFactory, column_payload, registration_payload

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"  # UserFactory's


def register(principal, store, name, *columns):
    dataset, _ = dataset_register(
        principal=principal, payload=registration_payload(store=store, name=name, columns=list(columns))
    )
    return dataset


@pytest.fixture
def lineage():
    """appdb.public.reviews -> analytics.marketing.review_sentiment <- mlmodel:Sentiment (an external
    source), and review_sentiment -> analytics.reporting.daily through a masking step.

    review_sentiment declares ReviewID Regular while Sensitive review ids flow in: a violation.
    """
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    UserFactory(username="mia", roles=["data_analyst"])
    appdb = StoreFactory(name="appdb", kind="transactional", platform="postgresql")
    analytics = StoreFactory(name="analytics", kind="analytical", platform="bigquery")
    reviews = register(registrar, appdb, "public.reviews",
                       column_payload("ReviewID", sensitivity="Sensitive"), column_payload("body"))
    sentiment = register(
        registrar, analytics, "marketing.review_sentiment",
        column_payload("ReviewID", sensitivity="Regular", originatingSource="transactional:Reviews"),
        column_payload("Score", type_="FLOAT", originatingSource="mlmodel:Sentiment"),
    )
    daily = register(registrar, analytics, "reporting.daily", column_payload("avg_score", type_="FLOAT"))
    score = column_nodes_ensure(sentiment, ["Score"])["score"]
    average = column_nodes_ensure(daily, ["avg_score"])["avg_score"]
    datasets = dataset_nodes_ensure([sentiment, daily])
    touched = lineage_edges_upsert([
        EdgeSpec(score.pk, average.pk, EdgeLevel.COLUMN, EdgeKind.AGGREGATION, masking=True),
        EdgeSpec(datasets[sentiment.pk].pk, datasets[daily.pk].pk, EdgeLevel.DATASET, EdgeKind.AGGREGATION, masking=True),
    ])
    sensitivity_refresh(node_ids=touched)
    return {"reviews": reviews, "sentiment": sentiment, "daily": daily}


def log_in(page, live_server, username="mia"):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"{live_server.url}/")


def graph_ready(page):
    expect(page.locator("#lineage-graph")).to_have_attribute("data-state", "ready")


def node_point(page, element_id):
    """Where a graph node is drawn, in page coordinates."""
    graph = page.locator("#lineage-graph")
    graph.scroll_into_view_if_needed()
    box = graph.bounding_box()
    position = page.evaluate("(id) => window.lineageGraph.getElementById(id).renderedPosition()", element_id)
    return box["x"] + position["x"], box["y"] + position["y"]


def click_node(page, element_id, *, until, double=False):
    """Click (or double-click) a graph node as a person would. On a loaded machine the page
    may still be settling (a scroll the canvas has not seen yet), so the click is repeated
    at the node's current place until ``until(timeout)`` passes; a node that never responds
    still fails the test."""
    for attempt in range(3):
        point = node_point(page, element_id)
        (page.mouse.dblclick if double else page.mouse.click)(*point)
        try:
            until(3000)
            return
        except AssertionError:
            if attempt == 2:
                raise


def labels(page, selector):
    return page.evaluate(
        "(selector) => window.lineageGraph.nodes(selector).map((node) => node.data('fullLabel')).sort()", selector
    )


def test_graph_draws_upstream_and_downstream_expands_columns_and_opens_a_dataset(live_server, page, lineage,
                                                                               screenshot):
    sentiment, reviews = lineage["sentiment"], lineage["reviews"]
    log_in(page, live_server)

    page.goto(f"{live_server.url}/datasets/{sentiment.pk}/")
    graph_ready(page)
    expect(page.locator("#lineage-graph")).to_have_attribute("data-node-count", "4")
    assert page.evaluate("window.lineageGraph.nodes().length") == 4
    assert page.evaluate("window.lineageGraph.edges().length") == 3
    assert labels(page, "[kind = 'dataset']") == [
        "analytics.marketing.review_sentiment", "analytics.reporting.daily", "appdb.public.reviews",
    ]
    assert labels(page, "[kind = 'source']") == ["mlmodel:Sentiment"]
    # Masking steps are dashed.
    styles = page.evaluate(
        "window.lineageGraph.edges().map((edge) => [edge.data('masking'), edge.style('line-style')])"
    )
    assert sorted(styles) == [[False, "solid"], [False, "solid"], [True, "dashed"]]
    # The same lineage, without JavaScript's help, under the graph.
    expect(page.locator("#lineage-lists")).to_contain_text("appdb.public.reviews")
    expect(page.locator("#lineage-lists")).to_contain_text("analytics.reporting.daily")
    screenshot("lineage-01-graph")

    # Select the dataset, then expand its columns from the panel.
    panel = page.locator("#lineage-panel")
    click_node(page, f"d{sentiment.pk}", until=lambda timeout: expect(panel).to_be_visible(timeout=timeout))
    expect(panel.get_by_role("heading")).to_have_text("analytics.marketing.review_sentiment")
    panel.get_by_role("button", name="Expand columns").click()
    page.wait_for_function("window.lineageGraph.nodes(\"[kind = 'column']\").length === 4")
    parents = page.evaluate(
        "Object.fromEntries(window.lineageGraph.nodes(\"[kind = 'column']\").map("
        "(node) => [node.data('datasetName') + '.' + node.data('fullLabel'), node.parent().data('fullLabel')]))"
    )
    assert parents == {
        "analytics.marketing.review_sentiment.ReviewID": "analytics.marketing.review_sentiment",
        "analytics.marketing.review_sentiment.Score": "analytics.marketing.review_sentiment",
        "appdb.public.reviews.ReviewID": "appdb.public.reviews",
        "analytics.reporting.daily.avg_score": "analytics.reporting.daily",
    }
    # The violation is highlighted on its column.
    assert labels(page, "[kind = 'column'][?violation]") == ["ReviewID"]
    expect(page.locator("#lineage-graph")).to_have_attribute("data-node-count", "8")
    screenshot("lineage-02-columns")

    panel.get_by_role("button", name="Collapse columns").click()
    page.wait_for_function("window.lineageGraph.nodes(\"[kind = 'column']\").length === 0")

    # Double-click opens the dataset's own page.
    reviews_url = f"{live_server.url}/datasets/{reviews.pk}/"
    click_node(page, f"d{reviews.pk}", double=True, until=lambda timeout: expect(page).to_have_url(reviews_url, timeout=timeout))
    graph_ready(page)


def test_direction_and_depth_redraw_the_graph_and_the_lists(live_server, page, lineage):
    sentiment = lineage["sentiment"]
    log_in(page, live_server)
    page.goto(f"{live_server.url}/datasets/{sentiment.pk}/")
    graph_ready(page)

    page.get_by_label("Show", exact=True).select_option("downstream")

    expect(page.locator("#lineage-graph")).to_have_attribute("data-node-count", "2")
    graph_ready(page)
    assert labels(page, "") == ["analytics.marketing.review_sentiment", "analytics.reporting.daily"]
    expect(page).to_have_url(re.compile(r"direction=downstream"))
    lists = page.locator("#lineage-lists")
    expect(lists.get_by_role("heading", name=re.compile("^Downstream"))).to_be_visible()
    expect(lists.get_by_role("heading", name=re.compile("^Upstream"))).to_have_count(0)

    page.get_by_label("Depth", exact=True).select_option("1")
    graph_ready(page)
    expect(page).to_have_url(re.compile(r"depth=1"))


def test_a_dataset_without_lineage_says_so(live_server, page, lineage):
    registrar = UserFactory(username="dave")
    lonely = register(registrar, StoreFactory(name="analytics"), "scratch.lonely", column_payload("id"))
    log_in(page, live_server)

    page.goto(f"{live_server.url}/datasets/{lonely.pk}/")

    expect(page.locator("#lineage-graph")).to_have_attribute("data-state", "empty")
    expect(page.locator(".lineage-graph-message")).to_contain_text("No lineage yet")
    expect(page.locator("#lineage-lists")).to_contain_text("No lineage yet")


def test_a_graph_cut_short_says_so(live_server, page, lineage, monkeypatch):
    from lineage import selectors

    monkeypatch.setattr(selectors, "DEFAULT_LIMIT", 1)  # the live server runs in this process
    monkeypatch.setattr(selectors, "MAX_LIMIT", 1)  # what the page's graph asks for (the lists use the default)
    log_in(page, live_server)

    page.goto(f"{live_server.url}/datasets/{lineage['sentiment'].pk}/")

    graph_ready(page)
    expect(page.locator(".lineage-graph-partial")).to_be_visible()
    expect(page.locator("#lineage-lists")).to_contain_text("Lineage is cut short")
