"""Bounds on what people write and on the role matrix: a clear error naming the field, in the API
and the forms, and nothing written; long text shown collapsed."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from access import grants
from access.models import TEXT_MAX_LENGTH, AccessRequest, AccessReview, AuditEvent, Grant, RolePermission
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = pytest.mark.django_db

API = "/api/v1/access"
TOO_LONG = "x" * 20_900
AT_LIMIT = "y" * TEXT_MAX_LENGTH


@pytest.fixture
def cast(db):
    owner = UserFactory(username="olga", roles=["data_engineer"])
    store = StoreFactory(name="warehouse", environment="prod")
    dataset = dataset_create(principal=owner, store=store, name="sales.orders", owners=["olga"],
                             columns=[column_payload("order_id"), column_payload("email", sensitivity="Sensitive")])
    return {"owner": owner, "dataset": dataset, "scientist": UserFactory(username="sam", roles=["data_scientist"]),
            "oncall": UserFactory(username="sven", roles=["software_engineer"]),
            "admin": UserFactory(username="root", is_staff=True, is_superuser=True)}


def api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def ask(cast, justification="Quarterly churn analysis") -> AccessRequest:
    return grants.access_request_create(principal=cast["scientist"], dataset=cast["dataset"], level="read",
                                        duration=4, justification=justification, ticket="OPS-1")


def events() -> int:
    return AuditEvent.objects.count()


def test_a_20900_character_justification_is_refused_by_the_api_and_nothing_is_written(cast):
    before = events()
    body = {"dataset": cast["dataset"].pk, "level": "read", "durationHours": 4, "justification": TOO_LONG,
            "ticket": "OPS-1"}
    response = api(cast["scientist"]).post(f"{API}/requests/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["justification"]
    assert "2000" in str(response.json()["errors"]["justification"])
    assert not AccessRequest.objects.exists() and events() == before
    ok = api(cast["scientist"]).post(f"{API}/requests/", body | {"justification": AT_LIMIT}, format="json")
    assert ok.status_code == 201


def test_the_services_refuse_long_text_whatever_calls_them(cast):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        ask(cast, justification=TOO_LONG)
    assert error.value.message_dict["justification"] == ["At most 2,000 characters (this has 20,900)."]
    request = ask(cast)
    with pytest.raises(ValidationError) as error:
        grants.access_request_review(principal=cast["owner"], request=request, approve=False, reason=TOO_LONG)
    assert "reason" in error.value.message_dict
    assert not AccessReview.objects.exists()
    with pytest.raises(ValidationError) as error:
        grants.break_glass_activate(principal=cast["oncall"], dataset=cast["dataset"], level="read", reason=TOO_LONG)
    assert "reason" in error.value.message_dict and not Grant.objects.exists()


def test_long_reasons_and_notes_are_refused_by_the_api(cast):
    request = ask(cast)
    owner = api(cast["owner"])
    before = events()
    response = owner.post(f"{API}/requests/{request.pk}/deny/", {"reason": TOO_LONG}, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["reason"]
    response = owner.post(f"{API}/requests/{request.pk}/approve/", {"reason": TOO_LONG}, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["reason"]
    assert not AccessReview.objects.exists()
    grants.access_request_review(principal=cast["owner"], request=request, approve=True)
    grant = Grant.objects.get()
    before = events()
    response = owner.post(f"{API}/grants/{grant.pk}/revoke/", {"reason": TOO_LONG}, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["reason"]
    response = owner.post(f"{API}/reviews/{cast['dataset'].pk}/confirm/", {"note": TOO_LONG}, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["note"]
    response = api(cast["oncall"]).post(f"{API}/break-glass/", {"dataset": cast["dataset"].pk, "level": "read",
                                                                "reason": TOO_LONG}, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["reason"]
    assert events() == before
    bg = grants.break_glass_activate(principal=cast["oncall"], dataset=cast["dataset"], level="read",
                                     reason="INC-9: checkout is failing for everyone")
    response = owner.post(f"{API}/grants/{bg.pk}/review/", {"note": TOO_LONG}, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["note"]
    bg.refresh_from_db()
    assert bg.reviewed_at is None
    grant.refresh_from_db()
    assert grant.revoked_at is None


def test_a_long_proposal_rejection_reason_is_refused(cast):
    from access.models import MetadataProposal
    from access.proposals import proposal_create

    proposal = proposal_create(principal=cast["owner"], dataset=cast["dataset"],
                               changes={"tags": {"add": ["aggregated"]}})
    response = api(cast["admin"]).post(f"{API}/proposals/{proposal.pk}/reject/", {"reason": TOO_LONG}, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["reason"]
    assert MetadataProposal.objects.get().status == "pending"


def test_forms_refuse_long_text_with_a_field_error(client, cast):
    client.force_login(cast["scientist"])
    response = client.post(reverse("access:request-create", args=[cast["dataset"].pk]),
                           {"level": "read", "duration": 4, "justification": TOO_LONG, "ticket": "OPS-1"})
    assert response.status_code == 200
    assert response.context["form"].errors["justification"]
    assert not AccessRequest.objects.exists()
    request = ask(cast)
    client.force_login(cast["owner"])
    response = client.post(reverse("access:request-review", args=[request.pk]), {"decision": "deny", "reason": TOO_LONG})
    assert response.status_code == 400 and "reason" in response.context["review_form"].errors
    assert not AccessReview.objects.exists()
    page = client.get(reverse("access:break-glass", args=[cast["dataset"].pk]))
    assert page.status_code == 403  # owner is a data engineer: no break-glass; the on-call engineer tries
    client.force_login(cast["oncall"])
    response = client.post(reverse("access:break-glass", args=[cast["dataset"].pk]),
                           {"level": "read", "reason": TOO_LONG, "minutes": 10})
    assert "reason" in response.context["form"].errors and not Grant.objects.exists()


def test_long_justifications_are_collapsed_in_the_queue_and_on_the_request_page(client, cast):
    request = ask(cast, justification="Needed for the churn model. " + "z" * 1500)
    client.force_login(cast["owner"])
    queue = client.get(reverse("access:approval-queue")).text
    assert '<details class="long-text justification">' in queue and "Show more" in queue
    page = client.get(reverse("access:request-detail", args=[request.pk])).text
    assert '<details class="long-text justification">' in page
    short = ask(cast.copy() | {"scientist": UserFactory(username="sue", roles=["data_scientist"])})
    page = client.get(reverse("access:request-detail", args=[short.pk])).text
    assert "long-text" not in page and "Quarterly churn analysis" in page


def test_a_matrix_cell_refuses_more_than_the_documented_maximum(client, cast, settings):
    cell = RolePermission.objects.get(role__slug="data_analyst", environment="prod", sensitivity=2)
    before = (cell.jit_max_hours, cell.updated_at)
    response = api(cast["admin"]).patch(f"{API}/matrix/{cell.pk}/", {"jitMaxHours": 99_999}, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["jitMaxHours"]
    assert "720" in str(response.json()["errors"]["jitMaxHours"])
    client.force_login(cast["admin"])
    data = {"standing": 1, "jit_level": 2, "jit_max_hours": 99_999, "approvals_required": 1}
    response = client.post(reverse("access:role-cell-edit", args=[cell.pk]), data)
    assert response.status_code == 200
    assert response.context["form"].errors["jit_max_hours"] == ["At most 720 hours (ACCESS_JIT_MAX_HOURS)."]
    cell.refresh_from_db()
    assert (cell.jit_max_hours, cell.updated_at) == before
    assert not AuditEvent.objects.filter(action="matrix.changed").exists()
    settings.ACCESS_JIT_MAX_HOURS = 24  # the operator's maximum, read at each change
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        grants.role_permission_update(principal=cast["admin"], cell=cell, jit_max_hours=48)
    assert "At most 24 hours" in error.value.message_dict["jit_max_hours"][0]
    assert api(cast["admin"]).patch(f"{API}/matrix/{cell.pk}/", {"jitMaxHours": 24}, format="json").status_code == 200
