"""Walk every URL of the project as every company role, an admin, a signed-in user without a
role and an anonymous outsider, and compare what each gets with an explicit table.

New URLs fail this test until they are classified in ``EXPECTED`` (by URL name, or by route
for unnamed patterns) and until ``fill`` knows what to put in their path parameters, so no
endpoint goes unchecked. Every request runs in a savepoint that is rolled back, so each one
sees the same objects (an approval by one principal does not change what the next one sees).

An outcome is *access* when the answer is 2xx, or a redirect anywhere but the login page;
*refused* when it is 401, 403, 404, 405 or a redirect to the login page; a 400 is neither
(the empty body was refused before or after the permission check; nothing happened).
A principal the table allows must get access on GET and must not be refused on a write;
anyone else must never get access, and must not write an audit event.
"""

import re
import uuid

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.views import APIView

from access import grants
from access.models import AuditEvent, MetadataProposal, RolePermission
from access.roles import COMPANY_ROLES
from catalog.models import ColumnSuggestion, Connection, SyncRun
from catalog.services import dataset_register
from lineage.models import EventStatus, LineageEvent
from tests.factories import (
    StoreFactory,
    UserFactory,
    column_payload,
    dataset_create,
    registration_payload,
    service_account_with_key,
)

ROLES = [slug for slug, *_ in COMPANY_ROLES]
PRINCIPALS = ROLES + ["admin", "no_role", "anonymous"]

# Who is who in the scene built by ``scene`` below.
SIGNED_IN = frozenset(ROLES + ["admin", "no_role"])
ANYONE = frozenset(PRINCIPALS)
NOBODY = frozenset()
ADMIN = frozenset({"admin"})
# The dataset is prod and Sensitive: every role's standing gives metadata there, except the
# aggregated-only ones (product managers, executives) and the user without a role.
SEES_DATASET = frozenset(ROLES + ["admin"]) - {"product_manager", "executive"}
REGISTRARS = frozenset({"data_engineer", "platform_engineer", "admin"})
OWNER = "data_engineer"  # owns the dataset
LINEAGE_SENDER = "data_engineer"  # sent the scene's OpenLineage event
EDITS_DATASET = REGISTRARS  # registrars edit every dataset; the owner is one of them
STORE_MANAGERS = frozenset({"platform_engineer", "admin"})
AUDITORS = frozenset({"security_engineer", "admin"})
ACCESS_REVIEWERS = frozenset({OWNER, "admin", "security_engineer"})  # the dataset is Sensitive
ENFORCEMENT_MANAGERS = frozenset({OWNER, "admin", "security_engineer"})  # see the enforcement plan
REQUESTER = "data_scientist"  # asked to read the Sensitive dataset (pending)
SEES_REQUEST = frozenset({REQUESTER, OWNER, "security_engineer", "admin"})
APPROVERS = frozenset({OWNER, "admin"})  # Sensitive: no security approval needed
HOLDER = "software_engineer"  # holds a live break-glass grant on the dataset
SEES_GRANT = frozenset({HOLDER, OWNER, "security_engineer", "admin"})
BREAK_GLASS_REVIEWERS = frozenset({OWNER, "admin", "security_engineer"})  # security engineers review every one
# Owners, registrars and admins name stewards (the scene has a steward user and a steward group,
# neither of them a principal of the walk); on the pages only those who also see the access review.
STEWARD_EDITORS = REGISTRARS
STEWARD_PAGE_EDITORS = frozenset({OWNER, "admin"})
BREAK_GLASS_ROLES = frozenset({"software_engineer", "ops_engineer", "platform_engineer"})
# The owner proposed lowering the Sensitive column: security engineers and admins review it (the
# steward could too; the owner never reviews their own proposal).
PROPOSAL_REVIEWERS = frozenset({"security_engineer", "admin"})
# May ask for read on prod Sensitive just in time (standing is metadata for all of them).
MAY_REQUEST = frozenset({"data_scientist", "security_engineer", "software_engineer", "data_analyst",
                         "data_engineer", "platform_engineer", "ops_engineer"})


