"""Changes to what the access decision reads are proposals someone else approves.

Each attack an insider tried (issue 14) is a test here: a steward or a registrar downgrading a
classification, removing a protection, naming themselves owner, adding the tag `aggregated`,
naming stewards of someone else's dataset, and a platform engineer relabelling a prod store as
dev. None of them opens access until someone else approves; changes that tighten apply at once.

The cast: Olga (data analyst) owns warehouse.crm.customers, a prod dataset with a Restricted
`ssn`, a Sensitive `email` and a Regular `id`; Stella (data analyst) is its steward; Dave (data
engineer) registers datasets; Paul is a product manager; Sam is a security engineer, Sue another
one; Pat is a platform engineer.
"""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from rest_framework.test import APIClient

from access import decisions, grants, proposals
from access.audit import audit_verify
from access.models import AuditEvent, MetadataProposal, ProposalStatus
from catalog.models import Column, Dataset, DataStore
from catalog.services import dataset_register, store_save
from tests.factories import StoreFactory, UserFactory, column_payload, registration_payload

pytestmark = pytest.mark.django_db

API = "/api/v1"
NAME = "crm.customers"


@pytest.fixture
def prod(db):
    return StoreFactory(name="warehouse", environment="prod")


@pytest.fixture
def cast(db):
    return {
        "olga": UserFactory(username="olga", roles=["data_analyst"]),
        "stella": UserFactory(username="stella", roles=["data_analyst"]),
        "dave": UserFactory(username="dave", roles=["data_engineer"]),
        "paul": UserFactory(username="paul", roles=["product_manager"]),
        "sam": UserFactory(username="sam", roles=["security_engineer"]),
        "sue": UserFactory(username="sue", roles=["security_engineer"]),
        "pat": UserFactory(username="pat", roles=["platform_engineer"]),
    }


def _columns(ssn="Restricted", email="Sensitive", email_protection="Hashed", extra=()):
    return [
        column_payload("id", sensitivity="Regular"),
        column_payload("email", sensitivity=email, protection=email_protection),
        column_payload("ssn", sensitivity=ssn),
        *extra,
    ]


@pytest.fixture
def customers(prod, cast):
    dataset, _ = dataset_register(principal=cast["dave"], payload=registration_payload(
        store=prod, name=NAME, columns=_columns(), owners=["olga"],
    ))
    grants.dataset_steward_add(principal=cast["olga"], dataset=dataset, user=cast["stella"])
    return Dataset.objects.get(pk=dataset.pk)


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _register(user, prod, **fields):
    fields.setdefault("columns", _columns())
    return _client(user).post(f"{API}/datasets/", registration_payload(store=prod, name=NAME, **fields), format="json")


def _column(dataset, name) -> Column:
    return Column.objects.get(dataset=dataset, name=name)


def _fresh(user):
    return type(user).objects.get(pk=user.pk)  # no cached roles, stewardships or grants


# Downgrades by re-registration ----------------------------------------------------------------


def test_steward_downgrade_to_public_is_held_back_and_proposed(customers, prod, cast):
    response = _register(cast["stella"], prod, columns=_columns(ssn="Public", email="Public", email_protection="None"))

    assert response.status_code == 200  # nothing else changed: no new version
    body = response.json()
    assert body["pendingProposal"]["status"] == "pending"
    assert "ssn sensitivity Restricted → Public" in body["pendingProposal"]["summary"]
    assert "email protection Hashed → None" in body["pendingProposal"]["summary"]
    assert {column["name"]: column["sensitivity"] for column in body["columns"]} == {
        "id": "Regular", "email": "Sensitive", "ssn": "Restricted"}
    assert _column(customers, "ssn").sensitivity == 3
    assert _column(customers, "email").protection == "hashed"
    # The steward still cannot read the data: the decision sees Restricted.
    assert not decisions.access_decide(_fresh(cast["stella"]), "read", Dataset.objects.get(pk=customers.pk))
    assert AuditEvent.objects.filter(action="proposal.created", actor=cast["stella"], dataset=customers).exists()


