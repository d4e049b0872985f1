"""What the demo's warehouse logged over the last days, and the alerts the detectors raise from it.

The review site's database (``appdb``, PostgreSQL) has pgaudit on; its log lines reach the catalog
the way a shipper's would (``monitoring.ingestion.access_log_ingest``, the push endpoint's path).
The story, over the last three days:

- Mia (data analyst) asked for the users' e-mail addresses, Dave approved, the grant ran its four
  hours; she read them during the grant, and again twelve hours after it had ended.
- Sofia (software engineer, on call) used break-glass on the same table during an incident; nobody
  has reviewed it.
- Dave (the table's owner) reads a few rows a day. Priya (platform engineer) got a four-hour grant
  on the password hashes for a migration, approved by Dave and Sam (security); five hours ago a
  script under her role read the users table, hashes included, seventy times in twenty minutes,
  where she had never read it before.

Everything goes through the real services: the grants through ``access.grants`` and break-glass
through its service, at their moments in the past (the demo moves the clock those services read
while it replays them; nothing else is written with a made-up time), then the detectors run until
they have handled every event. Idempotent: a second load finds the events and only runs the
detectors again (they raise nothing new).
"""

import hashlib
from contextlib import contextmanager
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from unittest import mock

from django.contrib.auth import get_user_model
from django.utils import timezone

from access import grants
from catalog.models import Dataset, DataStore
from monitoring.ingestion import access_log_ingest
from monitoring.models import AccessEvent, EventSource, LogFormat
from monitoring.parsing import records_from_text

STORE = "appdb"
USERS_TABLE = "appdb.public.users"
# Catalog users and the database roles their warehouse logins use.
WAREHOUSE_ROLES = {"dave": "dave", "mia": "mia_analytics", "sofia": "sofia_oncall", "priya": "priya_admin"}


@contextmanager
def _clock(moment: datetime):
    """The services' clock (``django.utils.timezone.now``) reads ``moment`` while they replay a past step."""
    with mock.patch.object(timezone, "now", return_value=moment):
        yield


def pgaudit_line(*, session: str, number: int, at: datetime, role: str, statement: str, rows: int,
                 relation: str = "public.users", address: str = "10.20.0.15", application: str = "psql") -> str:
    """One csvlog record of a pgaudit SESSION READ entry, as PostgreSQL writes it."""
    quoted = statement.replace('"', '""')
    audit = f'AUDIT: SESSION,{number},1,READ,SELECT,TABLE,{relation},"{quoted}",<not logged>,{rows}'
    stamp = at.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return (f'{stamp} UTC,"{role}","appdb",4242,"{address}:50568",{session},{number},"SELECT",'
            f'{stamp[:19]} UTC,3/25,0,LOG,00000,"{audit.replace(chr(34), chr(34) * 2)}",,,,,,,,,"{application}",'
            f'"client backend",,0')