def rule(get, post=None, note="", only_refusals=False, checked=True):
    """``get``: who gets access on GET; ``post``: who may write (default: the same).
    ``only_refusals``: only check that nobody else gets access (the view refuses even some of
    those, by its own finer rules). ``checked=False``: only server errors are checked."""
    return {"get": frozenset(get), "post": frozenset(get if post is None else post), "note": note,
            "only_refusals": only_refusals, "checked": checked}


# Staff only (the admin is the only staff member here); each ModelAdmin refuses more itself
# (append-only models have no add or delete, not even for superusers).
ADMIN_SITE = rule(ADMIN, only_refusals=True, note="Django admin")

EXPECTED = {
    # Sign-in, schema and docs are public.
    "login": rule(ANYONE),
    "logout": rule(ANYONE, checked=False, note="POST only; signing out protects nothing"),
    "schema": rule(ANYONE, post=NOBODY),
    "api-docs": rule(ANYONE, post=NOBODY),
    "admin:*": ADMIN_SITE,
    "admin:login": rule(ANYONE, note="the admin's own sign-in page"),
    "admin:logout": rule(ANYONE, checked=False, note="signing out protects nothing"),
    "admin:view_on_site": rule(ADMIN, only_refusals=True, note="404 for models without a page"),
    # Catalog API.
    "api:dataset-list": rule(SIGNED_IN, post=REGISTRARS),
    "api:dataset-detail": rule(SEES_DATASET),
    "api:dataset-version-list": rule(SEES_DATASET),
    "api:dataset-version-detail": rule(SEES_DATASET),
    "api:dataset-diff": rule(SEES_DATASET),
    "api:store-list": rule(SIGNED_IN, post=STORE_MANAGERS),
    "api:store-detail": rule(SIGNED_IN, post=STORE_MANAGERS),
    "api:store-connection": rule(STORE_MANAGERS),
    "api:store-connection-test": rule(NOBODY, post=STORE_MANAGERS),
    "api:store-sync-list": rule(SIGNED_IN, post=STORE_MANAGERS),
    "api:sync-run-detail": rule(SIGNED_IN),
    "api:sync-run-event-list": rule(SIGNED_IN),
    "api:suggestion-list": rule(SIGNED_IN),
    "api:suggestion-accept": rule(NOBODY, post=EDITS_DATASET),
    "api:suggestion-reject": rule(NOBODY, post=EDITS_DATASET),
    "api:openlineage": rule(NOBODY, post=REGISTRARS),
    "api/v1/lineage/": rule(NOBODY, post=REGISTRARS, note="OpenLineage path with a slash"),
    "api:lineage-violation-list": rule(SIGNED_IN),
    "api:lineage-job-list": rule(SIGNED_IN),
    "api:lineage-job-detail": rule(SEES_DATASET, note="a job touching the dataset: seen by who sees it"),
    "api:lineage-run-detail": rule(SEES_DATASET, note="a run of that job"),
    "api:lineage-event-list": rule(SIGNED_IN, note="each sees the events they sent (an admin, all)"),
    "api:lineage-run-events": rule(frozenset({LINEAGE_SENDER, "admin"}), note="the run's sender and admins"),
    "api:dataset-lineage": rule(SEES_DATASET),
    "api:column-lineage": rule(SEES_DATASET),
    # Monitoring API.
    "monitoring-api:monitoring-log-push": rule(NOBODY, note="shipper tokens only (tests/monitoring); 401 to people"),
    "monitoring-api:monitoring-event-list": rule(AUDITORS, post=NOBODY),
    "monitoring-api:monitoring-shipper-token-list": rule(AUDITORS, note="POST: 400 for an empty body"),
    "monitoring-api:monitoring-shipper-token-revoke": rule(NOBODY, post=AUDITORS, only_refusals=True,
                                                           note="no shipper token in the scene: 404"),
    "monitoring-api:dataset-usage": rule(SEES_DATASET, post=NOBODY),
    "monitoring-api:webhook-list": rule(AUDITORS, note="POST: 400 for an empty body"),
    "monitoring-api:webhook-detail": rule(NOBODY, post=AUDITORS, only_refusals=True, note="no webhook in the scene: 404"),
    "monitoring-api:webhook-test": rule(NOBODY, post=AUDITORS, only_refusals=True, note="no webhook in the scene: 404"),
    "monitoring-api:webhook-deliveries": rule(NOBODY, post=NOBODY, only_refusals=True,
                                              note="no webhook in the scene: 404"),
    "monitoring-api:webhook-delivery-retry": rule(NOBODY, post=AUDITORS, only_refusals=True,
                                                  note="no delivery in the scene: 404"),
    # Alerts (monitoring/apis.py, monitoring/views.py): for those who work alerts; no alert in the scene.
    "monitoring-api:monitoring-alert-list": rule(AUDITORS, post=NOBODY),
    "monitoring-api:monitoring-alert-detail": rule(NOBODY, only_refusals=True, note="no alert in the scene: 404"),
    "monitoring-api:monitoring-alert-acknowledge": rule(NOBODY, post=AUDITORS, only_refusals=True, note="404"),
    "monitoring-api:monitoring-alert-assign": rule(NOBODY, post=AUDITORS, only_refusals=True, note="404"),
    "monitoring-api:monitoring-alert-resolve": rule(NOBODY, post=AUDITORS, only_refusals=True, note="404"),
    "monitoring-api:monitoring-alert-snooze": rule(NOBODY, post=AUDITORS, only_refusals=True, note="404"),
    "monitoring-api:monitoring-alert-reopen": rule(NOBODY, post=AUDITORS, only_refusals=True, note="404"),
    "monitoring:alert-list": rule(AUDITORS, post=NOBODY),
    "monitoring:alert-count": rule(SIGNED_IN, note="the nav's badge: 0 for who does not work alerts"),
    "monitoring:alert-detail": rule(NOBODY, only_refusals=True, note="no alert in the scene: 404"),
    "monitoring:alert-acknowledge": rule(NOBODY, post=AUDITORS, only_refusals=True, note="404"),
    "monitoring:alert-assign": rule(NOBODY, post=AUDITORS, only_refusals=True, note="404"),
    "monitoring:alert-resolve": rule(NOBODY, post=AUDITORS, only_refusals=True, note="404"),
    "monitoring:alert-snooze": rule(NOBODY, post=AUDITORS, only_refusals=True, note="404"),
    "monitoring:alert-reopen": rule(NOBODY, post=AUDITORS, only_refusals=True, note="404"),
    # Webhook pages (monitoring/webhook_views.py).
    "webhooks:list": rule(AUDITORS, note="POST: 400 for an empty form"),
    "webhooks:detail": rule(NOBODY, post=AUDITORS, only_refusals=True, note="no webhook in the scene: 404"),
    "webhooks:remove": rule(NOBODY, post=AUDITORS, only_refusals=True, note="no webhook in the scene: 404"),
    "webhooks:test": rule(NOBODY, post=AUDITORS, only_refusals=True, note="no webhook in the scene: 404"),
    "webhooks:delivery-retry": rule(NOBODY, post=AUDITORS, only_refusals=True, note="no delivery in the scene: 404"),
    # Access API.
    "access-api:matrix-list": rule(SIGNED_IN),
    "access-api:matrix-cell": rule(SIGNED_IN, post=ADMIN),
    "access-api:request-list": rule(SIGNED_IN, post=MAY_REQUEST - {REQUESTER}),
    "access-api:request-detail": rule(SEES_REQUEST),
    "access-api:request-approve": rule(NOBODY, post=APPROVERS),
    "access-api:request-deny": rule(NOBODY, post=APPROVERS),
    "access-api:request-cancel": rule(NOBODY, post={REQUESTER}),
    "access-api:approval-queue": rule(SIGNED_IN),
    "access-api:grant-list": rule(SIGNED_IN),
    "access-api:grant-export-csv": rule(SIGNED_IN, note="the grants the caller may see"),
    "access-api:grant-detail": rule(SEES_GRANT),
    "access-api:grant-revoke": rule(NOBODY, post=SEES_GRANT),
    "access-api:grant-extend": rule(NOBODY, post={HOLDER}),
    "access-api:grant-retry": rule(NOBODY, post=APPROVERS | AUDITORS, note="400 when nothing failed"),
    "access-api:grant-review": rule(NOBODY, post=BREAK_GLASS_REVIEWERS),
    "access-api:break-glass": rule(NOBODY, post=BREAK_GLASS_ROLES),
    "access-api:decide": rule(SEES_DATASET),
    "access-api:audit-list": rule(AUDITORS),
    "access-api:audit-export-csv": rule(AUDITORS),
    "access-api:audit-export-json": rule(AUDITORS),
    "access-api:audit-verify": rule(AUDITORS),
    "access-api:access-review": rule(ACCESS_REVIEWERS),
    "access-api:access-review-confirm": rule(NOBODY, post=ACCESS_REVIEWERS),
    "access-api:proposal-list": rule(SIGNED_IN),
    "access-api:proposal-detail": rule(SEES_DATASET),
    "access-api:proposal-approve": rule(NOBODY, post=PROPOSAL_REVIEWERS),
    "access-api:proposal-reject": rule(NOBODY, post=PROPOSAL_REVIEWERS, note="400: a rejection needs a reason"),
    "access-api:proposal-cancel": rule(NOBODY, post={OWNER}),
    "access-api:dataset-steward-list": rule(SEES_DATASET, post=STEWARD_EDITORS),
    "access-api:dataset-enforcement-plan": rule(ENFORCEMENT_MANAGERS),
    "access-api:dataset-steward-user": rule(NOBODY, post=STEWARD_EDITORS),
    "access-api:dataset-steward-group": rule(NOBODY, post=STEWARD_EDITORS),
    "access-api:service-account-list": rule(SIGNED_IN, note="an empty list for all but admins"),
    "access-api:service-token-list": rule(ADMIN, note="POST makes a new token"),
    "access-api:service-token-revoke": rule(NOBODY, post=ADMIN),
    # Catalog pages.
    "catalog:dataset-list": rule(SIGNED_IN),
    "catalog:dataset-create": rule(REGISTRARS),
    "catalog:dataset-detail": rule(SEES_DATASET),
    "catalog:dataset-edit": rule(EDITS_DATASET),
    "catalog:dataset-diff": rule(SEES_DATASET),
    "catalog:dataset-version-detail": rule(SEES_DATASET),
    "catalog:store-list": rule(SIGNED_IN),
    "catalog:store-create": rule(STORE_MANAGERS),
    "catalog:store-detail": rule(SIGNED_IN),
    "catalog:store-edit": rule(STORE_MANAGERS),
    "catalog:connection-edit": rule(STORE_MANAGERS),
    "catalog:connection-delete": rule(NOBODY, post=STORE_MANAGERS),
    "catalog:connection-test": rule(NOBODY, post=STORE_MANAGERS),
    "catalog:store-sync": rule(NOBODY, post=STORE_MANAGERS),
    "catalog:sync-run-detail": rule(SIGNED_IN),
    "catalog:sync-run-progress": rule(SIGNED_IN),
    "catalog:suggestion-list": rule(SIGNED_IN),
    "catalog:suggestion-count": rule(SIGNED_IN),
    "catalog:suggestion-accept": rule(NOBODY, post=EDITS_DATASET),
    "catalog:suggestion-reject": rule(NOBODY, post=EDITS_DATASET),
    "lineage:column-impact": rule(SEES_DATASET),
    "lineage:violation-list": rule(SIGNED_IN),
    "lineage:job-list": rule(SIGNED_IN),
    "lineage:job-detail": rule(SEES_DATASET),
    "lineage:run-detail": rule(SEES_DATASET),
    # Access pages.
    "access:role-matrix": rule(SIGNED_IN),
    "access:role-cell-edit": rule(ADMIN),
    "access:request-create": rule(SEES_DATASET, post=MAY_REQUEST - {REQUESTER} | {"admin"}),
    "access:request-rules": rule(SEES_DATASET, post=NOBODY, note="the request form's summary (GET only)"),
    "access:my-access": rule(SIGNED_IN),
    "access:approval-queue": rule(SIGNED_IN),
    "access:approval-count": rule(SIGNED_IN),
    "access:request-detail": rule(SEES_REQUEST),
    "access:request-review": rule(NOBODY, post=APPROVERS),
    "access:request-cancel": rule(NOBODY, post={REQUESTER}),
    "access:grant-list": rule(AUDITORS),
    "access:grant-export-csv": rule(AUDITORS),
    "access:grant-detail": rule(SEES_GRANT),
    "access:grant-revoke": rule(NOBODY, post=SEES_GRANT),
    "access:grant-retry": rule(NOBODY, post=APPROVERS | AUDITORS, note="redirects back with a message"),
    "access:grant-extend": rule(NOBODY, post={HOLDER}),
    "access:break-glass-review": rule(NOBODY, post=BREAK_GLASS_REVIEWERS),
    "access:break-glass": rule(BREAK_GLASS_ROLES),
    "access:audit-list": rule(AUDITORS),
    "access:audit-export-csv": rule(AUDITORS),
    "access:audit-export-json": rule(AUDITORS),
    "access:audit-verify": rule(AUDITORS),
    "access:access-review-index": rule(SIGNED_IN),
    "access:access-review": rule(ACCESS_REVIEWERS),
    "access:enforcement-plan": rule(ENFORCEMENT_MANAGERS),
    "access:steward-add": rule(NOBODY, post=STEWARD_PAGE_EDITORS),
    "access:proposal-list": rule(SIGNED_IN),
    "access:proposal-detail": rule(SEES_DATASET),
    "access:proposal-review": rule(NOBODY, post=PROPOSAL_REVIEWERS, only_refusals=True,
                                   note="an empty form is shown again (400) to everyone who sees the proposal"),
    "access:proposal-cancel": rule(NOBODY, post={OWNER}),
    "access:steward-remove": rule(NOBODY, post=STEWARD_PAGE_EDITORS),
    "access:service-account-list": rule(ADMIN),
    "access:service-account-detail": rule(ADMIN),
    "access:service-token-create": rule(NOBODY, post=ADMIN, note="an empty form is shown again (400)"),
    "access:service-token-revoke": rule(NOBODY, post=ADMIN),
    # Identity: single sign-on (no provider is configured in the walk), SCIM (the provisioning
    # client's bearer token only: sessions and API tokens get 401), second factors.
    "identity:oidc-login": rule(NOBODY, note="404 while no provider is configured"),
    "identity:oidc-callback": rule(NOBODY, note="refused without a sign-in started"),
    "identity:scim-*": rule(NOBODY, note="the SCIM token only"),
    "identity:mfa-home": rule(SIGNED_IN),
    "identity:mfa-verify": rule(SIGNED_IN),
    "identity:mfa-totp": rule(SIGNED_IN, note="an empty confirmation is shown again (400)"),
    "identity:mfa-recovery-codes": rule(NOBODY, post=SIGNED_IN, note="POST only: new codes for oneself"),
    "identity:mfa-factor-remove": rule(NOBODY, post=SIGNED_IN, only_refusals=True,
                                       note="each person removes only their own factors (another's: no such factor)"),
    "identity:webauthn-registration-begin": rule(NOBODY, post=SIGNED_IN),
    "identity:webauthn-registration-complete": rule(NOBODY, post=SIGNED_IN, only_refusals=True,
                                                     note="an empty assertion is refused (400)"),
    "identity:webauthn-authentication-begin": rule(NOBODY, post=SIGNED_IN, only_refusals=True),
    "identity:webauthn-authentication-complete": rule(NOBODY, post=SIGNED_IN, only_refusals=True,
                                                       note="an empty assertion is refused (400)"),
    "identity:webauthn-jsi18n": rule(ANYONE, post=NOBODY, note="the WebAuthn script's translations"),
}


