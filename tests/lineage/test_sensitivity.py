"""Originating sources become edges; effective sensitivity follows them; violations and paths."""

import pytest
from django.db import transaction

from catalog.models import Column, Dataset
from catalog.services import dataset_columns_reclassify, dataset_register
from catalog.vocabulary import Sensitivity
from lineage.models import Edge, EdgeKind, EdgeLevel, Node, NodeKind
from lineage.selectors import lineage_sensitivity_paths, lineage_violation_list
from lineage.sensitivity import sensitivity_refresh
from lineage.services import EdgeSpec, column_nodes_ensure, lineage_edges_upsert
from tests.factories import StoreFactory, column_payload, registration_payload


@pytest.fixture
def appdb(db):
    return StoreFactory(name="appdb", kind="transactional", platform="postgresql")


def register(principal, store, name, *columns):
    dataset, _ = dataset_register(principal=principal, payload=registration_payload(store=store, name=name, columns=list(columns)))
    return dataset


def node(dataset, name) -> Node:
    return Node.objects.get(kind=NodeKind.COLUMN, dataset=dataset, name__iexact=name)


def link(principal, source_dataset, source_column, target_dataset, target_column, *, masking=False, direct=True):
    source = column_nodes_ensure(source_dataset, [source_column])[source_column.lower()]
    target = column_nodes_ensure(target_dataset, [target_column])[target_column.lower()]
    touched = lineage_edges_upsert(
        [EdgeSpec(source.pk, target.pk, EdgeLevel.COLUMN, EdgeKind.TRANSFORMATION, masking=masking, direct=direct)]
    )
    sensitivity_refresh(node_ids=touched)


def test_originating_source_links_to_a_registered_dataset_and_its_same_named_column(registrar, appdb, store):
    reviews = register(registrar, appdb, "public.Reviews", column_payload("ReviewID", sensitivity="Regular"))
    sentiment = register(
        registrar, store, "marketing.review_sentiment",
        column_payload("ReviewID", originatingSource="transactional:Reviews"),
        column_payload("Score", originatingSource="mlmodel:Sentiment", sensitivity="Public"),
    )
    review_edge = Edge.objects.get(target=node(sentiment, "ReviewID"))
    assert review_edge.source == node(reviews, "ReviewID")
    assert review_edge.kind == EdgeKind.ORIGIN
    model_edge = Edge.objects.get(target=node(sentiment, "Score"))
    assert (model_edge.source.kind, model_edge.source.source_kind, model_edge.source.name) == (NodeKind.SOURCE, "mlmodel", "Sentiment")
    assert model_edge.kind == EdgeKind.MODEL_OUTPUT
    dataset_level = Edge.objects.filter(level=EdgeLevel.DATASET, target__dataset=sentiment, target__kind=NodeKind.DATASET)
    assert {edge.source.label for edge in dataset_level} == {reviews.qualified_name, "mlmodel:Sentiment"}


def test_placeholder_is_linked_when_the_source_dataset_is_registered_later(registrar, appdb, store):
    sentiment = register(
        registrar, store, "marketing.review_sentiment",
        column_payload("ReviewID", originatingSource="transactional:Reviews", sensitivity="Public"),
    )
    placeholder = Edge.objects.get(target=node(sentiment, "ReviewID")).source
    assert (placeholder.kind, placeholder.name) == (NodeKind.SOURCE, "Reviews")

    reviews = register(registrar, appdb, "public.reviews", column_payload("ReviewID", sensitivity="Sensitive"))

    assert not Node.objects.filter(pk=placeholder.pk).exists()
    assert Edge.objects.get(target=node(sentiment, "ReviewID")).source == node(reviews, "ReviewID")
    # ... and the sensitivity that arrived with the link is now felt downstream.
    assert node(sentiment, "ReviewID").effective_sensitivity == Sensitivity.SENSITIVE
    assert node(sentiment, "ReviewID").is_violation


def test_changing_an_originating_source_replaces_its_edge(registrar, appdb, store):
    register(registrar, appdb, "public.a", column_payload("id"))
    register(registrar, appdb, "public.b", column_payload("id"))
    target = register(registrar, store, "t.x", column_payload("id", originatingSource="transactional:a"))
    register(registrar, store, "t.x", column_payload("id", originatingSource="transactional:b"))
    sources = [edge.source.dataset.name for edge in Edge.objects.filter(target=node(target, "id"))]
    assert sources == ["b"]


def test_effective_sensitivity_follows_the_data_and_flags_a_violation_with_its_path(registrar, appdb, store):
    users = register(registrar, appdb, "public.users", column_payload("email", sensitivity="Restricted"))
    staging = register(registrar, store, "staging.users", column_payload("email", sensitivity="Restricted"))
    report = register(registrar, store, "reports.contacts", column_payload("email", sensitivity="Public"))
    link(registrar, users, "email", staging, "email")
    link(registrar, staging, "email", report, "email")

    reported = node(report, "email")
    assert reported.effective_sensitivity == Sensitivity.RESTRICTED
    assert reported.is_violation
    assert reported.unprotected_inflow == Sensitivity.RESTRICTED
    path = lineage_sensitivity_paths(user=registrar, nodes=[reported])[reported.pk]
    assert [step.dataset.qualified_name for step in path] == [users.qualified_name, staging.qualified_name, report.qualified_name]
    assert list(lineage_violation_list(user=registrar)) == [reported]
    assert not node(staging, "email").is_violation  # declared as high as what flows in