def test_the_rest_of_a_version_lands_while_the_downgrade_waits(customers, prod, cast):
    response = _register(cast["dave"], prod, columns=_columns(ssn="Regular", extra=[column_payload("city")]))

    assert response.status_code == 201
    assert response.json()["pendingProposal"] is not None
    dataset = Dataset.objects.get(pk=customers.pk)
    assert dataset.current_version.number == 2
    assert [c["name"] for c in dataset.current_version.columns] == ["id", "email", "ssn", "city"]
    assert _column(dataset, "ssn").sensitivity == 3


def test_the_same_downgrade_sent_again_is_the_same_proposal(customers, prod, cast):
    first = _register(cast["dave"], prod, columns=_columns(ssn="Public")).json()["pendingProposal"]["id"]
    second = _register(cast["dave"], prod, columns=_columns(ssn="Public")).json()["pendingProposal"]["id"]
    assert first == second
    assert MetadataProposal.objects.filter(dataset=customers).count() == 1


def test_dropping_a_column_and_adding_it_back_lower_is_still_a_downgrade(customers, prod, cast):
    without_ssn = [column_payload("id", sensitivity="Regular"),
                   column_payload("email", sensitivity="Sensitive", protection="Hashed")]
    assert _register(cast["dave"], prod, columns=without_ssn).status_code == 201
    response = _register(cast["dave"], prod, columns=[*without_ssn, column_payload("ssn", sensitivity="Public")])

    assert response.status_code == 201
    assert response.json()["pendingProposal"] is not None
    assert _column(customers, "ssn").sensitivity == 3


def test_raising_sensitivity_and_adding_protection_apply_at_once_and_are_audited(customers, prod, cast):
    response = _register(cast["stella"], prod, columns=[
        column_payload("id", sensitivity="Sensitive", protection="Masked"),
        column_payload("email", sensitivity="Sensitive", protection="Hashed"),
        column_payload("ssn", sensitivity="Restricted"),
    ])

    assert response.status_code == 201
    assert response.json()["pendingProposal"] is None
    assert _column(customers, "id").sensitivity == 2
    event = AuditEvent.objects.get(action="dataset.classification_changed", dataset=customers)
    assert event.actor == cast["stella"]
    assert event.details["columns"] == [{"name": "id", "sensitivity": {"from": "Regular", "to": "Sensitive"},
                                         "protection": {"from": "None", "to": "Masked"}}]


def test_downgrade_through_the_edit_form_is_proposed(customers, cast, client):
    client.force_login(cast["stella"])
    columns = list(Dataset.objects.get(pk=customers.pk).current_version.columns)
    data = {"store": "warehouse", "name": NAME, "description": "x", "owners": "olga",
            "columns-TOTAL_FORMS": str(len(columns)), "columns-INITIAL_FORMS": "0"}
    for index, column in enumerate(columns):
        for key, value in column.items():
            field = {"originatingSource": "originating_source"}.get(key, key)
            data[f"columns-{index}-{field}"] = "Public" if key == "sensitivity" else value
    response = client.post(f"/datasets/{customers.pk}/edit/", data, follow=True)

    assert response.status_code == 200
    assert "Not applied yet" in response.content.decode()
    assert _column(customers, "ssn").sensitivity == 3
    assert MetadataProposal.objects.filter(dataset=customers, status=ProposalStatus.PENDING).exists()


# Reviews ----------------------------------------------------------------------------------------


def _downgrade(customers, prod, cast, ssn="Restricted", email="Public"):
    _register(cast["stella"], prod, columns=_columns(ssn=ssn, email=email))
    return MetadataProposal.objects.get(dataset=customers, status=ProposalStatus.PENDING)