# Query strings some GET endpoints need to answer at all.
QUERIES = {
    "api:dataset-diff": lambda scene: "?from=1&to=1",
    "access-api:decide": lambda scene: f"?dataset={scene['dataset'].pk}&action=read",
}


# The URL tree ------------------------------------------------------------------------------------


def url_patterns():
    """``[(key, route, pattern)]`` for every pattern: key is the namespaced name, or the route
    for unnamed patterns."""
    found = []

    def walk(resolver, prefix, namespace):
        for entry in resolver.url_patterns:
            if isinstance(entry, URLResolver):
                inner = f"{namespace}:{entry.namespace}" if namespace and entry.namespace else (entry.namespace or namespace)
                walk(entry, prefix + str(entry.pattern), inner)
            elif isinstance(entry, URLPattern):
                route = prefix + str(entry.pattern)
                name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
                found.append((name or route, route, entry))

    walk(get_resolver(), "", "")
    return found


def rule_for(key):
    if key in EXPECTED:
        return EXPECTED[key]
    if key.startswith("identity:scim-"):
        return EXPECTED["identity:scim-*"]
    if key.startswith("admin:") or key.startswith("admin/"):
        return EXPECTED["admin:*"]
    return None


PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>|\(\?P<(?P<group>\w+)>[^)]*\)")


