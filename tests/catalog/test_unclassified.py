"""Unknown is not Public: a dataset lineage discovers before anyone registered its columns is
*Unclassified*, shown as such, decided as CATALOG_UNCLASSIFIED_TIER (Sensitive by default) and
listed for security engineers and its owners to classify."""

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from access.models import AccessLevel, AuditEvent, MetadataProposal, RolePermission
from access.proposals import proposal_review
from catalog.models import Dataset
from catalog.services import dataset_discover, dataset_register
from catalog.vocabulary import Sensitivity
from lineage.models import Node, NodeKind
from tests.factories import StoreFactory, UserFactory, column_payload, registration_payload

NAMESPACE = "snowflake://acme.eu-west-1"
SEED = "seeds.country_codes"


def dbt_event(*, output="marts.orders_by_country", output_schema=None):
    """A dbt-ol run: the seed is named only inside the column lineage facet, never as an input."""
    facets = {
        "columnLineage": {
            "_producer": "https://github.com/OpenLineage/OpenLineage/tree/1.23.0/integration/dbt",
            "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
            "fields": {
                "country": {"inputFields": [{
                    "namespace": NAMESPACE, "name": SEED, "field": "code",
                    "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}],
                }]},
            },
        },
    }
    if output_schema is not None:
        facets["schema"] = {"fields": [{"name": name, "type": "VARCHAR"} for name in output_schema]}
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-22T10:00:00Z",
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.23.0/integration/dbt",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "dbt", "name": "shop.orders_by_country"},
        "inputs": [],
        "outputs": [{"namespace": NAMESPACE, "name": output, "facets": facets}],
    }


@pytest.fixture
def warehouse(db):
    return StoreFactory(name="warehouse", kind="analytical", platform="snowflake", environment="prod",
                        lineage_namespace=NAMESPACE)


@pytest.fixture
def seed(token_client, warehouse) -> Dataset:
    """The dbt seed, discovered through the real OpenLineage endpoint."""
    response = token_client.post("/api/v1/lineage", dbt_event(), format="json")
    assert response.status_code == 202, response.content
    return Dataset.objects.get(qualified_name=f"warehouse.{SEED}")


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def only_public_metadata(slug: str, environment: str = "prod") -> None:
    """The role's matrix row for ``environment``: metadata of Public data only."""
    RolePermission.objects.filter(role__slug=slug, environment=environment, sensitivity__gt=Sensitivity.PUBLIC).update(
        standing=AccessLevel.NONE
    )


@pytest.fixture
def security_engineer(db):
    return UserFactory(username="sam", roles=["security_engineer"])


# Shown as Unclassified -------------------------------------------------------------------------


def test_a_dataset_lineage_discovers_is_unclassified_in_the_api(seed, registrar_client):
    assert seed.current_version is None and not seed.classified

    detail = registrar_client.get(f"/api/v1/datasets/{seed.pk}/").json()
    listed = registrar_client.get("/api/v1/datasets/", {"q": "country_codes"}).json()["results"]

    assert (detail["sensitivity"], detail["classified"]) == ("Unclassified", False)
    # Ranked: the dataset named so comes first (a dataset with a country_code column matches too).
    assert (listed[0]["qualifiedName"], listed[0]["sensitivity"], listed[0]["classified"]) == (
        seed.qualified_name, "Unclassified", False
    )


def test_the_dataset_page_and_list_show_an_unclassified_badge(seed, registrar_client):
    page = registrar_client.get(reverse("catalog:dataset-detail", args=[seed.pk])).content.decode()
    listing = registrar_client.get(reverse("catalog:dataset-list"), {"q": "country_codes"}).content.decode()

    for content in (page, listing):
        assert '<span class="badge sens-unclassified" title="Nobody has classified it yet: access is decided as Sensitive' in content
        assert ">Unclassified</span>" in content
        assert ">Public</span></td>" not in content and 'sens-public" title="Highest' not in content


def test_the_list_filters_by_unclassified_on_the_page_and_the_api(seed, registrar, registrar_client, store):
    dataset_register(principal=registrar, payload=registration_payload(
        store=store, name="marketing.public_stats", columns=[column_payload("n", sensitivity="Public")]))

    unclassified = registrar_client.get("/api/v1/datasets/", {"sensitivity": "Unclassified"})
    public = registrar_client.get("/api/v1/datasets/", {"sensitivity": "Public"}).json()["results"]
    page = registrar_client.get(reverse("catalog:dataset-list"), {"sensitivity": "Unclassified"})

    assert unclassified.status_code == 200
    # The seed, and the output the same event discovered (it came without a schema facet either).
    discovered = ["warehouse.marts.orders_by_country", seed.qualified_name]
    assert [row["qualifiedName"] for row in unclassified.json()["results"]] == discovered
    assert [row["qualifiedName"] for row in public] == ["analytics.marketing.public_stats"]
    assert [dataset.qualified_name for dataset in page.context["datasets"]] == discovered


