"""The lineage pages: the dataset page's lineage, a column's impact, violations, and the
downstream impact of a breaking version."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from access.models import RolePermission
from catalog.services import dataset_register
from lineage import selectors as lineage_selectors
from lineage import views as lineage_views
from lineage.models import EdgeKind, EdgeLevel, Node, NodeKind
from lineage.sensitivity import sensitivity_refresh
from lineage.services import EdgeSpec, column_nodes_ensure, dataset_nodes_ensure, lineage_edges_upsert
from tests.factories import StoreFactory, UserFactory, column_payload, registration_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def appdb(db):
    return StoreFactory(name="appdb", kind="transactional", platform="postgresql")


@pytest.fixture
def reader_web(client, reader):
    client.force_login(reader)
    return client


def register(principal, store, name, *columns, owners=None):
    extra = {"owners": owners} if owners is not None else {}
    dataset, _ = dataset_register(
        principal=principal, payload=registration_payload(store=store, name=name, columns=list(columns), **extra)
    )
    return dataset


def link(source_dataset, source_column, target_dataset, target_column, *, masking=False, kind=EdgeKind.TRANSFORMATION):
    """A column edge and the dataset edge that carries it, as a pipeline's lineage would add them."""
    source = column_nodes_ensure(source_dataset, [source_column])[source_column.lower()]
    target = column_nodes_ensure(target_dataset, [target_column])[target_column.lower()]
    datasets = dataset_nodes_ensure([source_dataset, target_dataset])
    touched = lineage_edges_upsert(
        [
            EdgeSpec(source.pk, target.pk, EdgeLevel.COLUMN, kind, masking=masking),
            EdgeSpec(datasets[source_dataset.pk].pk, datasets[target_dataset.pk].pk, EdgeLevel.DATASET, kind,
                     masking=masking),
        ]
    )
    sensitivity_refresh(node_ids=touched)


@pytest.fixture
def chain(registrar, appdb, store):
    """users.email (Sensitive) -> digest.reviewer_email (Regular: a violation) -> queue.reviewer_email,
    and users.email -> audience.email_masked through a masking step."""
    for username in ("pete", "sofia", "mia"):
        UserFactory(username=username, first_name=username.capitalize())
    users = register(
        registrar, appdb, "public.users",
        column_payload("user_id", sensitivity="Regular"), column_payload("email", sensitivity="Sensitive"),
        owners=["dave"],
    )
    digest = register(
        registrar, store, "reporting.review_digest",
        column_payload("user_id", originatingSource="transactional:users"),
        column_payload("reviewer_email", sensitivity="Regular"),
        owners=["pete"],
    )
    queue = register(registrar, store, "reporting.moderation_queue", column_payload("reviewer_email"), owners=["sofia"])
    audience = register(registrar, store, "marketing.audience", column_payload("email_masked"), owners=["mia"])
    link(users, "email", digest, "reviewer_email")
    link(digest, "reviewer_email", queue, "reviewer_email", kind=EdgeKind.COPY)
    link(users, "email", audience, "email_masked", masking=True)
    return {"users": users, "digest": digest, "queue": queue, "audience": audience}


def column_id(dataset, name):
    return dataset.columns.get(name=name).pk


def text(response) -> str:
    """The page's text without tags (inline ones joined to their neighbours), spaces collapsed."""
    content = re.sub(r"</?(wbr|strong)>", "", response.content.decode())
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", content))


# Who may open what ------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["violations", "impact", "detail"])
def test_anonymous_is_sent_to_login(client, chain, page):
    digest = chain["digest"]
    url = {
        "violations": reverse("lineage:violation-list"),
        "impact": reverse("lineage:column-impact", args=[digest.pk, column_id(digest, "reviewer_email")]),
        "detail": reverse("catalog:dataset-detail", args=[digest.pk]),
    }[page]

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_impact_of_an_unknown_dataset_is_404(reader_web, chain):
    digest = chain["digest"]
    url = reverse("lineage:column-impact", args=[999_999, column_id(digest, "reviewer_email")])

    assert reader_web.get(url).status_code == 404


def test_impact_of_an_unknown_column_is_404(reader_web, chain):
    assert reader_web.get(reverse("lineage:column-impact", args=[chain["digest"].pk, 999_999])).status_code == 404