def _admin_object_id(route):
    match = re.match(r"admin/(\w+)/(\w+)/", route)
    model = apps.get_model(match.group(1), match.group(2))
    obj = model._default_manager.order_by("pk").first()
    return str(obj.pk) if obj else "0"  # a missing object: the admin redirects staff to its index


def _totp_device(scene):
    """A confirmed authenticator of the steward (no principal of the walk), for the admin's pages
    of TOTP devices (django-otp's config and QR code pages need one that exists)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.get_or_create(user=scene["steward"], name="walk", defaults={"confirmed": True})[0]


def fill(route, scene):
    """The route as a URL, its parameters filled with the scene's objects, or None with the
    parameter it could not fill."""
    by_segment = {
        ("datasets", "pk"): scene["dataset"].pk,
        ("versions", "number"): scene["dataset"].current_version.number,
        ("columns", "column_id"): scene["column"].pk,
        ("stores", "pk"): scene["store"].pk,
        ("syncs", "pk"): scene["run"].pk,
        ("jobs", "pk"): scene["job"].pk,
        ("runs", "run_id"): scene["lineage_run"].run_id,
        ("suggestions", "pk"): scene["suggestion"].pk,
        ("requests", "pk"): scene["request"].pk,
        ("grants", "pk"): scene["grant"].pk,
        ("proposals", "pk"): scene["proposal"].pk,
        ("matrix", "pk"): scene["cell"].pk,
        ("roles", "pk"): scene["cell"].pk,
        ("request", "dataset_pk"): scene["dataset"].pk,
        ("break-glass", "dataset_pk"): scene["dataset"].pk,
        ("reviews", "dataset_pk"): scene["dataset"].pk,
        ("enforcement", "dataset_pk"): scene["dataset"].pk,
        ("reviews", "dataset_id"): scene["dataset"].pk,
        ("r", "content_type_id"): ContentType.objects.get_for_model(type(scene["dataset"])).pk,
        ("user", "id"): scene["users"]["admin"].pk,
        ("users", "name"): scene["steward"].username,
        ("groups", "name"): scene["steward_group"].name,
        ("service-accounts", "pk"): scene["service_account"].pk,
        ("tokens", "token_pk"): scene["service_token"].pk,
        ("shipper-tokens", "pk"): 1,
        ("webhooks", "pk"): 1,
        ("alerts", "pk"): 1,
        ("deliveries", "pk"): 1,
        ("Users", "pk"): scene["users"]["admin"].pk,
        ("Groups", "pk"): 1,
        ("Schemas", "schema_id"): "urn:ietf:params:scim:schemas:core:2.0:User",
        ("ResourceTypes", "name"): "User",
        ("factors", "kind"): "totp",
        ("<str:kind>", "pk"): 1,
        ("totpdevice", "pk"): _totp_device(scene).pk,
    }
    missing = []

    def value(match):
        name = match.group("name") or match.group("group")
        segments = [s for s in route[:match.start()].split("/") if s]
        previous = segments[-1] if segments else ""
        if route.startswith("admin/"):
            if name == "object_id":  # view_on_site takes the dataset; model pages their own objects
                return str(scene["dataset"].pk) if route.startswith("admin/r/") else _admin_object_id(route)
            if name == "app_label":
                return "catalog"
            if name == "url":
                return "no-such-page/"
        found = by_segment.get((previous, name))
        if found is None:
            missing.append(f"{name} (after '{previous}/')")
            return "?"
        return str(found)

    url = "/" + PARAMETER.sub(lambda m: str(value(m)), route).replace("^", "").replace("$", "")
    return (None, missing) if missing else (url, [])


# The scene ---------------------------------------------------------------------------------------


def lineage_job_touching(dataset, source_column, target_column, *, name, sql="", parent=None):
    """A dbt model job (and one run of it) whose only edge goes between two columns of ``dataset``,
    so whoever sees the dataset sees the job."""
    import uuid

    from django.utils import timezone

    from lineage.models import EdgeKind, EdgeLevel, Job, Run
    from lineage.services import EdgeSpec, column_nodes_ensure, lineage_edges_upsert

    job = Job.objects.create(namespace="dbt", name=name, job_type="MODEL", integration="DBT", processing_type="BATCH",
                             sql=sql, sql_dialect="postgres" if sql else "", sql_event_time=timezone.now() if sql else None)
    nodes = column_nodes_ensure(dataset, [source_column, target_column])
    lineage_edges_upsert([EdgeSpec(nodes[source_column.lower()].pk, nodes[target_column.lower()].pk, EdgeLevel.COLUMN,
                                   EdgeKind.COPY, job_id=job.pk)])
    run = Run.objects.create(run_id=uuid.uuid4(), job=job, state="COMPLETE", last_event_time=timezone.now(),
                             parent=parent, parent_run_id=parent.run_id if parent else None)
    return job, run


@pytest.fixture
def scene(db):
    users = {slug: UserFactory(username=f"walk_{slug}", roles=[slug]) for slug in ROLES}
    users["admin"] = UserFactory(username="walk_admin", is_staff=True, is_superuser=True)
    users["no_role"] = UserFactory(username="walk_nobody")
    store = StoreFactory(name="walkstore", environment="prod", platform="postgresql")
    Connection.objects.create(store=store, host="127.0.0.1", port=1, database="nowhere", username="nobody")
    dataset = dataset_create(
        principal=users[OWNER], store=store, name="sales.orders", owners=[users[OWNER].username],
        columns=[column_payload("order_id"), column_payload("email", sensitivity="Sensitive")],
    )
    column = dataset.columns.get(name="email")
    run = SyncRun.objects.create(store=store, status="succeeded", trigger="manual")
    suggestion = ColumnSuggestion.objects.create(
        dataset=dataset, column=dataset.columns.get(name="order_id"), label="email", sensitivity=2, confidence=0.9,
        evidence={"name": "test"}, run=run,
    )
    request = grants.access_request_create(
        principal=users[REQUESTER], dataset=dataset, level="read", duration=4,
        justification="Quarterly churn analysis", ticket="OPS-1",
    )
    grant = grants.break_glass_activate(
        principal=users[HOLDER], dataset=dataset, level="read", reason="Incident 42: orders stuck", minutes=30,
    )
    cell = RolePermission.objects.get(role__slug="data_scientist", environment="prod", sensitivity=2)
    steward, steward_group = UserFactory(username="walk_steward"), Group.objects.create(name="walk-stewards")
    grants.dataset_steward_add(principal=users[OWNER], dataset=dataset, user=steward)
    grants.dataset_steward_add(principal=users[OWNER], dataset=dataset, group=steward_group)
    dataset_register(principal=users[OWNER], payload=registration_payload(
        store=store, name="sales.orders", columns=[column_payload("order_id"), column_payload("email", sensitivity="Public")]))
    proposal = MetadataProposal.objects.get(dataset=dataset)
    service_account, _ = service_account_with_key(username="walk_pipeline")
    job, lineage_run = lineage_job_touching(dataset, "order_id", "email", name="walk.orders_job")
    lineage_event = LineageEvent.objects.create(
        digest="walk", event_type="COMPLETE", event_time=timezone.now(), run_uuid=lineage_run.run_id, payload={},
        received_by=users[LINEAGE_SENDER], status=EventStatus.APPLIED,
    )
    return {"lineage_event": lineage_event, "job": job, "lineage_run": lineage_run, "service_account": service_account, "service_token": service_account.service_tokens.get(), "users": users, "store": store, "dataset": dataset, "column": column, "run": run, "suggestion": suggestion,
            "request": request, "grant": grant, "cell": cell, "steward": steward, "steward_group": steward_group,
            "proposal": proposal}


# The walk ----------------------------------------------------------------------------------------


def write_methods(pattern):
    """The write methods to try: the ones a DRF view implements; POST for Django views (they
    say themselves which methods they take)."""
    view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
    if view_class is not None and issubclass(view_class, APIView):
        return [m for m in ("post", "put", "patch", "delete") if hasattr(view_class, m)]
    return ["post"]


def is_api(pattern) -> bool:
    view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
    return view_class is not None and issubclass(view_class, APIView)


def outcome(response, *, form_post: bool) -> str:
    status = response.status_code
    if form_post and status == 200:
        return "invalid"  # a page's form shown again with its errors; success redirects
    if 200 <= status < 300:
        return "access"
    if status in (301, 302, 303, 307, 308):
        location = response.get("Location", "")
        return "refused" if "/login/" in location else "access"
    if status in (401, 403, 404, 405):
        return "refused"
    if status == 400:
        return "invalid"
    return f"error {status}"


def _request(client, method, url):
    with transaction.atomic():
        before = AuditEvent.objects.count()
        response = client.generic(method.upper(), url, data=b"", content_type="application/json")
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        wrote = AuditEvent.objects.count() > before
        transaction.set_rollback(True)
    return response, wrote


def test_every_url_is_classified_and_fillable(scene):
    problems = []
    for key, route, _ in url_patterns():
        if rule_for(key) is None:
            problems.append(f"{key!r} ({route}) is missing from EXPECTED: say who may use it")
        _, missing = fill(route, scene)
        if missing:
            problems.append(f"{key!r} ({route}): no value for {', '.join(missing)}; add it to fill()")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_walk_every_url(scene, principal):
    user = scene["users"].get(principal)
    client = Client()
    if user is not None:
        client.force_login(user)
    problems = []
    for key, route, pattern in url_patterns():
        expected = rule_for(key)
        url, missing = fill(route, scene)
        if expected is None or missing:
            continue  # reported by test_every_url_is_classified_and_fillable
        for method in ["get"] + write_methods(pattern):
            allowed = principal in expected["get" if method == "get" else "post"]
            target = url + (QUERIES[key](scene) if method == "get" and key in QUERIES else "")
            response, wrote_audit = _request(client, method, target)
            if "logout" in key and user is not None:
                client.force_login(user)
            got = outcome(response, form_post=method != "get" and not is_api(pattern))
            if got.startswith("error"):
                problems.append(f"{method.upper()} {target} [{key}] -> {got}")
            elif not expected["checked"] or (allowed and expected["only_refusals"]):
                pass
            elif allowed and method == "get" and got != "access":
                problems.append(f"GET {target} [{key}] -> {response.status_code}, expected access")
            elif allowed and method != "get" and got == "refused":
                problems.append(f"{method.upper()} {target} [{key}] -> {response.status_code}, expected to be let in")
            elif not allowed and got == "access":
                problems.append(f"{method.upper()} {target} [{key}] -> {response.status_code}, must be refused")
            elif not allowed and wrote_audit:
                problems.append(f"{method.upper()} {target} [{key}] wrote an audit event, must be refused")
    assert not problems, f"{principal}:\n" + "\n".join(problems)


def test_anonymous_gets_nothing_but_sign_in_schema_and_docs():
    checked = {key: entry for key, entry in EXPECTED.items() if entry["checked"]}
    assert set(EXPECTED) - set(checked) == {"logout", "admin:logout"}
    assert {key for key, entry in checked.items() if "anonymous" in entry["get"]} == {"login", "schema", "api-docs", "admin:login",
                                                                                           "identity:webauthn-jsi18n"}
    assert {key for key, entry in checked.items() if "anonymous" in entry["post"]} == {"login", "admin:login"}


def test_the_audit_trail_and_the_matrix_edit_are_classified_narrowly():
    audit = {key for key in EXPECTED if "audit" in key}
    assert audit and all(EXPECTED[key]["get"] | EXPECTED[key]["post"] <= AUDITORS for key in audit)
    assert EXPECTED["access-api:matrix-cell"]["post"] == ADMIN
    assert EXPECTED["access:role-cell-edit"]["post"] == ADMIN
