"""A person's life through a real SCIM client (scim2-client's WSGI engine calling the catalog's
WSGI application in-process): provisioned, given a role by a group, granted access that is
applied in the real PostgreSQL test warehouse, then deactivated: the grant is revoked in the
warehouse, their session and API token are gone, their pending request withdrawn and their
approvals handed back. A group change takes away only what the lost role allowed."""

import pytest
from django.contrib.sessions.models import Session
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.core.wsgi import get_wsgi_application
from django.test import Client
from rest_framework.test import APIClient
from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_models import (
    Email, Group, GroupMember, ListResponse, Name, PatchOp, PatchOperation, ScimProvider, SCIMException, User,
)

from access import tasks
from access.grants import access_request_create, access_request_review
from access.models import (
    AccessLevel, AccessRequest, AccessReview, AuditEvent, Enforcement, Grant, GrantStatus, RequestStatus, ServiceToken,
)
from access.models import User as CatalogUser
from access.services import role_ensure_defaults, service_token_create
from identity.scim_tokens import scim_token_create
from tests.access.test_enforcement import approver, as_role, denied, grant_for, make_role, shop, wh  # noqa: F401
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create


@pytest.fixture
def wsgi_app():
    """The catalog's WSGI application called in-process. As Django's test client does, a request
    keeps the test's database connection (the handler would close it when the request finishes)."""
    handler = get_wsgi_application()

    def app(environ, start_response):
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            response = handler(environ, start_response)
            body = list(response)
            response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        return body

    return app


@pytest.fixture
def scim(db, settings, wsgi_app):
    settings.OIDC_GROUP_ROLES = ["Engineering=software_engineer", "Data Science=data_scientist",
                                 "Owners=security_engineer"]
    role_ensure_defaults()
    _, key = scim_token_create(name="okta")
    return WSGISCIMClient(wsgi_app, base_url="http://localhost/scim/v2",
                          headers={"Authorization": f"Bearer {key}"}, provider=ScimProvider(models=[User, Group]))


def provision(scim, user_name: str, groups=()) -> tuple[User, CatalogUser]:
    created = scim.create(User(user_name=user_name, external_id=f"00u-{user_name}",
                               name=Name(given_name=user_name.title(), family_name="Doe"),
                               emails=[Email(value=f"{user_name}@corp.example", primary=True)], active=True))
    for group in groups:
        scim.modify(Group, group.id, PatchOp[Group](operations=[PatchOperation[Group](
            op=PatchOperation.Op.add, path="members", value=[{"value": created.id}])]))
    return created, CatalogUser.objects.get(pk=int(created.id))


def test_deactivation_revokes_the_grant_in_the_warehouse_and_ends_sessions_tokens_and_requests(
        scim, wh, shop, approver, make_role, django_capture_on_commit_callbacks):
    engineering = scim.create(Group(display_name="Engineering"))
    created, sam = provision(scim, "sam", [engineering])
    assert set(sam.groups.values_list("company_role__slug", flat=True)) == {"software_engineer"}
    sam.warehouse_role = make_role()  # the profile's warehouse role: set by an admin, not the directory
    sam.save(update_fields=["warehouse_role"])
    grant = grant_for(sam, approver, shop.customers)
    assert tasks.grant_enforce(grant.pk) == "applied"
    assert as_role(wh, sam.warehouse_role, "SELECT count(*) FROM governed.customers") == [(6,)]
    pending = access_request_create(principal=sam, dataset=shop.orders, level=AccessLevel.READ, duration=2,
                                    justification="Checking refunds for INC-77")
    browser = Client()
    browser.force_login(sam)
    assert browser.get("/").status_code == 200
    _, api_key = service_token_create(user=sam)

    with django_capture_on_commit_callbacks(execute=True):  # the revoke queues access.grant_enforce
        replaced = scim.replace(created.model_copy(update={"active": False}))

    assert replaced.active is False
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED and grant.enforcement == Enforcement.REVOKED
    assert denied(wh, sam.warehouse_role, "SELECT count(*) FROM governed.customers")
    assert not Session.objects.filter(session_key=browser.session.session_key).exists()
    signed_out = browser.get("/")
    assert signed_out.status_code == 302 and signed_out["Location"].startswith("/login/")
    assert ServiceToken.objects.get(user=sam).revoked_at is not None
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {api_key}")
    assert token_client.get("/api/v1/datasets/").status_code == 401
    pending.refresh_from_db()
    assert pending.status == RequestStatus.CANCELLED
    revoked = AuditEvent.objects.get(action="grant.revoked", object_id=str(grant.pk))
    assert revoked.actor_name == "scim:okta" and revoked.reason == "Deactivated by the directory."

    # DELETE: deprovisioned, gone from SCIM, but the person's row and history stay.
    scim.delete(User, created.id)
    with pytest.raises(SCIMException):
        scim.query(User, created.id)
    listed = scim.query(User, query_parameters={"filter": 'userName eq "sam"'})
    assert isinstance(listed, ListResponse) and listed.total_results == 0
    assert CatalogUser.objects.filter(pk=sam.pk, is_active=False).exists()
    assert Grant.objects.filter(pk=grant.pk).exists()
    assert AuditEvent.objects.filter(action="identity.user_deprovisioned", actor_name="scim:okta").exists()