def test_impact_of_another_datasets_column_is_404(reader_web, chain):
    url = reverse("lineage:column-impact", args=[chain["digest"].pk, column_id(chain["users"], "email")])

    assert reader_web.get(url).status_code == 404


def test_main_navigation_links_to_violations(reader_web):
    response = reader_web.get(reverse("lineage:violation-list"))

    assert f'<a href="{reverse("lineage:violation-list")}" aria-current="page">Violations</a>' in response.content.decode()


# The dataset page -------------------------------------------------------------------------


def test_dataset_page_lists_upstream_and_downstream_with_hops_and_owners(reader_web, chain):
    response = reader_web.get(reverse("catalog:dataset-detail", args=[chain["digest"].pk]))

    assert response.status_code == 200
    upstream = [(row.node.label, row.hops) for row in response.context["lineage_upstream"]]
    downstream = [(row.node.label, row.hops) for row in response.context["lineage_downstream"]]
    assert upstream == [("appdb.public.users", 1)]
    assert downstream == [("analytics.reporting.moderation_queue", 1)]
    queue_row = response.context["lineage_downstream"][0]
    assert [owner.username for owner in queue_row.owners] == ["sofia"]
    page = text(response)
    assert "Upstream 1" in page and "Downstream 1" in page
    assert "analytics.reporting.moderation_queue" in page


def test_dataset_page_shows_a_downstream_datasets_effective_sensitivity_when_higher(reader_web, chain):
    response = reader_web.get(reverse("catalog:dataset-detail", args=[chain["users"].pk]))

    rows = {row.node.label: row for row in response.context["lineage_downstream"]}
    assert (rows["analytics.reporting.review_digest"].effective, rows["analytics.reporting.review_digest"].higher) == (
        "Sensitive", True,
    )
    # The masking step keeps the audience at what it declares.
    assert rows["analytics.marketing.audience"].higher is False


def test_dataset_page_follows_the_direction_and_depth_in_the_url(reader_web, chain):
    url = reverse("catalog:dataset-detail", args=[chain["users"].pk])

    one_hop = reader_web.get(url, {"direction": "downstream", "depth": "1"})
    two_hops = reader_web.get(url, {"direction": "downstream", "depth": "2"})
    upstream = reader_web.get(url, {"direction": "upstream"})

    assert {row.node.label for row in one_hop.context["lineage_downstream"]} == {
        "analytics.reporting.review_digest", "analytics.marketing.audience",
    }
    assert "analytics.reporting.moderation_queue" in {row.node.label for row in two_hops.context["lineage_downstream"]}
    assert upstream.context["lineage_downstream"] == []
    assert "No lineage upstream yet" in text(upstream)
    assert '<option value="2" selected>2 hops</option>' in two_hops.content.decode()


def test_dataset_page_ignores_a_bad_direction_or_depth(reader_web, chain):
    response = reader_web.get(
        reverse("catalog:dataset-detail", args=[chain["digest"].pk]), {"direction": "sideways", "depth": "x"}
    )

    assert response.status_code == 200
    assert (response.context["lineage_direction"], response.context["lineage_depth"]) == ("both", 3)


def test_dataset_page_without_lineage_shows_an_empty_state(reader_web, registrar, store):
    lonely = register(registrar, store, "scratch.lonely", column_payload("id"))

    response = reader_web.get(reverse("catalog:dataset-detail", args=[lonely.pk]))

    assert response.status_code == 200
    assert "No lineage yet" in text(response)


def test_dataset_page_says_when_lineage_is_cut_short(reader_web, chain, monkeypatch):
    monkeypatch.setattr(lineage_selectors, "DEFAULT_LIMIT", 1)

    response = reader_web.get(reverse("catalog:dataset-detail", args=[chain["users"].pk]))

    assert response.context["lineage_partial"] is True
    assert "Lineage is cut short" in text(response)


def test_dataset_page_has_the_graph_wired_to_the_lineage_api(reader_web, chain):
    digest = chain["digest"]

    content = reader_web.get(reverse("catalog:dataset-detail", args=[digest.pk])).content.decode()

    assert f'data-graph-url="{reverse("api:dataset-lineage", args=[digest.pk])}"' in content
    assert "vendor/cytoscape.min.js" in content and "vendor/cytoscape-dagre.min.js" in content
    assert "js/lineage-graph.js" in content


