"""Detectors over event streams made by the real services: access events from pgaudit-format log
lines through monitoring.ingestion (their times are the log's, so the clock is the log's), and the
audit trail written by access requests, approvals, break-glass, sign-ins and service tokens.
Periodic detectors take ``now``. At-least-once: an event handled twice adds nothing."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from access.grants import (access_request_create, access_request_review, break_glass_activate, break_glass_review,
                           grant_revoke)
from access.models import AuditEvent
from access.signin import signin_failure_record
from catalog.models import Dataset
from catalog.vocabulary import Sensitivity
from monitoring.detectors import detect_all, detect_pending, detect_periodic, detector_settings
from monitoring.ingestion import access_log_ingest
from monitoring.models import AccessEvent, Alert, AlertEvidence, AlertStatus, DetectorCursor, Severity
from monitoring.parsing import records_from_text
from tests.access.test_audit import tamper
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create, service_account_with_key

pytestmark = pytest.mark.django_db(transaction=False)

WORKDAY = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # a Wednesday, 10:00 UTC
_numbers = iter(range(1, 10**9))


def pg_line(statement: str, *, at: datetime, role="mia_role", relation="shop.customers", address="10.1.2.3",
            application="psql", rows=1, session="6b16eba7.4362") -> str:
    number = next(_numbers)
    audit = (f'AUDIT: SESSION,{number},1,READ,SELECT,TABLE,{relation},"{statement.replace(chr(34), chr(34) * 2)}",'
             f'<not logged>,{rows}')
    stamp = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return (f'{stamp} UTC,"{role}","postgres",17250,"{address}:50568",{session},{number},"SELECT",'
            f'{stamp[:19]} UTC,3/25,725,LOG,00000,"{audit.replace(chr(34), chr(34) * 2)}",,,,,,,,,"{application}",'
            '"client backend",,0')


def ingest(store, *lines: str):
    records, errors, _ = records_from_text("\n".join(lines) + "\n", "pgaudit")
    assert not errors
    return access_log_ingest(store=store, records=records, source="push", log_format="pgaudit")


@pytest.fixture
def cast(db):
    """A prod store with a Sensitive dataset (mia, an analyst, reads its id column standing) and a
    Restricted one; dave owns them; sec is a security engineer."""
    dave = UserFactory(username="dave", roles=["data_engineer"])
    store = StoreFactory(name="pg-watched", kind="transactional", platform="postgresql", environment="prod")
    customers = dataset_create(principal=dave, store=store, name="shop.customers", columns=[
        column_payload("id", type_="INTEGER"), column_payload("email", sensitivity="Sensitive")])
    cards = dataset_create(principal=dave, store=store, name="shop.cards", columns=[
        column_payload("id", type_="INTEGER"), column_payload("pan", sensitivity="Restricted")])
    mia = UserFactory(username="mia", roles=["data_analyst"], warehouse_role="mia_role")
    sec = UserFactory(username="sec", roles=["security_engineer"])
    return type("Cast", (), {"store": store, "customers": customers, "cards": cards, "mia": mia, "dave": dave,
                             "sec": sec})


def alerts(rule: str):
    return list(Alert.objects.filter(rule=rule).order_by("pk"))


def test_a_read_nothing_allowed_raises_one_alert_per_person_counting_each_read(cast):
    ingest(cast.store, pg_line("SELECT email FROM shop.customers WHERE email = 'x@y.z'", at=WORKDAY),
           pg_line("SELECT id FROM shop.customers", at=WORKDAY + timedelta(minutes=1)),  # standing: fine
           pg_line("SELECT pan FROM shop.cards", at=WORKDAY + timedelta(minutes=2), relation="shop.cards"))
    assert detect_all() > 0
    [alert] = alerts("read_not_allowed")
    assert alert.subject_key == f"user:{cast.mia.pk}" and alert.user == cast.mia and alert.count == 2
    assert alert.severity == Severity.HIGH
    assert set(alert.datasets.all()) == {cast.customers, cast.cards}
    assert "x@y.z" not in alert.summary + alert.title and "customers" not in alert.summary
    evidence = list(alert.evidence.order_by("occurred_at"))
    assert [e.access_event.columns for e in evidence] == [["email"], ["pan"]]
    assert {e.evidence_key for e in evidence} == {f"access:{e.access_event_id}" for e in evidence}


def test_an_unmapped_role_is_its_own_subject(cast):
    ingest(cast.store, pg_line("SELECT id FROM shop.customers", at=WORKDAY, role="etl_shared"))
    detect_all()
    [alert] = alerts("read_not_allowed")
    assert alert.subject_key == f"role:{cast.store.pk}:etl_shared" and alert.database_role == "etl_shared"
    assert alert.user is None


def _granted(cast, hours=1):
    request = access_request_create(principal=cast.mia, dataset=cast.customers, level="read", duration=hours,
                                    justification="Quarterly churn analysis for finance", ticket="SEC-1")
    access_request_review(principal=cast.dave, request=request, approve=True)
    return request.grant


def test_a_read_after_the_grant_ended_is_its_own_critical_alert(cast):
    grant = _granted(cast, hours=1)
    during = grant.starts_at + timedelta(minutes=10)
    after = grant.ends_at + timedelta(hours=2)
    ingest(cast.store, pg_line("SELECT email FROM shop.customers", at=during),
           pg_line("SELECT email FROM shop.customers", at=after))
    detect_all()
    [alert] = alerts("read_after_grant_end")
    assert alert.subject_key == f"grant:{grant.pk}" and alert.severity == Severity.CRITICAL and alert.count == 1
    assert abs(alert.evidence.get().access_event.occurred_at - after) < timedelta(milliseconds=1)
    assert not alerts("read_not_allowed")  # the read after the end is not counted twice


def test_a_read_after_revocation_is_a_read_after_grant_end(cast):
    grant = _granted(cast, hours=4)
    grant_revoke(principal=cast.dave, grant=grant, reason="No longer needed for the analysis")
    ingest(cast.store, pg_line("SELECT email FROM shop.customers", at=timezone.now() + timedelta(minutes=5)))
    detect_all()
    [alert] = alerts("read_after_grant_end")
    assert "revoked" in alert.title


def test_the_same_event_delivered_twice_raises_one_alert_and_counts_once(cast):
    line = pg_line("SELECT email FROM shop.customers", at=WORKDAY)
    ingest(cast.store, line)
    ingest(cast.store, line)  # the shipper sends it again: the event is recorded once
    detect_all()
    [alert] = alerts("read_not_allowed")
    assert alert.count == 1
    # A crash after the alerts committed but before anyone knew: the cursors go back, all is handled again.
    DetectorCursor.objects.update(last_id=0)
    assert detect_all() > 0
    alert.refresh_from_db()
    assert alert.count == 1 and Alert.objects.count() == len(set(Alert.objects.values_list("rule", "subject_key")))
    assert AlertEvidence.objects.filter(alert=alert).count() == 1


def test_a_burst_far_above_the_baseline_is_an_alert_and_usual_volume_is_not(cast, settings):
    settings.MONITORING_DETECTORS = {"volume_baseline": {"min_events": 20, "factor": 3},
                                     "unusual_time_or_place": {"enabled": False}}
    dave_role = "dave_role"
    cast.dave.warehouse_role = dave_role
    cast.dave.save()
    # Mia's history: about 10 reads an hour of the Sensitive column for 14 days (standing read on id,
    # so the reads of email are findings too; that detector is not what this test is about).
    history = [pg_line("SELECT id, email FROM shop.customers", at=WORKDAY - timedelta(days=day, hours=hour))
               for day in range(1, 15) for hour in range(0, 24, 3) for _ in range(3)]
    ingest(cast.store, *history)
    detect_all()
    assert not alerts("volume_baseline")
    # A usual hour: 9 reads. Then a burst: 60 reads in the next hour.
    ingest(cast.store, *[pg_line("SELECT id, email FROM shop.customers", at=WORKDAY + timedelta(minutes=i))
                         for i in range(9)])
    detect_all()
    assert not alerts("volume_baseline")
    burst = [pg_line("SELECT id, email FROM shop.customers", at=WORKDAY + timedelta(hours=2, seconds=i * 30))
             for i in range(60)]
    ingest(cast.store, *burst)
    detect_all(batch_size=25)
    [alert] = alerts("volume_baseline")
    assert alert.user == cast.mia and alert.subject_key == f"user:{cast.mia.pk}"
    assert list(alert.datasets.all()) == [cast.customers]
    assert "read far more" in alert.title and "14 days" in alert.summary
    # Dave's first reads ever stay under the absolute minimum: no alert.
    ingest(cast.store, *[pg_line("SELECT id, email FROM shop.customers", role=dave_role,
                                 at=WORKDAY + timedelta(hours=3, minutes=i)) for i in range(10)])
    detect_all()
    assert [a.user for a in alerts("volume_baseline")] == [cast.mia]


def test_volume_counts_the_columns_read_not_the_datasets_tier(cast, settings):
    """Reading only the Regular id column of a Sensitive dataset, however often, is not reading
    Sensitive data: the event records the tier of its columns and the baseline counts that."""
    settings.MONITORING_DETECTORS = {"volume_baseline": {"min_events": 20, "factor": 3},
                                     "unusual_time_or_place": {"enabled": False}}
    ingest(cast.store, *[pg_line("SELECT id FROM shop.customers", at=WORKDAY + timedelta(seconds=i * 30))
                         for i in range(60)])
    ingest(cast.store, pg_line("SELECT id, email FROM shop.customers", at=WORKDAY + timedelta(hours=1)),
           pg_line("SELECT count(*) FROM shop.customers", at=WORKDAY + timedelta(hours=1, minutes=1)))
    tiers = list(AccessEvent.objects.order_by("id").values_list("columns", "sensitivity"))
    assert tiers[0] == (["id"], Sensitivity.REGULAR)
    assert tiers[-2:] == [(["id", "email"], Sensitivity.SENSITIVE), ([], Sensitivity.SENSITIVE)]  # no column: the dataset's
    detect_all()
    assert not alerts("volume_baseline")
    burst = [pg_line("SELECT email FROM shop.customers", at=WORKDAY + timedelta(hours=2, seconds=i * 30))
             for i in range(60)]
    ingest(cast.store, *burst)
    detect_all()
    [alert] = alerts("volume_baseline")
    assert alert.user == cast.mia
    assert AlertEvidence.objects.filter(alert=alert, description__contains="1 column(s), Sensitive").exists()


def test_off_hours_and_new_addresses_are_unusual_but_a_first_event_is_not(cast):
    ingest(cast.store, pg_line("SELECT id FROM shop.customers", at=WORKDAY, address="10.1.2.3"))  # first ever
    ingest(cast.store, pg_line("SELECT id FROM shop.customers", at=WORKDAY + timedelta(hours=1), address="10.1.2.3"))
    detect_all()
    assert not alerts("unusual_time_or_place")
    saturday_night = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)
    ingest(cast.store,
           pg_line("SELECT id FROM shop.customers", at=WORKDAY + timedelta(hours=2), address="203.0.113.9"),
           pg_line("SELECT id FROM shop.customers", at=WORKDAY + timedelta(hours=3), application="DBeaver"),
           pg_line("SELECT id FROM shop.customers", at=saturday_night))
    detect_all()
    [alert] = alerts("unusual_time_or_place")
    assert alert.count == 3 and alert.severity == Severity.MEDIUM
    descriptions = sorted(alert.evidence.values_list("description", flat=True))
    assert any("address never seen" in d for d in descriptions)
    assert any("application never seen" in d for d in descriptions)
    assert any("outside working hours" in d for d in descriptions)


def test_working_hours_follow_the_settings(cast, settings):
    settings.MONITORING_DETECTORS = {"unusual_time_or_place": {"time_zone": "America/Toronto", "work_hours": [9, 17]}}
    ingest(cast.store, pg_line("SELECT id FROM shop.customers", at=WORKDAY))  # 05:00 in Toronto
    detect_all()
    [alert] = alerts("unusual_time_or_place")
    assert "05:00 America/Toronto" in alert.evidence.get().description


def test_break_glass_twice_in_a_day_is_an_alert_and_an_overdue_review_another(cast):
    oncall = UserFactory(username="ola", roles=["software_engineer"])
    first = break_glass_activate(principal=oncall, dataset=cast.customers, level="read", minutes=30,
                                 reason="Incident 42: checkout failing for some customers")
    detect_all()
    assert not alerts("break_glass_repeat")
    break_glass_activate(principal=oncall, dataset=cast.customers, level="read", minutes=30,
                         reason="Incident 42 again: checkout still failing")
    detect_all()
    [alert] = alerts("break_glass_repeat")
    assert alert.user == oncall and alert.count == 2 and list(alert.datasets.all()) == [cast.customers]
    assert {e.audit_event.action for e in alert.evidence.all()} == {"break_glass.activated"}

    assert detect_periodic(now=timezone.now() + timedelta(hours=1)).break_glass_unreviewed == 0
    later = timezone.now() + timedelta(hours=25)
    assert detect_periodic(now=later).break_glass_unreviewed == 2
    unreviewed = alerts("break_glass_unreviewed")
    assert {a.subject_key for a in unreviewed} == {f"grant:{first.pk}", f"grant:{first.pk + 1}"}
    assert detect_periodic(now=later).break_glass_unreviewed == 0  # raised once per grant
    assert all(a.count == 1 for a in alerts("break_glass_unreviewed"))
    break_glass_review(principal=cast.sec, grant=first, note="Checked with the incident channel: legitimate.")


def test_repeated_refusals_are_probing(cast):
    for _ in range(4):
        signin_failure_record(username="mia", remote_addr="198.51.100.7")
    detect_all()
    assert not alerts("probing")
    signin_failure_record(username="mia", remote_addr="198.51.100.7")
    for _ in range(5):
        signin_failure_record(username="nobody-here", remote_addr="198.51.100.8")
    detect_all()
    by_subject = {a.subject_key: a for a in alerts("probing")}
    assert set(by_subject) == {f"user:{cast.mia.pk}", "signin:nobody-here"}
    assert by_subject[f"user:{cast.mia.pk}"].count == 5 and by_subject[f"user:{cast.mia.pk}"].user == cast.mia


def test_quick_and_repeated_approvals_by_one_pair_are_rubber_stamps(cast, settings):
    settings.MONITORING_DETECTORS = {"rubber_stamp": {"pair_threshold": 3, "quick_seconds": -1}}
    for round_ in range(3):
        grant = _granted(cast, hours=1)
        grant_revoke(principal=cast.mia, grant=grant, reason=f"Done with round {round_} of the analysis")
        detect_all()
        assert bool(alerts("rubber_stamp")) == (round_ == 2)
    [alert] = alerts("rubber_stamp")
    assert alert.subject_key == f"pair:{cast.mia.pk}:{cast.dave.pk}" and alert.user == cast.mia
    assert "approved 3 of mia's requests" in alert.evidence.get().description


def test_an_approval_seconds_after_the_request_is_a_rubber_stamp(cast):
    _granted(cast)  # asked and approved within the same second
    detect_all()
    [alert] = alerts("rubber_stamp")
    assert "seconds after it was asked" in alert.summary


def test_a_service_token_used_from_a_new_address_is_an_alert(db):
    account, key = service_account_with_key(username="airflow")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/datasets/", REMOTE_ADDR="10.0.0.5").status_code == 200  # first use: not new
    assert client.get("/api/v1/datasets/", REMOTE_ADDR="10.0.0.5").status_code == 200
    detect_all()
    assert not alerts("service_account_new_address")
    assert client.get("/api/v1/datasets/", REMOTE_ADDR="192.0.2.44").status_code == 200
    detect_all()
    [alert] = alerts("service_account_new_address")
    assert alert.user == account and "192.0.2.44" in alert.summary and key not in alert.summary


def test_standing_read_unused_for_90_days_is_suggested_for_removal(cast):
    now = WORKDAY + timedelta(days=200)
    cast.dave.warehouse_role = "dave_role"
    cast.dave.save()
    old = WORKDAY  # the store has been watched since then
    ingest(cast.store, pg_line("SELECT id FROM shop.customers", at=old, role="dave_role"),
           pg_line("SELECT id FROM shop.customers", at=now - timedelta(days=3)))
    assert detect_periodic(now=WORKDAY + timedelta(days=30)).standing_unused == 0  # watched too briefly yet
    # Analysts and data engineers read prod data up to Regular standing: not these two datasets.
    assert detect_periodic(now=now).standing_unused == 0
    regular = dataset_create(principal=cast.dave, store=cast.store, name="shop.orders",
                             columns=[column_payload("id", type_="INTEGER")])
    ingest(cast.store, pg_line("SELECT id FROM shop.orders", at=now - timedelta(days=1), relation="shop.orders"))
    assert detect_periodic(now=now).standing_unused == 1  # mia read it lately, dave not in 90 days
    [alert] = alerts("standing_unused")
    assert alert.user == cast.dave and list(alert.datasets.all()) == [regular] and alert.severity == Severity.LOW
    assert detect_periodic(now=now).standing_unused == 0  # suggested once
    assert Dataset.objects.count() == 3


def test_a_tampered_audit_trail_raises_a_critical_alert(cast):
    assert detect_periodic().audit_chain_intact is True  # and a checkpoint: the next check starts there
    victim = signin_failure_record(username="mia", remote_addr="198.51.100.7")
    signin_failure_record(username="mia", remote_addr="198.51.100.7")
    tamper("UPDATE access_auditevent SET reason = %s WHERE id = %s", ["edited behind the catalog's back", victim.pk])
    result = detect_periodic()
    assert result.audit_chain_intact is False
    [alert] = alerts("audit_chain_broken")
    assert alert.severity == Severity.CRITICAL and alert.status == AlertStatus.OPEN
    assert f"#{victim.pk}" in alert.summary
    detect_periodic()
    alert.refresh_from_db()
    assert alert.count == 1


def test_detection_costs_the_same_queries_whatever_the_batch_size(cast, settings):
    settings.MONITORING_DETECTORS = {"volume_baseline": {"min_events": 1}}  # fires on every batch, as the other
    def queries_for(count: int, offset: timedelta) -> int:
        ingest(cast.store, *[pg_line("SELECT email FROM shop.customers", at=WORKDAY + offset + timedelta(seconds=i),
                                     address="10.1.2.3") for i in range(count)])
        with CaptureQueriesContext(connection) as captured:
            handled = detect_pending(batch_size=500)
        assert handled == count
        assert detect_pending() == 0
        return len(captured)

    queries_for(1, timedelta(0))  # the first alert is opened
    small = queries_for(5, timedelta(minutes=5))
    large = queries_for(200, timedelta(minutes=30))
    assert large == small
    assert small <= 25
    assert AccessEvent.objects.count() == 206 and alerts("read_not_allowed")[0].count == 206


def test_thresholds_are_overridden_per_detector_and_unknown_names_refused(settings):
    settings.MONITORING_DETECTORS = {"probing": {"threshold": 3, "severity": "high"}}
    values = detector_settings("probing")
    assert values["threshold"] == 3 and values["severity"] == Severity.HIGH and values["window_minutes"] == 15
    settings.MONITORING_DETECTORS = {"probing": {"treshold": 3}}
    with pytest.raises(ImproperlyConfigured, match="treshold"):
        detector_settings("probing")
    settings.MONITORING_DETECTORS = {"probe": {}}
    with pytest.raises(ImproperlyConfigured, match="probe"):
        detector_settings("probing")