def test_a_schema_facet_does_not_classify_a_discovered_dataset(token_client, warehouse, registrar_client):
    # Lineage names the output's columns, not their sensitivity: still nobody declared any.
    assert token_client.post("/api/v1/lineage", dbt_event(output_schema=["country", "orders"]), format="json").status_code == 202
    output = Dataset.objects.get(qualified_name="warehouse.marts.orders_by_country")

    detail = registrar_client.get(f"/api/v1/datasets/{output.pk}/").json()

    assert output.current_version is not None and not output.classified
    assert detail["sensitivity"] == "Unclassified"
    assert {column["sensitivity"] for column in detail["columns"]} == {"Unclassified"}


# Decided as the default tier -------------------------------------------------------------------


def test_a_role_that_sees_only_public_data_does_not_see_it(seed):
    analyst = UserFactory(username="ann", roles=["data_analyst"])
    only_public_metadata("data_analyst")
    client = client_for(analyst)

    assert client.get(f"/api/v1/datasets/{seed.pk}/").status_code == 404
    assert seed.qualified_name not in client.get("/api/v1/datasets/").content.decode()
    assert client.get(reverse("catalog:dataset-detail", args=[seed.pk])).status_code == 404


def test_standing_read_on_public_data_does_not_read_it(seed):
    # Analysts read Public and Regular prod data standing, not Sensitive.
    analyst = UserFactory(username="ann", roles=["data_analyst"])

    decision = client_for(analyst).get("/api/v1/access/decide/", {"dataset": seed.pk, "action": "read"}).json()

    assert decision["allowed"] is False and decision["level"] == "metadata"


def test_raising_the_unclassified_tier_tightens_at_once(seed, registrar):
    # Data scientists read Sensitive dev data standing, not Restricted; here they see no Restricted metadata either.
    dev = StoreFactory(name="devlake", environment="dev")
    dataset = dataset_discover(store=dev, name="raw.events")
    scientist = UserFactory(username="sid", roles=["data_scientist"])
    RolePermission.objects.filter(role__slug="data_scientist", environment="dev",
                                  sensitivity=Sensitivity.RESTRICTED).update(standing=AccessLevel.NONE)
    decide = {"dataset": dataset.pk, "action": "read"}

    assert client_for(scientist).get("/api/v1/access/decide/", decide).json()["allowed"] is True
    with override_settings(CATALOG_UNCLASSIFIED_TIER="Restricted"):
        client = client_for(scientist)  # a fresh user object: no decision inputs cached
        assert client.get("/api/v1/access/decide/", decide).status_code == 404
        assert dataset.qualified_name not in client.get("/api/v1/datasets/").content.decode()
    assert client_for(scientist).get("/api/v1/access/decide/", decide).json()["allowed"] is True


def test_an_unclassified_tier_setting_that_is_not_a_tier_or_is_public_stops_start_up(monkeypatch):
    from config.env import env_sensitivity

    monkeypatch.setenv("CATALOG_UNCLASSIFIED_TIER", "restricted")
    assert env_sensitivity("CATALOG_UNCLASSIFIED_TIER", "Sensitive", lowest="Regular") == Sensitivity.RESTRICTED
    monkeypatch.delenv("CATALOG_UNCLASSIFIED_TIER")
    assert env_sensitivity("CATALOG_UNCLASSIFIED_TIER", "Sensitive", lowest="Regular") == Sensitivity.SENSITIVE
    for bad in ("Secretish", "Public"):
        monkeypatch.setenv("CATALOG_UNCLASSIFIED_TIER", bad)
        with pytest.raises(ImproperlyConfigured, match="CATALOG_UNCLASSIFIED_TIER"):
            env_sensitivity("CATALOG_UNCLASSIFIED_TIER", "Sensitive", lowest="Regular")


def test_what_flows_from_an_unclassified_column_counts_as_the_default_tier(seed, registrar, security_engineer):
    # The output was registered by a person, its country column declared Public (below the default
    # tier it counted as: proposed, and approved by a security engineer); the seed's code is unknown.
    output, _ = dataset_register(principal=registrar, payload=registration_payload(
        store="warehouse", name="marts.orders_by_country", columns=[column_payload("country", sensitivity="Public")]))
    if output.pending_proposal is not None:
        proposal_review(principal=security_engineer, proposal=output.pending_proposal, approve=True)
    country = Node.objects.get(kind=NodeKind.COLUMN, dataset__qualified_name="warehouse.marts.orders_by_country",
                               name="country")

    assert country.effective_sensitivity == Sensitivity.SENSITIVE
    assert country.is_violation