def test_nobody_reviews_their_own_proposal(customers, prod, cast):
    proposal = _downgrade(customers, prod, cast)
    response = _client(cast["stella"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    assert response.status_code == 403


def test_sensitive_data_needs_a_security_engineer(customers, prod, cast):
    proposal = _downgrade(customers, prod, cast)  # email: Sensitive -> Public
    assert proposal.security_approval_required and proposal.approvals_required == 1

    approved = _client(cast["olga"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    assert approved.status_code == 200
    assert approved.json()["status"] == "pending"  # the owner agreed; a security engineer must too
    assert _column(customers, "email").sensitivity == 2

    applied = _client(cast["sam"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {"reason": "Hashed anyway"},
                                        format="json")
    assert applied.json()["status"] == "applied"
    assert _column(customers, "email").sensitivity == 0
    dataset = Dataset.objects.get(pk=customers.pk)
    assert dataset.current_version.number == 2
    assert dataset.current_version.registered_by == f"proposal #{proposal.pk}"
    actions = list(AuditEvent.objects.filter(dataset=customers).values_list("action", flat=True).order_by("id"))
    assert actions[-3:] == ["proposal.reviewed", "dataset.classification_changed", "proposal.applied"]
    assert audit_verify().intact


def test_restricted_prod_data_needs_two_approvals_one_from_security(customers, prod, cast):
    proposal = _downgrade(customers, prod, cast, ssn="Sensitive", email="Sensitive")
    assert proposal.approvals_required == 2 and proposal.security_approval_required

    _client(cast["sam"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    assert _column(customers, "ssn").sensitivity == 3
    _client(cast["sue"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    assert _column(customers, "ssn").sensitivity == 2


def test_who_may_see_and_review_a_proposal(customers, prod, cast):
    proposal = _downgrade(customers, prod, cast)
    # Paul does not see the dataset: the proposal does not exist for him.
    assert _client(cast["paul"]).get(f"{API}/access/proposals/{proposal.pk}/").status_code == 404
    # Dave sees the dataset (and so the proposal) but neither owns nor stewards it.
    assert _client(cast["dave"]).get(f"{API}/access/proposals/{proposal.pk}/").status_code == 200
    assert _client(cast["dave"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json").status_code == 403
    assert proposal.reviews.count() == 0


def test_rejection_needs_a_reason_and_changes_nothing(customers, prod, cast):
    proposal = _downgrade(customers, prod, cast)
    refused = _client(cast["sam"]).post(f"{API}/access/proposals/{proposal.pk}/reject/", {}, format="json")
    assert refused.status_code == 400 and "reason" in refused.json()["errors"]
    rejected = _client(cast["sam"]).post(f"{API}/access/proposals/{proposal.pk}/reject/", {"reason": "It is PII"},
                                         format="json")
    assert rejected.json()["status"] == "rejected"
    assert _column(customers, "email").sensitivity == 2


def test_a_proposal_made_against_other_metadata_is_stale(customers, prod, cast):
    proposal = _downgrade(customers, prod, cast)  # email Sensitive -> Public
    _register(cast["dave"], prod, columns=_columns(email="Restricted"))  # raised meanwhile
    _client(cast["olga"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    response = _client(cast["sam"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")

    assert response.json()["status"] == "stale"
    assert _column(customers, "email").sensitivity == 3


def test_the_impact_says_who_would_gain_access(customers, prod, cast):
    proposal = _downgrade(customers, prod, cast, ssn="Regular", email="Regular")
    text = " ".join(proposal.impact)
    assert "Data analyst" in text and "could read the whole dataset without approval" in text
    assert "Requests for column ssn would need 1 approval" in text


# Owners, stewards and tags -----------------------------------------------------------------------


def test_a_registrar_naming_themselves_owner_is_proposed(customers, prod, cast):
    response = _register(cast["dave"], prod, owners=["dave"])

    assert response.json()["pendingProposal"]["summary"] == "owners olga → dave"
    assert list(Dataset.objects.get(pk=customers.pk).owners.values_list("username", flat=True)) == ["olga"]
    proposal = MetadataProposal.objects.get(pk=response.json()["pendingProposal"]["id"])
    assert any("dave would become an owner" in sentence for sentence in proposal.impact)
    assert any("olga would no longer be an owner" in sentence for sentence in proposal.impact)


def test_a_steward_may_not_name_owners(customers, prod, cast):
    response = _register(cast["stella"], prod, owners=["stella"])
    assert response.status_code == 403
    assert not MetadataProposal.objects.exists()


def test_the_aggregated_tag_is_added_only_by_approval(customers, prod, cast):
    aggregate, _ = dataset_register(principal=cast["dave"], payload=registration_payload(
        store=prod, name="crm.daily_counts", columns=[column_payload("day"), column_payload("n")], owners=["olga"]))
    paul = cast["paul"]
    assert not Dataset.objects.filter(pk=aggregate.pk, **{}).filter(decisions.dataset_visibility_filter(_fresh(paul))).exists()

    response = _client(cast["dave"]).post(f"{API}/datasets/", registration_payload(
        store=prod, name="crm.daily_counts", columns=[column_payload("day"), column_payload("n")], tags=["aggregated"]),
        format="json")
    assert response.json()["pendingProposal"]["summary"] == "add tag aggregated"
    assert Dataset.objects.get(pk=aggregate.pk).tags == []
    assert not Dataset.objects.filter(pk=aggregate.pk).filter(decisions.dataset_visibility_filter(_fresh(paul))).exists()

    proposal = MetadataProposal.objects.get(dataset=aggregate)
    _client(cast["olga"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    assert Dataset.objects.get(pk=aggregate.pk).tags == ["aggregated"]
    assert Dataset.objects.filter(pk=aggregate.pk).filter(decisions.dataset_visibility_filter(_fresh(paul))).exists()
    assert AuditEvent.objects.filter(action="dataset.tags_changed", dataset=aggregate).exists()


def test_removing_a_matrix_tag_applies_at_once(prod, cast):
    dataset, _ = dataset_register(principal=cast["dave"], payload=registration_payload(
        store=prod, name="crm.daily_counts", columns=[column_payload("n")], tags=["aggregated", "daily"]))
    response = _client(cast["dave"]).post(f"{API}/datasets/", registration_payload(
        store=prod, name="crm.daily_counts", columns=[column_payload("n")], tags=["daily"]), format="json")
    assert response.json()["pendingProposal"] is None
    assert Dataset.objects.get(pk=dataset.pk).tags == ["daily"]
    assert AuditEvent.objects.get(action="dataset.tags_changed", dataset=dataset).details == {
        "from": ["aggregated", "daily"], "to": ["daily"]}


def test_a_registrar_naming_a_steward_of_someone_elses_dataset_proposes_it(customers, cast):
    response = _client(cast["dave"]).post(f"{API}/datasets/{customers.pk}/stewards/", {"user": "dave"}, format="json")

    assert response.status_code == 202
    assert response.json()["pendingProposal"]["summary"] == "new steward dave"
    assert not decisions.is_steward(_fresh(cast["dave"]), customers)
    proposal = MetadataProposal.objects.get(pk=response.json()["pendingProposal"]["id"])
    _client(cast["olga"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    _client(cast["sam"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    assert decisions.is_steward(_fresh(cast["dave"]), customers)


def test_an_owner_names_stewards_at_once(customers, cast):
    response = _client(cast["olga"]).post(f"{API}/datasets/{customers.pk}/stewards/", {"user": "sam"}, format="json")
    assert response.status_code == 201
    assert decisions.is_steward(_fresh(cast["sam"]), customers)


# Stores ------------------------------------------------------------------------------------------


def test_relabelling_a_prod_store_as_dev_is_proposed_to_security(customers, prod, cast):
    pat = cast["pat"]
    dataset_register(principal=cast["dave"], payload=registration_payload(
        store=prod, name="crm.contacts", columns=[column_payload("phone", sensitivity="Sensitive")]))
    response = _client(pat).patch(f"{API}/stores/{prod.pk}/", {"environment": "dev", "description": "Main warehouse"},
                                  format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["environment"] == "prod" and body["description"] == "Main warehouse"
    assert body["pendingProposal"]["summary"] == "environment prod → dev"
    assert DataStore.objects.get(pk=prod.pk).environment == "prod"
    # Standing write on dev data does not reach prod data meanwhile.
    assert not decisions.access_decide(_fresh(pat), "write", Dataset.objects.select_related("store").get(pk=customers.pk))
    proposal = MetadataProposal.objects.get(pk=body["pendingProposal"]["id"])
    assert proposal.security_approval_required and proposal.approvals_required == 2  # Restricted data in prod
    assert any("Platform engineer" in sentence and "could write its 1 Sensitive dataset without approval" in sentence
               for sentence in proposal.impact)
    assert any("Requests for its Restricted data would need 1 approval" in sentence for sentence in proposal.impact)

    # The dataset's owner does not review store changes; security engineers do.
    assert _client(cast["olga"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json").status_code == 404
    _client(cast["sam"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    assert DataStore.objects.get(pk=prod.pk).environment == "prod"
    _client(cast["sue"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    assert DataStore.objects.get(pk=prod.pk).environment == "dev"
    assert AuditEvent.objects.filter(action="store.changed", object_id=str(prod.pk)).count() == 2  # description, then env


def test_store_creation_and_changes_are_audited(cast):
    store = store_save(principal=cast["pat"], name="lake", kind="object", platform="s3", environment="dev")
    store_save(principal=cast["pat"], store=store, line_of_business="payments")
    created = AuditEvent.objects.get(action="store.created")
    assert created.details["environment"] == "dev"
    changed = AuditEvent.objects.get(action="store.changed")
    assert changed.details["changes"] == {"line_of_business": {"from": "", "to": "payments"}}


def test_a_proposal_cannot_be_made_for_the_system(customers):
    from access.policies import SYSTEM

    with pytest.raises(PermissionDenied):
        proposals.proposal_create(principal=SYSTEM, dataset=customers, changes={"tags": {"add": ["aggregated"]}})


def test_a_bad_environment_is_a_field_error(prod, cast):
    with pytest.raises(ValidationError) as error:
        store_save(principal=cast["pat"], store=prod, environment="moon")
    assert "environment" in error.value.message_dict


# What an insider tried next (found by an attack pass through the running server) ------------------


def test_dropping_the_sensitive_columns_does_not_lower_the_dataset(customers, prod, cast):
    response = _register(cast["dave"], prod, columns=[column_payload("id", sensitivity="Regular")])

    assert response.status_code == 201
    assert response.json()["sensitivity"] == "Restricted"  # held where it was
    assert response.json()["pendingProposal"]["summary"] == "dataset sensitivity Restricted → Regular"
    dataset = Dataset.objects.select_related("store").get(pk=customers.pk)
    assert [c["name"] for c in dataset.current_version.columns] == ["id"]  # the schema itself lands
    assert not decisions.access_decide(_fresh(cast["dave"]), "read", dataset)  # data engineers read Regular prod data
    proposal = MetadataProposal.objects.get(pk=response.json()["pendingProposal"]["id"])
    assert any("Columns email, ssn were dropped" in sentence for sentence in proposal.impact)
    client = Client()
    client.force_login(cast["olga"])
    assert "held: its columns reach Regular" in client.get(f"/datasets/{customers.pk}/").content.decode()

    for reviewer in ("sam", "sue"):  # Restricted in prod: two approvals, one a security engineer
        _client(cast[reviewer]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    dataset.refresh_from_db()
    assert dataset.sensitivity == 1
    assert decisions.access_decide(_fresh(cast["dave"]), "read", dataset)


def test_a_proposer_cannot_appoint_their_own_reviewer(prod, cast):
    mia = UserFactory(username="mia", roles=["data_analyst"])
    dana = UserFactory(username="dana", roles=["data_scientist"])
    counts, _ = dataset_register(principal=cast["dave"], payload=registration_payload(
        store=prod, name="crm.campaign_audience", columns=[column_payload("segment")], owners=["mia"]))
    response = _client(mia).post(f"{API}/datasets/", registration_payload(
        store=prod, name="crm.campaign_audience", columns=[column_payload("segment")], tags=["aggregated"]),
        format="json")
    proposal_id = response.json()["pendingProposal"]["id"]
    # Mia names Dana steward (an owner may, at once) and asks her to approve.
    assert _client(mia).post(f"{API}/datasets/{counts.pk}/stewards/", {"user": "dana"}, format="json").status_code == 201
    refused = _client(dana).post(f"{API}/access/proposals/{proposal_id}/approve/", {}, format="json")
    assert refused.status_code == 403
    assert Dataset.objects.get(pk=counts.pk).tags == []
    # Named first, then proposed: the same.
    _client(mia).post(f"{API}/access/proposals/{proposal_id}/cancel/", {}, format="json")
    again = _client(mia).post(f"{API}/datasets/", registration_payload(
        store=prod, name="crm.campaign_audience", columns=[column_payload("segment")], tags=["aggregated"]),
        format="json").json()["pendingProposal"]["id"]
    assert _client(dana).post(f"{API}/access/proposals/{again}/approve/", {}, format="json").status_code == 403
    # The owner's earlier stewards, and security engineers, still review it.
    assert _client(cast["sam"]).post(f"{API}/access/proposals/{again}/approve/", {}, format="json").json()["status"] == "applied"


def test_a_matrix_tag_in_another_spelling_is_still_proposed(prod, cast):
    dataset, _ = dataset_register(principal=cast["dave"], payload=registration_payload(
        store=prod, name="crm.daily_counts", columns=[column_payload("n")]))
    response = _client(cast["dave"]).post(f"{API}/datasets/", registration_payload(
        store=prod, name="crm.daily_counts", columns=[column_payload("n")], tags=[" Aggregated"]), format="json")
    assert response.json()["pendingProposal"]["summary"] == "add tag aggregated"
    assert Dataset.objects.get(pk=dataset.pk).tags == []


def test_a_discovered_dataset_is_not_classified_public_tagged_and_claimed_at_once(prod, cast):
    from catalog.services import dataset_discover

    discovered = dataset_discover(store=prod, name="vendor.criminal_checks")
    response = _client(cast["dave"]).post(f"{API}/datasets/", registration_payload(
        store=prod, name="vendor.criminal_checks", owners=["dave"], tags=["aggregated"],
        columns=[column_payload("person_id", sensitivity="Public")]), format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["sensitivity"], body["tags"], body["owners"]) == ("Sensitive", [], [])
    assert body["pendingProposal"]["summary"] == (
        "person_id sensitivity Sensitive → Public; owners (none) → dave; add tag aggregated")
    assert AuditEvent.objects.filter(action="dataset.classified", dataset=discovered).exists()


def test_reading_restricted_columns_in_proposals_is_audited(customers, prod, cast):
    proposal = _downgrade(customers, prod, cast, ssn="Sensitive", email="Sensitive")
    before = AuditEvent.objects.filter(action="metadata.restricted_viewed").count()
    _client(cast["sam"]).get(f"{API}/access/proposals/")
    _client(cast["sam"]).get(f"{API}/access/proposals/{proposal.pk}/")
    events = AuditEvent.objects.filter(action="metadata.restricted_viewed").order_by("id")[before:]
    assert [(event.details["via"], event.details["columns"]) for event in events] == [
        ("api:proposals", ["ssn"]), ("api:proposal", ["ssn"])]


# A second insider pass ------------------------------------------------------------------------------


def test_an_approved_column_lowering_keeps_a_tier_held_for_dropped_columns(customers, prod, cast):
    # Proposed while ssn was there; ssn dropped since (the tier held at Restricted, proposed apart).
    proposal = _downgrade(customers, prod, cast, ssn="Restricted", email="Public")
    assert "dataset" not in proposal.changes
    without_ssn = [column_payload("id", sensitivity="Regular"),
                   column_payload("email", sensitivity="Sensitive", protection="Hashed")]
    held = _register(cast["dave"], prod, columns=without_ssn).json()
    assert held["sensitivity"] == "Restricted"

    for reviewer in ("olga", "sam"):  # email Sensitive -> Public: the owner and a security engineer
        _client(cast[reviewer]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")

    assert MetadataProposal.objects.get(pk=proposal.pk).status == ProposalStatus.APPLIED
    assert _column(customers, "email").sensitivity == 0
    # The email change landed; the tier held up for the dropped ssn did not go with it.
    dataset = Dataset.objects.select_related("store").get(pk=customers.pk)
    assert dataset.sensitivity == 3
    assert not decisions.access_decide(_fresh(cast["dave"]), "read", dataset)
    assert MetadataProposal.objects.get(pk=held["pendingProposal"]["id"]).status == ProposalStatus.PENDING


def test_what_a_pipeline_proposes_needs_a_security_engineer(prod, cast):
    from tests.factories import service_account_with_key

    pipeline, _ = service_account_with_key(username="etl-bot")
    dataset, _ = dataset_register(principal=cast["dave"], payload=registration_payload(
        store=prod, name="crm.visits", columns=[column_payload("page", sensitivity="Regular")], owners=["olga"]))
    response = _client(pipeline).post(f"{API}/datasets/", registration_payload(
        store=prod, name="crm.visits", columns=[column_payload("page", sensitivity="Public")]), format="json")
    proposal = MetadataProposal.objects.get(pk=response.json()["pendingProposal"]["id"])
    assert proposal.security_approval_required

    # Whoever runs the pipeline may own the dataset: the owner's approval alone does not apply it.
    assert _client(cast["olga"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {},
                                      format="json").json()["status"] == "pending"
    assert Column.objects.get(dataset=dataset, name="page").sensitivity == 1
    assert _client(cast["sam"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {},
                                     format="json").json()["status"] == "applied"


def test_a_steward_removed_since_no_longer_reviews(customers, prod, cast):
    from access.selectors import proposal_queue

    response = _register(cast["dave"], prod, columns=_columns(ssn="Sensitive"))
    proposal = MetadataProposal.objects.get(pk=response.json()["pendingProposal"]["id"])
    assert proposal.reviewers.filter(pk=cast["stella"].pk).exists()
    assert proposal in proposal_queue(user=_fresh(cast["stella"]))

    grants.dataset_steward_remove(principal=cast["olga"], dataset=customers, user=cast["stella"])

    assert proposal not in proposal_queue(user=_fresh(cast["stella"]))
    refused = _client(cast["stella"]).post(f"{API}/access/proposals/{proposal.pk}/approve/", {}, format="json")
    assert refused.status_code in (403, 404)
    assert proposal.reviews.count() == 0


@pytest.mark.parametrize("tags, matches", [
    (["aggregated"], True), (["daily", "aggregated"], True), (["aggregated", "daily"], True),
    (["not-aggregated"], False), (['"aggregated'], False), (["aggregated-ish"], False), (["x, \"aggregated\""], False),
    ([], False),
])
def test_the_sqlite_tag_filter_matches_the_tag_only_as_a_whole_element(tags, matches, monkeypatch):
    # Django stores a JSON list on SQLite as json.dumps writes it and runs REGEXP with Python's re.
    import json
    import re
    import types

    monkeypatch.setattr(decisions, "connection", types.SimpleNamespace(vendor="sqlite"))
    ((lookup, pattern),) = decisions._aggregated_filter().children
    assert lookup == "tags__regex"
    assert bool(re.search(pattern, json.dumps(tags))) is matches


def test_postgresql_datasets_are_named_with_their_schema(prod, cast):
    response = _client(cast["dave"]).post(f"{API}/datasets/", registration_payload(
        store=prod, name="customers", columns=[column_payload("id")]), format="json")

    assert response.status_code == 400
    assert "live in a schema: name it as <schema>.<table>, e.g. public.customers" in response.json()["errors"]["name"][0]
    assert not Dataset.objects.filter(name="customers").exists()


def test_enforcement_never_grants_on_a_name_without_a_schema(prod):
    from access.enforcement import EnforcementError, _table_parts

    dataset = Dataset(store=prod, schema="", name="users", qualified_name="warehouse.users")
    with pytest.raises(EnforcementError, match="names no schema"):
        _table_parts(dataset)


@pytest.mark.parametrize("name", ["ssn\u200b", "ｓｓｎ", "s\u00adsn", "ﬁle_id", "ssn\x07"])
def test_column_names_with_invisible_or_look_alike_characters_are_refused(name, prod, cast):
    response = _client(cast["dave"]).post(f"{API}/datasets/", registration_payload(
        store=prod, name="crm.lookalikes", columns=[column_payload("id"), column_payload(name)]), format="json")

    assert response.status_code == 400
    message = response.json()["errors"]["columns[1].name"][0]
    # A control character is refused by the API's JSON rule for all text, before registration.
    assert "invisible or look-alike characters" in message or "Control characters" in message
    assert not Dataset.objects.filter(name="lookalikes").exists()