def test_column_table_shows_effective_sensitivity_and_links_the_violation(reader_web, chain):
    digest = chain["digest"]

    response = reader_web.get(reverse("catalog:dataset-detail", args=[digest.pk]))

    columns = {column["name"]: column["lineage"] for column in response.context["columns"]}
    assert columns["reviewer_email"]["effective"] == "Sensitive"
    assert columns["reviewer_email"]["higher"] and columns["reviewer_email"]["violation"]
    assert not columns["user_id"].get("violation")
    content = response.content.decode()
    assert f'<a class="violation-flag" href="{reverse("lineage:violation-list")}"' in content
    assert '<tr class="row-violation">' in content


def test_each_column_links_to_its_impact(reader_web, chain):
    digest = chain["digest"]

    content = reader_web.get(reverse("catalog:dataset-detail", args=[digest.pk])).content.decode()

    for name in ("user_id", "reviewer_email"):
        assert f'href="{reverse("lineage:column-impact", args=[digest.pk, column_id(digest, name)])}"' in content


def _detail_queries(client, dataset) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("catalog:dataset-detail", args=[dataset.pk]))
    assert response.status_code == 200
    return len(captured)


def test_dataset_page_query_count_does_not_grow_with_lineage(reader_web, registrar, store, django_assert_max_num_queries):
    hub = register(registrar, store, "hub.events", column_payload("id"), column_payload("email", sensitivity="Sensitive"))
    first = register(registrar, store, "out.first", column_payload("id"), owners=["dave"])
    link(hub, "id", first, "id")
    # 15, the dataset's pending proposals, and the reader's own access (columns, live grants, pending
    # requests, the decision on write and on read)
    with django_assert_max_num_queries(21):
        few = _detail_queries(reader_web, hub)

    # More columns, more of them with lineage, more datasets downstream.
    hub = register(registrar, store, "hub.events", column_payload("id"), column_payload("email", sensitivity="Sensitive"),
                   *[column_payload(f"extra{index}") for index in range(8)])
    for index in range(12):
        downstream = register(registrar, store, f"out.more{index}", column_payload("id"), column_payload("email"),
                              owners=["dave", "mia"])
        link(hub, "email", downstream, "email")
        link(hub, f"extra{index % 8}", downstream, "id")
    with django_assert_max_num_queries(21):
        many = _detail_queries(reader_web, hub)

    assert few == many


# Column impact --------------------------------------------------------------------------


def test_column_impact_groups_everything_downstream_by_dataset(reader_web, chain):
    users = chain["users"]

    response = reader_web.get(reverse("lineage:column-impact", args=[users.pk, column_id(users, "email")]))

    assert response.status_code == 200
    entries = {entry["dataset"].qualified_name: entry for entry in response.context["impact"]["datasets"]}
    assert set(entries) == {
        "analytics.reporting.review_digest", "analytics.reporting.moderation_queue", "analytics.marketing.audience",
    }
    assert entries["analytics.reporting.moderation_queue"]["depth"] == 2
    assert [column.name for column in entries["analytics.reporting.review_digest"]["columns"]] == ["reviewer_email"]
    assert [owner.username for owner in entries["analytics.marketing.audience"]["owners"]] == ["mia"]
    page = text(response)
    assert "3 datasets · 3 columns downstream" in page
    assert "Sofia (sofia)" in page


def test_column_impact_of_a_column_nothing_reads_is_empty(reader_web, chain):
    queue = chain["queue"]

    response = reader_web.get(reverse("lineage:column-impact", args=[queue.pk, column_id(queue, "reviewer_email")]))

    assert response.status_code == 200
    page = text(response)
    assert "No column downstream" in page
    assert "Nothing is recorded downstream of the dataset either." in page


def test_column_impact_shows_the_dataset_level_downstream_beside_the_column_level(reader_web, registrar, store, chain):
    digest = chain["digest"]
    secret = register(registrar, store, "vault.digest_copy", column_payload("reviewer_email", sensitivity="Restricted"))
    secret.owners.clear()
    digest_node, secret_node = (dataset_nodes_ensure([digest, secret])[d.pk] for d in (digest, secret))
    lineage_edges_upsert([EdgeSpec(digest_node.pk, secret_node.pk, EdgeLevel.DATASET, EdgeKind.COPY)])
    # The analyst's roles do not show Restricted data in this store's environment here: the copy is hidden.
    RolePermission.objects.filter(role__slug="data_analyst", environment=store.environment, sensitivity=3).update(standing=0)
    # user_id of the digest feeds no column, but the digest feeds the moderation queue and the copy.
    response = reader_web.get(reverse("lineage:column-impact", args=[digest.pk, column_id(digest, "user_id")]))
    assert response.status_code == 200
    page = text(response)
    assert "column-level lineage" in page
    assert "No column downstream" in page
    assert "The dataset itself has downstream datasets (below)" in page
    section = response.content.decode().split('id="dataset-downstream"')[1].split("</section>")[0]
    assert "moderation_queue" in section
    assert "1 more dataset you may not see" in section and "digest_copy" not in response.content.decode()


