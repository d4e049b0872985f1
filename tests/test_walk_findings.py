"""What a walk through the demo as each persona found after issue 15's changes: pages that
answered 500 to dates or ids no database holds, an owner filter naming owners of hidden datasets,
a roleless user told the catalog is empty, and plurals."""

import pytest
from django.urls import reverse

from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(db):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    prod = StoreFactory(name="warehouse", environment="prod")
    secret = dataset_create(principal=registrar, store=prod, name="hr.salaries",
                            columns=[column_payload("salary", sensitivity="Restricted")])
    secret.owners.add(UserFactory(username="hilda", roles=["data_analyst"]))
    open_data = dataset_create(principal=registrar, store=prod, name="web.pages", columns=[column_payload("url")])
    open_data.owners.add(UserFactory(username="wes", roles=["data_analyst"]))
    return {"secret": secret, "open": open_data, "registrar": registrar}


def test_the_audit_page_until_the_last_day_a_date_can_have(client):
    client.force_login(UserFactory(username="sec", roles=["security_engineer"]))
    for url in ("access:audit-list", "access:audit-export-csv"):
        response = client.get(reverse(url), {"until": "9999-12-31"})
        assert response.status_code == 200, url


def test_a_page_id_no_row_can_have_is_the_catalogs_404(world, client):
    client.force_login(world["registrar"])
    url = reverse("lineage:column-impact", args=[world["open"].pk, 99999999999999999999])
    response = client.get(url)
    assert response.status_code == 404
    assert b"Traceback" not in response.content


def test_the_owner_filter_names_only_owners_of_datasets_the_reader_sees(world, client):
    pete = UserFactory(username="pete", roles=["product_manager"])  # sees aggregated datasets only
    world["open"].tags = ["aggregated"]
    world["open"].save()
    client.force_login(pete)
    page = client.get(reverse("catalog:dataset-list")).content.decode()
    assert ">wes<" in page or 'value="wes"' in page
    assert "hilda" not in page


def test_a_user_who_sees_nothing_is_not_told_the_catalog_is_empty(world, client):
    client.force_login(UserFactory(username="rolf"))
    page = client.get(reverse("catalog:dataset-list")).content.decode()
    assert "No dataset is visible to you" in page
    assert "The catalog is empty" not in page


def test_the_request_form_says_1_hour_not_1_hours(world, client):
    from access.models import RolePermission

    analyst = UserFactory(username="ann", roles=["data_analyst"])
    RolePermission.objects.filter(role__slug="data_analyst", environment="prod", sensitivity=3).update(jit_max_hours=1)
    client.force_login(analyst)
    page = client.get(reverse("access:request-create", args=[world["secret"].pk])).content.decode()
    assert "<strong>1 hour</strong>" in page
    assert "1 hours" not in page
