"""The one decision: may a user do an action on a dataset (and columns) now?"""

from datetime import timedelta

import pytest
from django.utils import timezone

from access.decisions import access_decide
from access.grants import grant_revoke
from access.models import AccessLevel, GrantStatus
from access.roles import COMPANY_ROLES
from catalog.selectors import dataset_visible
from tests.access.test_grants import (  # noqa: F401 - fixtures shared with the grant tests
    clock,
    fresh,
    granted,
    make_dataset,
    on_call,
    owner,
    prod_store,
    regular,
    restricted,
    scientist,
    second_owner,
    security,
    sensitive,
)
from tests.factories import StoreFactory, UserFactory

ALL_ROLES = [slug for slug, *_ in COMPANY_ROLES]


# Standing access from the role matrix -----------------------------------------------------------


def test_data_scientist_reads_prod_regular_by_standing(scientist, regular):
    decision = access_decide(scientist, "read", regular)
    assert decision.allowed and decision.via == "standing" and decision.level == AccessLevel.READ


def test_data_scientist_does_not_read_prod_sensitive_but_sees_its_metadata(scientist, sensitive):
    assert not access_decide(scientist, "read", sensitive)
    assert access_decide(scientist, "read", sensitive).level == AccessLevel.METADATA
    assert access_decide(scientist, "metadata", sensitive).via == "standing"


@pytest.mark.parametrize("role", ALL_ROLES)
def test_no_role_reads_prod_restricted_by_standing(role, restricted):
    user = UserFactory(username=f"holder_of_{role}", roles=[role])
    decision = access_decide(user, "read", restricted)
    assert not decision.allowed
    assert decision.level <= AccessLevel.METADATA


def test_all_nine_roles_are_checked():
    assert len(ALL_ROLES) == 9


def test_dev_data_is_open_to_software_engineers_but_prod_is_not(on_call, registrar):
    dev = StoreFactory(name="dev_db", environment="dev", platform="bigquery")
    prod = StoreFactory(name="prod_db", environment="prod", platform="bigquery")
    dev_orders = make_dataset(registrar, dev, "sales.orders", {"email": "Sensitive"})
    prod_orders = make_dataset(registrar, prod, "sales.orders", {"email": "Sensitive"})
    assert access_decide(on_call, "write", dev_orders)
    assert not access_decide(on_call, "read", prod_orders)


# Columns ------------------------------------------------------------------------------------------


def test_a_column_scope_is_judged_by_its_highest_column(scientist, restricted):
    assert access_decide(scientist, "read", restricted, columns=["person_id"])  # Regular: standing read
    assert not access_decide(scientist, "read", restricted, columns=["person_id", "national_id"])
    assert not access_decide(scientist, "read", restricted)  # the whole dataset is Restricted


def test_a_grant_on_some_columns_does_not_cover_others(scientist, sensitive):
    grant = granted(scientist, sensitive, columns=["email"])
    decision = access_decide(scientist, "read", sensitive, columns=["email"])
    assert decision.allowed and decision.grant == grant
    assert not access_decide(scientist, "read", sensitive, columns=["phone"])
    assert not access_decide(scientist, "read", sensitive, columns=["email", "phone"])
    assert not access_decide(scientist, "read", sensitive)  # the whole dataset


# Grants --------------------------------------------------------------------------------------------


def test_a_grant_does_not_cover_columns_made_more_sensitive_after_its_approval(scientist, sensitive):
    """The decision alone, at once: here the classification changes behind the services' back,
    so the grant is still active (the services and the reconciler end it; test_rules_change.py)."""
    grant = granted(scientist, sensitive)  # approved by one owner, as prod Sensitive needs
    sensitive.columns.filter(name="phone").update(sensitivity=3)
    type(sensitive).objects.filter(pk=sensitive.pk).update(sensitivity=3)
    sensitive = fresh(sensitive)
    assert fresh(grant).status == "active"
    assert not access_decide(scientist, "read", sensitive)  # Restricted needs two approvals and security
    assert not access_decide(scientist, "read", sensitive, columns=["phone"])
    assert access_decide(scientist, "read", sensitive, columns=["email", "customer_id"])


def test_an_active_grant_allows_read(scientist, sensitive):
    grant = granted(scientist, sensitive)
    decision = access_decide(scientist, "read", sensitive)
    assert decision.allowed and decision.via == f"grant #{grant.pk}" and decision.grant == grant
    assert not access_decide(scientist, "write", sensitive)  # read was granted, not write


def test_an_expired_grant_is_refused_at_a_later_time_with_no_worker_run(scientist, sensitive):
    grant = granted(scientist, sensitive)
    assert access_decide(scientist, "read", sensitive, at=grant.ends_at - timedelta(seconds=1))
    assert not access_decide(scientist, "read", sensitive, at=grant.ends_at)
    assert not access_decide(scientist, "read", sensitive, at=grant.ends_at + timedelta(hours=1))
    assert fresh(grant).status == GrantStatus.ACTIVE  # nothing marked it expired


def test_an_expired_grant_is_refused_when_the_clock_moves_past_its_end(scientist, sensitive, clock):
    grant = granted(scientist, sensitive)
    clock.move_to(grant.ends_at + timedelta(seconds=1))
    assert not access_decide(scientist, "read", sensitive)
    assert fresh(grant).status == GrantStatus.ACTIVE