# Classifying it --------------------------------------------------------------------------------


def test_registering_it_classifies_it_and_a_lower_tier_is_proposed(seed, registrar, registrar_client, security_engineer):
    response = registrar_client.post("/api/v1/datasets/", registration_payload(
        store="warehouse", name=SEED, columns=[column_payload("code", sensitivity="Public")]), format="json")

    assert response.status_code == 201, response.content
    # Declared, but below the default tier it counted as: that part waits for a security engineer.
    assert response.json()["pendingProposal"]["summary"].startswith("code sensitivity Sensitive → Public")
    detail = registrar_client.get(f"/api/v1/datasets/{seed.pk}/").json()
    assert (detail["sensitivity"], detail["classified"]) == ("Sensitive", True)
    assert AuditEvent.objects.filter(action="dataset.classified", dataset=seed).exists()

    proposal = MetadataProposal.objects.get(pk=response.json()["pendingProposal"]["id"])
    proposal_review(principal=security_engineer, proposal=proposal, approve=True)
    detail = registrar_client.get(f"/api/v1/datasets/{seed.pk}/").json()
    assert (detail["sensitivity"], detail["classified"]) == ("Public", True)


def test_registering_it_at_or_above_the_default_tier_applies_at_once(seed, registrar_client):
    response = registrar_client.post("/api/v1/datasets/", registration_payload(
        store="warehouse", name=SEED, columns=[column_payload("code", sensitivity="Restricted")]), format="json")
    assert response.json()["sensitivity"] == "Restricted"
    assert response.json()["pendingProposal"]["summary"] == "owners (none) → dave"  # claiming it is proposed too


def test_a_sync_that_gives_it_a_version_leaves_it_unclassified(tmp_path, registrar):
    import sqlite3

    from catalog.connections import connection_save
    from catalog.sync import sync_run_execute, sync_run_request

    engineer = UserFactory(username="pat", roles=["platform_engineer"])
    shop = StoreFactory(name="shop", kind="transactional", platform="sqlite")
    discovered = dataset_discover(store=shop, name="customers")
    path = tmp_path / "shop.db"
    db = sqlite3.connect(path)
    db.execute("create table customers (id integer primary key, nickname text)")
    db.commit()
    db.close()
    with override_settings(CATALOG_FILE_STORES_DIRS=[str(tmp_path)]):
        connection_save(principal=engineer, store=shop, database=str(path))
        run, _ = sync_run_request(principal=engineer, store=shop, enqueue=False)
        sync_run_execute(run.pk)

    # The sync's Regular for columns nobody declared is a placeholder: still decided as the default tier.
    discovered.refresh_from_db()
    assert discovered.current_version is not None and not discovered.classified
    assert discovered.sensitivity == Sensitivity.SENSITIVE


# Listed for classifying ------------------------------------------------------------------------


def test_security_engineers_find_it_on_the_suggestions_page_and_in_the_nav_count(seed, security_engineer):
    client = client_for(security_engineer)

    content = client.get(reverse("catalog:suggestion-list")).content.decode()
    count = client.get(reverse("catalog:suggestion-count")).content.decode()

    section = content[content.index('id="unclassified"'):]
    assert "Datasets nobody has classified" in section and seed.qualified_name in section
    assert "?sensitivity=Unclassified" in section
    # The seed and the output the event named: neither came with a schema facet.
    assert ">2</span>" in count and "2 datasets nobody has classified" in count


def test_its_owner_finds_it_and_other_readers_do_not(seed, reader):
    client = client_for(reader)  # an analyst: sees its metadata, but it is not theirs to classify
    assert seed.qualified_name not in client.get(reverse("catalog:suggestion-list")).content.decode()
    assert "nobody has classified" not in client.get(reverse("catalog:suggestion-count")).content.decode()

    seed.owners.add(reader)

    content = client_for(reader).get(reverse("catalog:suggestion-list")).content.decode()
    assert seed.qualified_name in content[content.index('id="unclassified"'):]


def test_the_suggestions_page_queries_do_not_grow_with_unclassified_datasets(
    seed, security_engineer, warehouse, django_assert_max_num_queries
):
    client = client_for(security_engineer)
    url = reverse("catalog:suggestion-list")
    client.get(url)
    with django_assert_max_num_queries(9) as few:
        client.get(url)
    for index in range(15):
        dataset_discover(store=warehouse, name=f"seeds.more{index}")

    with django_assert_max_num_queries(len(few.captured_queries) + 1):  # + the total, once the list is cut
        response = client.get(url)

    assert response.context["unclassified_total"] == 17 and len(response.context["unclassified"]) == 10