def test_a_masking_edge_lowers_what_passes_to_regular_and_is_no_violation(registrar, appdb, store):
    users = register(registrar, appdb, "public.users", column_payload("ssn", sensitivity="Restricted"))
    masked = register(registrar, store, "marts.users", column_payload("ssn_masked", sensitivity="Public"))
    link(registrar, users, "ssn", masked, "ssn_masked", masking=True)
    result = node(masked, "ssn_masked")
    assert result.effective_sensitivity == Sensitivity.REGULAR
    assert not result.is_violation


def test_a_protected_column_stops_the_inflow_downstream(registrar, appdb, store):
    users = register(registrar, appdb, "public.users", column_payload("ssn", sensitivity="Restricted"))
    hashed = register(registrar, store, "s.hashed", column_payload("ssn_hash", sensitivity="Regular", protection="Hashed"))
    after = register(registrar, store, "s.after", column_payload("ssn_hash", sensitivity="Regular"))
    link(registrar, users, "ssn", hashed, "ssn_hash")
    link(registrar, hashed, "ssn_hash", after, "ssn_hash")
    assert node(hashed, "ssn_hash").effective_sensitivity == Sensitivity.REGULAR
    assert not node(hashed, "ssn_hash").is_violation
    assert node(after, "ssn_hash").effective_sensitivity == Sensitivity.REGULAR
    assert not node(after, "ssn_hash").is_violation


def test_indirect_edges_carry_no_sensitivity(registrar, appdb, store):
    users = register(registrar, appdb, "public.users", column_payload("ssn", sensitivity="Restricted"))
    counts = register(registrar, store, "s.counts", column_payload("n", sensitivity="Public"))
    link(registrar, users, "ssn", counts, "n", direct=False)
    assert node(counts, "n").effective_sensitivity == Sensitivity.PUBLIC


def test_lowering_a_source_lowers_everything_downstream_even_around_a_cycle(registrar, appdb, store):
    source = register(registrar, appdb, "public.src", column_payload("v", sensitivity="Restricted"))
    a = register(registrar, store, "s.a", column_payload("v", sensitivity="Public"))
    b = register(registrar, store, "s.b", column_payload("v", sensitivity="Public"))
    link(registrar, source, "v", a, "v")
    link(registrar, a, "v", b, "v")
    link(registrar, b, "v", a, "v")  # a cycle between a and b
    assert node(b, "v").effective_sensitivity == Sensitivity.RESTRICTED

    # Lowering a classification is a proposal; approved, it is a new version like any other.
    with transaction.atomic():
        locked = Dataset.objects.select_for_update(of=("self",)).select_related("store", "current_version").get(pk=source.pk)
        dataset_columns_reclassify(principal=registrar, dataset=locked, changes={"v": {"sensitivity": "Regular"}},
                                   registered_by="approved proposal")

    assert node(a, "v").effective_sensitivity == Sensitivity.REGULAR
    assert node(b, "v").effective_sensitivity == Sensitivity.REGULAR


def test_the_refresh_touches_only_what_is_downstream_of_the_change(registrar, appdb, store, django_assert_max_num_queries):
    source = register(registrar, appdb, "public.src", column_payload("v", sensitivity="Sensitive"))
    downstream = register(registrar, store, "s.down", column_payload("v", sensitivity="Public"))
    elsewhere = register(registrar, store, "s.elsewhere", column_payload("v", sensitivity="Public"))
    link(registrar, source, "v", downstream, "v")
    # Tamper with an unrelated node: a refresh of the source's closure must not repair it.
    Node.objects.filter(pk=node(elsewhere, "v").pk).update(effective_sensitivity=Sensitivity.RESTRICTED)
    Column.objects.filter(dataset=source).update(sensitivity=Sensitivity.RESTRICTED)

    seed = node(source, "v").pk
    with django_assert_max_num_queries(3):
        changed = sensitivity_refresh(node_ids=[seed])

    assert changed == 2
    assert node(downstream, "v").effective_sensitivity == Sensitivity.RESTRICTED
    assert node(elsewhere, "v").effective_sensitivity == Sensitivity.RESTRICTED  # untouched


def test_a_dropped_column_keeps_its_node_and_edges(registrar, appdb, store):
    users = register(registrar, appdb, "public.users", column_payload("email"), column_payload("name"))
    target = register(registrar, store, "s.t", column_payload("email", originatingSource="transactional:users"))
    kept = node(users, "email")
    register(registrar, appdb, "public.users", column_payload("name"))
    kept.refresh_from_db()
    assert kept.column_id is None
    assert Edge.objects.filter(source=kept, target=node(target, "email")).exists()