def test_a_grant_whose_end_has_passed_is_refused_although_its_row_says_active(scientist, sensitive):
    grant = granted(scientist, sensitive)
    now = timezone.now()
    type(grant).objects.filter(pk=grant.pk).update(starts_at=now - timedelta(hours=5), ends_at=now - timedelta(hours=1))
    assert fresh(grant).status == GrantStatus.ACTIVE
    decision = access_decide(scientist, "read", sensitive)
    assert not decision.allowed and decision.grant is None


def test_a_scheduled_grant_gives_nothing_before_it_starts(scientist, sensitive):
    grant = granted(scientist, sensitive)
    type(grant).objects.filter(pk=grant.pk).update(
        status=GrantStatus.SCHEDULED, starts_at=grant.starts_at + timedelta(hours=1), ends_at=grant.ends_at + timedelta(hours=1)
    )
    assert not access_decide(scientist, "read", sensitive)
    assert access_decide(scientist, "read", sensitive, at=grant.starts_at + timedelta(hours=2))


def test_a_revoked_grant_gives_nothing(scientist, sensitive, owner):
    grant = granted(scientist, sensitive)
    grant_revoke(principal=owner, grant=grant, reason="Project ended")
    assert not access_decide(scientist, "read", sensitive)
    assert not access_decide(scientist, "read", sensitive, at=grant.starts_at + timedelta(minutes=1))


def test_a_grant_to_someone_else_gives_nothing(scientist, sensitive):
    granted(scientist, sensitive)
    colleague = UserFactory(username="sven", roles=["data_scientist"])
    assert not access_decide(colleague, "read", sensitive)


# Who sees which datasets ------------------------------------------------------------------------


@pytest.fixture
def executive(db):
    return UserFactory(username="erin", roles=["executive"])


def test_executives_see_only_aggregated_datasets(executive, registrar, prod_store):
    summary = make_dataset(registrar, prod_store, "sales.daily_totals", {"total": "Regular"}, tags=["aggregated"])
    detail = make_dataset(registrar, prod_store, "sales.order_lines", {"amount": "Regular"})
    assert list(dataset_visible(user=executive)) == [summary]
    assert access_decide(executive, "read", summary).via == "standing"
    assert not access_decide(executive, "metadata", detail)


def test_owners_always_see_their_datasets_metadata(executive, registrar, prod_store):
    owned = make_dataset(registrar, prod_store, "hr.salaries", {"salary": "Restricted"}, owners=[executive])
    not_owned = make_dataset(registrar, prod_store, "hr.reviews", {"rating": "Restricted"})
    assert list(dataset_visible(user=executive)) == [owned]
    assert access_decide(executive, "metadata", owned).via == "owner"
    assert not access_decide(executive, "read", owned)  # owning shows metadata, not the data
    assert not access_decide(executive, "metadata", not_owned)


def test_a_user_without_roles_sees_only_what_they_own(registrar, prod_store):
    nobody = UserFactory(username="nora")
    owned = make_dataset(registrar, prod_store, "ops.runbooks", {"step": "Public"}, owners=[nobody])
    make_dataset(registrar, prod_store, "ops.pages", {"step": "Public"})
    assert list(dataset_visible(user=nobody)) == [owned]


def test_security_engineers_see_all_metadata_but_read_nothing_in_prod(security, regular, restricted):
    assert set(dataset_visible(user=security)) == {regular, restricted}
    assert access_decide(security, "metadata", restricted)
    assert not access_decide(security, "read", regular)



def test_the_visibility_filter_agrees_with_the_decision_on_grants(registrar, prod_store):
    """What lists show is what the decision allows: a live grant on the whole dataset, approved
    for its present tier, shows it; a column grant or one the data outgrew does not."""
    from access.models import AccessRequest, Grant

    nobody = UserFactory(username="nora")  # no role: grants are all they have
    now = timezone.now()

    def grant_on(dataset, *, columns=(), approved_for=None):
        request = AccessRequest.objects.create(
            requester=nobody, dataset=dataset, columns=list(columns), level=AccessLevel.READ, environment="prod",
            sensitivity=dataset.sensitivity if approved_for is None else approved_for, justification="x" * 20,
            duration=timedelta(hours=1), expires_at=now + timedelta(hours=1), status="approved",
        )
        return Grant.objects.create(request=request, user=nobody, dataset=dataset, columns=list(columns),
                                    level=AccessLevel.READ, starts_at=now, ends_at=now + timedelta(hours=1))

    whole = make_dataset(registrar, prod_store, "a.whole", {"id": "Sensitive"})
    by_column = make_dataset(registrar, prod_store, "a.by_column", {"id": "Regular", "email": "Sensitive"})
    outgrown = make_dataset(registrar, prod_store, "a.outgrown", {"id": "Restricted"})
    grant_on(whole)
    grant_on(by_column, columns=["email"])
    grant_on(outgrown, approved_for=2)

    visible = set(dataset_visible(user=nobody))
    assert visible == {whole}
    for dataset in (whole, by_column, outgrown):
        assert bool(access_decide(nobody, "metadata", dataset)) == (dataset in visible)
