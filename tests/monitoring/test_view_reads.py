"""A read of a view registered in the catalog is also a read of the tables it selects from, found
through the lineage a sync drew from the view's definition (edges of kind ``view``): the columns
behind each view column, and the tables alone for a read that names no column (``count(*)``)."""

import pytest
from rest_framework.test import APIClient

from catalog.connections import connection_save
from catalog.models import Column, Dataset
from catalog.vocabulary import Sensitivity
from catalog.sync import sync_run_execute, sync_run_request
from monitoring.models import AccessEvent
from monitoring.shippers import shipper_token_create
from tests.catalog.warehouses import postgres_warehouse
from tests.factories import StoreFactory, UserFactory
from tests.monitoring.test_push import pg_line

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(platform_engineer):
    with postgres_warehouse() as wh:
        store = StoreFactory(name="shop", platform=wh.platform, environment="prod")
        connection_save(principal=platform_engineer, store=store, **wh.connection_fields)
        run, _ = sync_run_request(principal=platform_engineer, store=store, enqueue=False)
        sync_run_execute(run.pk)
        yield wh, store


def test_reading_a_view_reads_the_columns_behind_it(shop):
    wh, store = shop
    view = Dataset.objects.get(qualified_name=wh.qualified(store, "sales", "customer_totals"))
    customers = Dataset.objects.get(qualified_name=wh.qualified(store, "sales", "customers"))
    orders = Dataset.objects.get(qualified_name=wh.qualified(store, "sales", "orders"))
    Column.objects.filter(dataset=customers, name="email").update(sensitivity=Sensitivity.RESTRICTED)
    UserFactory(username="mia", roles=["data_analyst"], warehouse_role="mia_role")
    security = UserFactory(username="sec", roles=["security_engineer"])
    _, key = shipper_token_create(actor=security, store=store, name="db-1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    relation = f"{view.schema}.{view.name}"
    response = client.post("/api/v1/monitoring/logs/", [
        pg_line(1, f"SELECT customer_id, email FROM {relation}", relation=relation),
        pg_line(2, f"SELECT count(*) FROM {relation}", relation=relation),
    ], format="json")
    assert response.status_code == 200, response.content
    events = list(AccessEvent.objects.filter(store=store).order_by("record_key", "id"))
    one = {e.dataset_id: e for e in events if e.record_key.split(">")[0].endswith(":1")}
    assert set(one) == {view.pk, customers.pk}  # customer_id and email both come from customers
    assert one[view.pk].columns == ["customer_id", "email"] and one[view.pk].via_view == ""
    behind = one[customers.pk]
    assert behind.columns == ["email", "id"] and behind.via_view == view.qualified_name
    assert behind.user.username == "mia" and behind.record_key.endswith(f">{customers.pk}")
    # Attributed on the base dataset by the one decision: its Restricted email was read through a view
    # whose own columns are Regular, and nothing allowed that.
    assert (one[view.pk].allowed_by, one[view.pk].finding) == ("standing", False)
    assert (behind.allowed_by, behind.finding) == ("", True)
    two = {e.dataset_id: e for e in events if e.record_key.split(">")[0].endswith(":2")}
    assert set(two) == {view.pk, customers.pk, orders.pk}
    assert two[orders.pk].columns == [] and two[orders.pk].via_view == view.qualified_name
    again = client.post("/api/v1/monitoring/logs/", [pg_line(1, f"SELECT customer_id, email FROM {relation}",
                                                             relation=relation)], format="json")
    assert again.json()["recorded"] == 0 and AccessEvent.objects.filter(store=store).count() == len(events)