def test_column_impact_says_when_the_walk_is_cut_short(reader_web, chain, monkeypatch):
    real = lineage_selectors.lineage_impact
    monkeypatch.setattr(lineage_views.selectors, "lineage_impact", lambda **kwargs: {**real(**kwargs), "partial": True})
    users = chain["users"]

    response = reader_web.get(reverse("lineage:column-impact", args=[users.pk, column_id(users, "email")]))

    assert "The walk was cut short" in text(response)


def test_column_impact_query_count_does_not_grow_with_downstream(reader_web, registrar, store,
                                                                 django_assert_max_num_queries):
    hub = register(registrar, store, "hub.events", column_payload("email", sensitivity="Sensitive"))
    url = reverse("lineage:column-impact", args=[hub.pk, column_id(hub, "email")])
    link(hub, "email", register(registrar, store, "out.first", column_payload("email"), owners=["dave"]), "email")
    # (+5: the dataset-level downstream beside the column's)
    with django_assert_max_num_queries(15), CaptureQueriesContext(connection) as few:
        assert reader_web.get(url).status_code == 200

    for index in range(12):
        downstream = register(registrar, store, f"out.more{index}", column_payload("email"), owners=["dave", "mia"])
        link(hub, "email", downstream, "email")
    with django_assert_max_num_queries(15), CaptureQueriesContext(connection) as many:
        assert reader_web.get(url).status_code == 200

    assert len(few) == len(many)


# Violations -------------------------------------------------------------------------------


def test_violations_page_lists_each_violation_with_its_path(reader_web, chain):
    response = reader_web.get(reverse("lineage:violation-list"))

    assert response.status_code == 200
    rows = {(v["node"].dataset.qualified_name, v["node"].name): v for v in response.context["violations"]}
    assert set(rows) == {
        ("analytics.reporting.review_digest", "reviewer_email"),
        ("analytics.reporting.moderation_queue", "reviewer_email"),
    }
    queue = rows[("analytics.reporting.moderation_queue", "reviewer_email")]
    assert [f"{step.dataset.qualified_name}.{step.name}" for step in queue["path"]] == [
        "appdb.public.users.email",
        "analytics.reporting.review_digest.reviewer_email",
        "analytics.reporting.moderation_queue.reviewer_email",
    ]
    assert [owner.username for owner in queue["owners"]] == ["sofia"]
    page = text(response)
    assert "2 violations" in page
    assert "appdb.public.users.email Sensitive analytics.reporting.review_digest.reviewer_email Sensitive" in page


def test_violations_page_without_violations_shows_an_empty_state(reader_web, registrar, store):
    register(registrar, store, "scratch.fine", column_payload("id"))

    response = reader_web.get(reverse("lineage:violation-list"))

    assert response.status_code == 200
    assert "No violations" in text(response)


def test_violations_page_is_paginated_by_fifty(reader_web, registrar, appdb, store):
    source = register(registrar, appdb, "public.users", column_payload("email", sensitivity="Restricted"))
    names = [f"copy{index:02d}" for index in range(51)]
    target = register(registrar, store, "leaky.copies", *[column_payload(name, sensitivity="Public") for name in names])
    link_many(source, "email", target, names)

    first = reader_web.get(reverse("lineage:violation-list"))
    second = reader_web.get(reverse("lineage:violation-list"), {"page": 2})

    assert len(first.context["violations"]) == 50
    assert [v["node"].name for v in second.context["violations"]] == ["copy50"]
    assert "51 violations" in text(first)
    assert 'href="?page=2"' in first.content.decode()