def test_a_deactivated_approvers_approval_no_longer_counts(scim, registrar):
    owners = scim.create(Group(display_name="Owners"))
    created, olga = provision(scim, "olga", [owners])  # a security engineer through the directory
    store = StoreFactory(name="vault", platform="postgresql", environment="prod")
    vault = dataset_create(principal=registrar, store=store, name="hr.salaries",
                           columns=[column_payload("ssn", sensitivity="Restricted")])
    asker = UserFactory(username="raj", roles=["data_scientist"])
    request = access_request_create(principal=asker, dataset=vault, level=AccessLevel.READ, duration=1,
                                    justification="Audit of payroll INC-9", ticket="SEC-1")
    access_request_review(principal=CatalogUser.objects.get(pk=olga.pk), request=request, approve=True)
    assert request.approvals_required == 2

    scim.modify(User, created.id, PatchOp[User](operations=[PatchOperation[User](
        op=PatchOperation.Op.replace_, path="active", value=False)]))

    review = AccessReview.objects.get(request=request, reviewer=olga)
    assert review.superseded is True  # the request needs another approver now
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert AuditEvent.objects.get(action="request.approval_voided").actor_name == "scim:okta"


def test_leaving_a_group_ends_only_what_the_lost_role_allowed(scim, registrar):
    engineering = scim.create(Group(display_name="Engineering"))
    science = scim.create(Group(display_name="Data Science"))
    created, sue = provision(scim, "sue", [engineering, science])
    store = StoreFactory(name="lake", platform="bigquery", environment="prod")
    events = dataset_create(principal=registrar, store=store, name="app.events",
                            columns=[column_payload("ip", sensitivity="Sensitive")])
    clicks = dataset_create(principal=registrar, store=store, name="app.clicks",
                            columns=[column_payload("ip", sensitivity="Sensitive")])
    approver_user = UserFactory(username="boss", is_superuser=True, is_staff=True)
    read = access_request_create(principal=sue, dataset=events, level=AccessLevel.READ, duration=2,
                                 justification="Sessionisation study", ticket="DS-1")
    access_request_review(principal=approver_user, request=read, approve=True)
    write = access_request_create(principal=sue, dataset=clicks, level=AccessLevel.WRITE, duration=2,
                                  justification="Backfill the click table", ticket="ENG-2")

    # Out of Engineering: a data scientist may still ask to read Sensitive prod data, not to write it.
    scim.modify(Group, engineering.id, PatchOp[Group](operations=[PatchOperation[Group](
        op=PatchOperation.Op.remove, path=f'members[value eq "{created.id}"]')]))

    sue.refresh_from_db()
    assert set(sue.groups.values_list("company_role__slug", flat=True)) == {"data_scientist"}
    assert Grant.objects.get(request=read).status == GrantStatus.ACTIVE
    write.refresh_from_db()
    assert write.status == RequestStatus.CANCELLED
    assert AuditEvent.objects.filter(action="request.cancelled", object_id=str(write.pk), actor_name="scim:okta").exists()

    # Out of Data Science too: no role asks for anything, so the grant ends.
    scim.modify(Group, science.id, PatchOp[Group](operations=[PatchOperation[Group](
        op=PatchOperation.Op.remove, path=f'members[value eq "{created.id}"]')]))
    assert Grant.objects.get(request=read).status == GrantStatus.REVOKED
    assert scim.query(User, created.id).active is True  # only access went, not the person


def test_the_client_filters_and_pages_through_users(scim):
    for name in ("amy", "andy", "ann", "bob"):
        provision(scim, name)

    first = scim.query(User, query_parameters={"filter": 'userName sw "a" and emails.value co "corp"',
                                               "startIndex": 1, "count": 2})
    second = scim.query(User, query_parameters={"filter": 'userName sw "a"', "startIndex": 3, "count": 2})

    assert first.total_results == 3 and [u.user_name for u in first.resources] == ["amy", "andy"]
    assert second.start_index == 3 and [u.user_name for u in second.resources] == ["ann"]
    with pytest.raises(SCIMException) as error:
        scim.query(User, query_parameters={"filter": 'userName zz "a"'})
    assert error.value.to_error().scim_type == "invalidFilter"