def _session(name: str) -> str:
    """A csvlog session id (``<pid hex>.<start hex>``), stable per story step so a reload records nothing twice."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{digest[:8]}.{digest[8:12]}"


def _ingest(store: DataStore, lines: list[str]) -> None:
    records, errors, _ = records_from_text("\n".join(lines), LogFormat.PGAUDIT, final=True)
    if errors:
        raise ValueError(f"demo log lines do not parse: {errors[:3]}")
    access_log_ingest(store=store, records=records, source=EventSource.PUSH, log_format=LogFormat.PGAUDIT)


def _reads(*, name: str, role: str, times: list[datetime], statement: str, rows: int = 1, **where) -> list[str]:
    session = _session(name)
    return [pgaudit_line(session=session, number=index, at=at, role=role, statement=statement, rows=rows, **where)
            for index, at in enumerate(times, start=1)]


def monitoring_demo_load(now: datetime | None = None) -> None:
    """Access events from appdb's audit log for the story above, then the detectors' alerts."""
    from monitoring.detectors import detect_pending, detect_periodic

    now = now or timezone.now()
    store = DataStore.objects.get(name=STORE)
    if not AccessEvent.objects.filter(store=store).exists():
        _story(store, now)
    while detect_pending():
        pass
    detect_periodic()


def _story(store: DataStore, now: datetime) -> None:
    User = get_user_model()
    people = {user.username: user for user in User.objects.filter(username__in=[*WAREHOUSE_ROLES, "sam"])}
    for username, role in WAREHOUSE_ROLES.items():
        if people[username].warehouse_role != role:
            people[username].warehouse_role = role
            people[username].save(update_fields=["warehouse_role"])
    users = Dataset.objects.get(qualified_name=USERS_TABLE)
    dave, mia, sofia, priya, sam = (people[name] for name in ("dave", "mia", "sofia", "priya", "sam"))
    day = now.replace(minute=0, second=0, microsecond=0)
    lines: list[str] = []

    # Dave's usual reads: a few rows a day over the last week, from his workstation.
    for days_ago in range(7, 0, -1):
        times = [day - timedelta(days=days_ago, hours=hour) for hour in (6, 4, 2)]
        lines += _reads(name=f"dave-usual-{days_ago}", role="dave", times=times, address="10.20.0.15",
                        statement="SELECT user_id, username, created_at FROM public.users WHERE user_id = '5b7d2f0a'")

    # Mia's grant: asked and approved 30 hours ago, four hours long.
    asked = now - timedelta(hours=30)
    with _clock(asked):
        request = grants.access_request_create(
            principal=mia, dataset=users, level="read", columns=["email"], duration=4, ticket="MKT-311",
            justification="Matching newsletter bounces to accounts for the deliverability report.")
    with _clock(asked + timedelta(minutes=12)):
        grants.access_request_review(principal=dave, request=request, approve=True,
                                     reason="For the bounce report only; four hours is enough.")
    granted = asked + timedelta(minutes=12)
    during = [granted + timedelta(minutes=20 * step) for step in range(1, 6)]
    lines += _reads(name="mia-grant", role="mia_analytics", times=during, address="10.20.3.41", application="DBeaver",
                    statement="SELECT email FROM public.users LIMIT 240", rows=240)
    # Hours after the grant ended, the same query again (the warehouse still let her in).
    after = granted + timedelta(hours=4, minutes=30) + timedelta(hours=12)
    lines += _reads(name="mia-after", role="mia_analytics", times=[after, after + timedelta(minutes=3)],
                    address="10.20.3.41", application="DBeaver",
                    statement="SELECT email FROM public.users LIMIT 240", rows=240)

    # Sofia's break-glass during an incident two days ago, never reviewed.
    incident = now - timedelta(hours=50)
    with _clock(incident):
        grants.break_glass_activate(
            principal=sofia, dataset=users, level="read", columns=["email"], minutes=30,
            reason="INC-2207: password reset mails bounce for some accounts; checking the stored addresses.")
    lines += _reads(name="sofia-incident", role="sofia_oncall",
                    times=[incident + timedelta(minutes=step) for step in (4, 9)], address="10.20.8.7",
                    statement="SELECT email FROM public.users WHERE email LIKE '%@bounce.example'", rows=3)

    # Priya's grant on the hashes (Restricted in prod: two approvals, one from security), and the
    # burst under it: seventy reads in twenty minutes.
    migration = now - timedelta(hours=6)
    with _clock(migration):
        request = grants.access_request_create(
            principal=priya, dataset=users, level="read", columns=["user_id", "email", "password_hash"], duration=4,
            ticket="OPS-5120", justification="Checking which password hashes still use bcrypt before the argon2 migration.")
    with _clock(migration + timedelta(minutes=5)):
        grants.access_request_review(principal=dave, request=request, approve=True, reason="Migration planned in OPS-5120.")
    with _clock(migration + timedelta(minutes=9)):
        grants.access_request_review(principal=sam, request=request, approve=True, reason="Read only, four hours.")
    burst = now - timedelta(hours=5)
    lines += _reads(name="priya-burst", role="priya_admin", address="10.20.9.200", application="python-requests",
                    times=[burst + timedelta(seconds=17 * step) for step in range(70)],
                    statement="SELECT user_id, email, password_hash FROM public.users WHERE user_id = '9c1e44b7'")
    _ingest(store, lines)