def link_many(source_dataset, source_column, target_dataset, target_columns):
    source = column_nodes_ensure(source_dataset, [source_column])[source_column.lower()]
    targets = column_nodes_ensure(target_dataset, target_columns)
    touched = lineage_edges_upsert(
        [EdgeSpec(source.pk, node.pk, EdgeLevel.COLUMN, EdgeKind.COPY) for node in targets.values()]
    )
    sensitivity_refresh(node_ids=touched)


def _violation_page_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("lineage:violation-list"))
    assert response.status_code == 200
    return len(captured)


def test_violations_page_query_count_does_not_grow_with_rows(reader_web, registrar, appdb, store,
                                                             django_assert_max_num_queries):
    source = register(registrar, appdb, "public.users", column_payload("email", sensitivity="Restricted"))
    first = register(registrar, store, "leaky.first", column_payload("email", sensitivity="Public"), owners=["dave"])
    link_many(source, "email", first, ["email"])
    _violation_page_queries(reader_web)  # the first audit event of the database creates the chain's head
    # 8, and 5 for auditing the Restricted column on the paths (one write for the whole page).
    with django_assert_max_num_queries(13):
        few = _violation_page_queries(reader_web)

    for index in range(10):
        names = [f"c{column}" for column in range(3)]
        target = register(registrar, store, f"leaky.more{index}", *[column_payload(n, sensitivity="Public") for n in names],
                          owners=["dave", "mia"])
        link_many(first, "email", target, names)
    with django_assert_max_num_queries(13):
        many = _violation_page_queries(reader_web)

    assert few == many
    assert Node.objects.filter(kind=NodeKind.COLUMN, is_violation=True).count() == 31


# The diff page ----------------------------------------------------------------------------


def test_breaking_diff_shows_the_downstream_impact_and_owners(reader_web, registrar, chain):
    digest = chain["digest"]
    # v2 drops reviewer_email: the moderation queue reads it.
    register(registrar, digest.store, "reporting.review_digest", column_payload("user_id",
             originatingSource="transactional:users"), owners=["pete"])

    response = reader_web.get(reverse("catalog:dataset-diff", args=[digest.pk]))

    assert response.status_code == 200
    assert response.context["diff"]["breaking"]
    entries = response.context["impact"]["datasets"]
    assert [(entry["dataset"].qualified_name, entry["via_columns"]) for entry in entries] == [
        ("analytics.reporting.moderation_queue", True),
    ]
    page = text(response)
    assert "Downstream impact 1" in page
    assert "Sofia (sofia)" in page
    assert "affected columns: reviewer_email" in page


def test_compatible_diff_has_no_impact_box(reader_web, registrar, chain):
    digest = chain["digest"]
    register(registrar, digest.store, "reporting.review_digest",
             column_payload("user_id", originatingSource="transactional:users"),
             column_payload("reviewer_email", sensitivity="Regular"), column_payload("added"), owners=["pete"])

    response = reader_web.get(reverse("catalog:dataset-diff", args=[digest.pk]))

    assert response.context["impact"] is None
    assert "Downstream impact" not in text(response)


def test_breaking_diff_without_downstream_says_it_reaches_nobody(reader_web, registrar, chain):
    queue = chain["queue"]
    register(registrar, queue.store, "reporting.moderation_queue", column_payload("other"), owners=["sofia"])

    response = reader_web.get(reverse("catalog:dataset-diff", args=[queue.pk]))

    assert "the change reaches nobody the catalog knows of" in text(response)


def test_breaking_diff_query_count_does_not_grow_with_downstream(reader_web, registrar, store,
                                                                 django_assert_max_num_queries):
    hub = register(registrar, store, "hub.events", column_payload("id"), column_payload("gone"))
    url = reverse("catalog:dataset-diff", args=[hub.pk])
    link(hub, "gone", register(registrar, store, "out.first", column_payload("gone"), owners=["dave"]), "gone")
    register(registrar, store, "hub.events", column_payload("id"))
    with django_assert_max_num_queries(17), CaptureQueriesContext(connection) as few:
        assert reader_web.get(url).status_code == 200

    for index in range(10):
        downstream = register(registrar, store, f"out.more{index}", column_payload("gone"), owners=["dave", "mia"])
        link(hub, "gone", downstream, "gone")
    with django_assert_max_num_queries(17), CaptureQueriesContext(connection) as many:
        response = reader_web.get(url)

    assert len(response.context["impact"]["datasets"]) == 11
    assert len(few) == len(many)