def test_lineage_rebuild_restores_edges_and_sensitivity(registrar, appdb, store):
    from io import StringIO

    from django.core.management import call_command

    register(registrar, appdb, "public.users", column_payload("email", sensitivity="Restricted"))
    report = register(registrar, store, "m.report", column_payload("email", sensitivity="Public", originatingSource="transactional:users"))
    Node.objects.all().delete()  # as after an upgrade from a catalog without lineage

    out = StringIO()
    call_command("lineage_rebuild", stdout=out)

    assert "Lineage rebuilt for 2 datasets." in out.getvalue()
    assert node(report, "email").is_violation
    assert dataset_node(report).effective_sensitivity == Sensitivity.RESTRICTED


def dataset_node(dataset) -> Node:
    return Node.objects.get(kind=NodeKind.DATASET, dataset=dataset)


def highest_of_columns(dataset):
    """What a dataset node's effective sensitivity must be: the highest of its current columns' nodes."""
    values = Node.objects.filter(kind=NodeKind.COLUMN, dataset=dataset, column__isnull=False).values_list(
        "effective_sensitivity", flat=True)
    return max((value for value in values if value is not None), default=None)


def test_a_dataset_node_keeps_the_highest_effective_sensitivity_of_its_current_columns(registrar, appdb, store):
    source = register(registrar, appdb, "public.src", column_payload("v", sensitivity="Restricted"))
    down = register(registrar, store, "s.down", column_payload("v", sensitivity="Public"),
                    column_payload("w", sensitivity="Sensitive"))
    assert dataset_node(source).effective_sensitivity == Sensitivity.RESTRICTED
    assert dataset_node(down).effective_sensitivity == Sensitivity.SENSITIVE

    link(registrar, source, "v", down, "v")  # Restricted flows into down.v
    assert dataset_node(down).effective_sensitivity == Sensitivity.RESTRICTED == highest_of_columns(down)

    with transaction.atomic():  # an approved lowering of the source lowers down again
        locked = Dataset.objects.select_for_update(of=("self",)).select_related("store", "current_version").get(pk=source.pk)
        dataset_columns_reclassify(principal=registrar, dataset=locked, changes={"v": {"sensitivity": "Public"}},
                                   registered_by="approved proposal")
    assert dataset_node(source).effective_sensitivity == Sensitivity.PUBLIC == highest_of_columns(source)
    assert dataset_node(down).effective_sensitivity == Sensitivity.SENSITIVE == highest_of_columns(down)

    # A new version without w: its node stays (unlinked) and no longer counts.
    register(registrar, store, "s.down", column_payload("v", sensitivity="Public"))
    assert node(down, "w").column_id is None
    assert dataset_node(down).effective_sensitivity == Sensitivity.PUBLIC == highest_of_columns(down)


def test_a_refresh_that_changes_no_column_leaves_the_dataset_node_alone(registrar, store, django_assert_max_num_queries):
    down = register(registrar, store, "s.down", column_payload("v", sensitivity="Regular"))
    Node.objects.filter(pk=dataset_node(down).pk).update(effective_sensitivity=Sensitivity.REGULAR)
    seed = node(down, "v").pk
    with django_assert_max_num_queries(2):  # the two reads; nothing to write
        assert sensitivity_refresh(node_ids=[seed]) == 0
    assert dataset_node(down).effective_sensitivity == Sensitivity.REGULAR


def test_a_tampered_dataset_node_is_repaired_by_the_refresh_of_one_of_its_columns(registrar, store):
    down = register(registrar, store, "s.down", column_payload("v", sensitivity="Regular"),
                    column_payload("w", sensitivity="Sensitive"))
    Node.objects.filter(pk=dataset_node(down).pk).update(effective_sensitivity=Sensitivity.PUBLIC)
    sensitivity_refresh(node_ids=[node(down, "v").pk])  # w is outside the closure: its stored value counts
    assert dataset_node(down).effective_sensitivity == Sensitivity.SENSITIVE


def test_the_migration_fills_dataset_nodes_from_their_current_columns(registrar, appdb, store):
    import importlib

    from django.db import connection

    fill = importlib.import_module("lineage.migrations.0005_dataset_node_effective_sensitivity").FILL
    source = register(registrar, appdb, "public.src", column_payload("v", sensitivity="Restricted"))
    down = register(registrar, store, "s.down", column_payload("v", sensitivity="Public"),
                    column_payload("w", sensitivity="Regular"))
    link(registrar, source, "v", down, "v")
    register(registrar, store, "s.down", column_payload("w", sensitivity="Regular"))  # v dropped: unlinked
    Node.objects.filter(kind=NodeKind.DATASET).update(effective_sensitivity=None)
    with connection.cursor() as cursor:
        cursor.execute(fill)
    assert dataset_node(source).effective_sensitivity == Sensitivity.RESTRICTED
    assert dataset_node(down).effective_sensitivity == Sensitivity.REGULAR  # not the dropped v's Restricted
