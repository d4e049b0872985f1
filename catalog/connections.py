"""Services for a store's warehouse connection: save (sealing the password and secret options),
test, schedule, remove. What a connection may reach is checked here when it is saved and again
by the connector when it connects (``catalog/connection_rules.py``). Every change and every test
is audited, without secrets."""

import json
import threading
import time

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from access import policies
from access.audit import audit_record
from catalog.connectors import CONNECTORS, Connector, WarehouseError, connector_for, sealed_options_open
from catalog.models import Connection, DataStore, Platform
from catalog.secrets import SecretUnavailable, secret_open, secret_seal

CONNECTION_FIELDS = (
    "host", "port", "database", "username", "options", "include_schemas", "exclude_schemas",
    "sampling_enabled", "sample_size", "schedule",
)
FILE_PLATFORMS = (Platform.SQLITE, Platform.DUCKDB)
SCHEDULED_TASK = "catalog.store_sync_scheduled"


def _check(principal) -> None:
    if not policies.can_manage_stores(principal):
        raise PermissionDenied("Managing connections needs the platform engineer role or an admin.")


def _patterns(value, field: str) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = [part for part in value.replace("\n", ",").split(",")]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError({field: ["A list of schema names or patterns (* and ?)."]})
    return [item.strip() for item in value if item.strip()]


def _crontab(expression: str) -> dict:
    parts = expression.split()
    if len(parts) != 5:
        raise ValidationError({"schedule": ["Use five cron fields: minute hour day-of-month month day-of-week (e.g. '0 2 * * *')."]})
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    fields = {
        "minute": minute, "hour": hour, "day_of_month": day_of_month, "month_of_year": month_of_year,
        "day_of_week": day_of_week, "timezone": "UTC",
    }
    try:
        from celery.schedules import crontab

        crontab(**{k: v for k, v in fields.items() if k != "timezone"})
    except (ValueError, TypeError) as exc:
        raise ValidationError({"schedule": [f"Not a valid cron expression: {exc}"]}) from None
    return fields


REACH_FIELDS = ("host", "port", "database", "username", "options")


def _field_value(name: str, value):
    """A form or API value in the model's shape; ValidationError naming the field if it has none."""
    if name in ("include_schemas", "exclude_schemas"):
        return _patterns(value, name)
    if name == "options":
        if isinstance(value, str):
            try:
                value = json.loads(value or "{}")
            except ValueError:
                raise ValidationError({"options": ["Must be a JSON object."]}) from None
        if not isinstance(value, dict):
            raise ValidationError({"options": ["Must be a JSON object."]})
        return value
    if name == "schedule":
        return " ".join((value or "").split())
    if value is None and name in ("host", "database", "username"):
        return ""
    return value


def _options_split(connector: type[Connector], options: dict) -> tuple[dict, dict]:
    """``(options kept in clear, secret options)``: a platform's secret options are never stored in
    ``options``, whether sent now or left there by a row saved before they were sealed."""
    secret_names = connector.secret_option_names()
    return (
        {name: value for name, value in options.items() if name not in secret_names},
        {name: value for name, value in options.items() if name in secret_names},
    )


def _removes(value) -> bool:
    return value in ("", None)


@sensitive_variables("password", "sealed_given", "sealed_values", "stored")
def connection_save(*, principal, store: DataStore, password: str | None = None, remote_addr: str = "",
                    check_only: bool = False, **fields) -> Connection:
    """Create or change the store's connection. ``password=None`` keeps the stored secret, ``""``
    removes it, anything else replaces it (sealed; never stored or logged in clear).

    Every bad field is reported at once, in one ``ValidationError`` (unknown fields included),
    and nothing is written. ``check_only=True`` checks the fields the same way and writes nothing
    even when they are good (the API uses it for the fields that passed its JSON checks when
    others did not, so one 400 names them all).

    ``options`` are driver options from the platform's allow-list, with checked values (anything
    else is an error on ``options``). Its secret ones (e.g. PostgreSQL's ``sslpassword``) are
    sealed apart, with the password's rule: left out keeps the stored value, ``""`` removes it,
    anything else replaces it. The file path (SQLite, DuckDB) and the host are checked as the
    connector checks them again before it connects. Audited as ``connection.saved`` with the
    names of the changed fields and their non-secret values.
    """
    _check(principal)
    # A misspelt field is an error beside the others, never a reason to stop looking.
    refused = {name: ["Unknown field."] for name in sorted(set(fields) - set(CONNECTION_FIELDS))}
    fields = {name: value for name, value in fields.items() if name in CONNECTION_FIELDS}
    if store.platform not in CONNECTORS:
        raise ValidationError({**refused, "platform": [
            f"Stores on platform '{store.platform}' cannot be synced; supported: {', '.join(CONNECTORS)}."
        ]})
    connector = CONNECTORS[store.platform]
    with transaction.atomic():
        connection = Connection.objects.select_for_update().filter(store=store).first() or Connection(store=store)
        created = connection.pk is None
        before = {name: getattr(connection, name) for name in CONNECTION_FIELDS}
        reached_before = tuple(getattr(connection, name) for name in REACH_FIELDS)
        had_password = connection.secret_id is not None
        stored_sealed = set(connection.sealed_options or [])
        errors = dict(refused)
        for name, value in fields.items():
            try:
                value = _field_value(name, value)
            except ValidationError as exc:
                errors.update(exc.message_dict)
                continue
            setattr(connection, name, value)
        connection.options, sealed_given = _options_split(connector, connection.options or {})
        connection.options = connector.options_cleaned(connection.options)
        if not connection.database and store.platform in (*FILE_PLATFORMS, Platform.BIGQUERY):
            errors["database"] = [
                "Required: the database file path." if store.platform in FILE_PLATFORMS else "Required: the project."
            ]
        if not connection.host and store.platform not in (*FILE_PLATFORMS, Platform.BIGQUERY):
            errors["host"] = ["Required for this platform."]
        if connection.port is not None and not 1 <= connection.port <= 65535:
            errors["port"] = ["Between 1 and 65535."]
        if connection.sample_size is not None and not 1 <= connection.sample_size <= 1000:
            errors["sample_size"] = ["Between 1 and 1000."]
        cron = None
        if connection.schedule and "schedule" not in errors:
            try:
                cron = _crontab(connection.schedule)
            except ValidationError as exc:
                errors.update(exc.message_dict)
        try:
            connection.full_clean(exclude=["store", "secret", "options_secret", "periodic_task", *errors])
        except ValidationError as exc:
            errors.update(exc.message_dict)
        # What the connection may reach: the connector checks the same again before it connects.
        new_sealed = {name: value for name, value in sealed_given.items() if not _removes(value)}
        for name, texts in connector.problems(connection, new_sealed).items():
            errors.setdefault(name, texts)
        twin = _connected_elsewhere(connection) if "database" not in errors and "host" not in errors else None
        if twin is not None:
            # One database, one store: a second store (in dev, say) on the same database would show its
            # tables under another environment and classification than the store that holds them.
            errors["database"] = [f"This database is already connected as store '{twin.name}' "
                                  f"({twin.environment}): sync it there."]
        moved = any(getattr(connection, name) != before for name, before in zip(REACH_FIELDS, reached_before))
        if connection.pk and moved and connection.secret_id and password is None and "password" not in errors:
            # The stored password goes only where it was entered for, never to a new place.
            errors["password"] = [
                "Enter the password again (or clear it): the host, port, database, user or options changed."
            ]
        kept_sealed = stored_sealed - set(sealed_given)
        if connection.pk and moved and kept_sealed:  # the same rule for the sealed options
            errors.setdefault("options", []).append(
                f"Enter the sealed options again ({', '.join(sorted(kept_sealed))}) or remove them with \"\": "
                "the host, port, database, user or options changed."
            )
        sealed_values = None  # None: the sealed options stay as they are
        if sealed_given and not errors:
            stored = {}
            if kept_sealed:
                try:
                    stored = sealed_options_open(connection)
                except SecretUnavailable as exc:
                    errors["options"] = [f"{exc} Enter the sealed options again."]
            sealed_values = {name: stored[name] for name in kept_sealed if name in stored} | new_sealed
        if errors:  # every problem at once, and nothing written
            raise ValidationError(errors)
        if check_only:
            return connection
        sealed_changes = {
            name: "removed" if _removes(value) else "set"
            for name, value in sealed_given.items() if not _removes(value) or name in stored_sealed
        }
        if password is not None or moved or sealed_changes:
            # A test of the old settings says nothing about the new ones.
            connection.last_tested_at, connection.last_test_ok, connection.last_test_message = None, None, ""
        orphans = []
        if password == "" and connection.secret is not None:
            orphans.append(connection.secret)
            connection.secret = None
        elif password:
            connection.secret = secret_seal(password, secret=connection.secret)
        if sealed_values is not None:
            if sealed_values:
                connection.options_secret = secret_seal(
                    json.dumps(sealed_values, sort_keys=True), secret=connection.options_secret
                )
            elif connection.options_secret is not None:
                orphans.append(connection.options_secret)
                connection.options_secret = None
            connection.sealed_options = sorted(sealed_values)
        connection.save()
        for orphan in orphans:
            orphan.delete()
        _schedule_sync(connection, cron)
        changed = [name for name in CONNECTION_FIELDS if getattr(connection, name) != before[name]]
        details = {
            "store": store.name, "platform": store.platform, "created": created, "changed": changed,
            # Every field here is non-secret: the secret options were split off above.
            "values": {name: getattr(connection, name) for name in changed},
        }
        if password == "" and had_password:
            details["password"] = "removed"
        elif password:
            details["password"] = "replaced" if had_password else "set"
        if sealed_changes:
            details["sealed_options"] = sealed_changes  # names only, never values
        audit_record(actor=principal, action="connection.saved", obj=connection, details=details,
                     remote_addr=remote_addr)
    return connection


def _schedule_sync(connection: Connection, cron: dict | None) -> None:
    """Keep the store's django-celery-beat entry in step with its schedule."""
    task = connection.periodic_task
    if cron is None:
        if task is not None:
            connection.periodic_task = None
            connection.save(update_fields=["periodic_task"])
            task.delete()
        return
    schedule, _ = CrontabSchedule.objects.get_or_create(**cron)
    if task is None:
        task = PeriodicTask(name=f"sync store {connection.store.name} (#{connection.store_id})", task=SCHEDULED_TASK)
    task.crontab = schedule
    task.interval = None
    task.kwargs = json.dumps({"store_id": connection.store_id})
    task.queue = "sync"
    task.enabled = True
    task.save()
    if connection.periodic_task_id != task.pk:
        connection.periodic_task = task
        connection.save(update_fields=["periodic_task"])


def _connected_elsewhere(connection: Connection) -> DataStore | None:
    """Another store whose connection reaches the same database (same platform, host, port and
    database; for file platforms the same file, links resolved), if any."""
    import os

    platform = connection.store.platform
    others = Connection.objects.filter(store__platform=platform).exclude(store=connection.store).select_related("store")
    if platform in FILE_PLATFORMS:
        target = os.path.realpath(connection.database) if connection.database else ""
        return next((other.store for other in others
                     if other.database and os.path.realpath(other.database) == target), None)
    host = (connection.host or "").strip().lower()
    twin = others.filter(host__iexact=host, port=connection.port, database=connection.database).first()
    return twin.store if twin is not None else None


def connection_delete(*, principal, store: DataStore, remote_addr: str = "") -> None:
    """Remove the store's connection, its sealed secrets and its schedule (datasets stay); audited."""
    _check(principal)
    connection_remove_for_store(store, actor=principal, remote_addr=remote_addr)


def connection_remove_for_store(store: DataStore, *, actor=None, remote_addr: str = "") -> None:
    """The work of ``connection_delete`` without the permission check, for deleting the store itself."""
    with transaction.atomic():
        connection = Connection.objects.select_for_update().filter(store=store).first()
        if connection is None:
            return
        audit_record(actor=actor, action="connection.removed", obj=connection, remote_addr=remote_addr, details={
            "store": store.name, "platform": store.platform, "host": connection.host, "port": connection.port,
            "database": connection.database, "username": connection.username, "options": connection.options,
            "sealed_options": connection.sealed_options, "password": connection.secret_id is not None,
            "schedule": connection.schedule,
        })
        sealed, task = [connection.secret, connection.options_secret], connection.periodic_task
        connection.delete()
        for secret in sealed:
            if secret is not None:
                secret.delete()
        if task is not None:
            task.delete()


def _within(seconds: int, work):
    """``work()``, waited for at most ``seconds`` (and a second's grace for the driver's own timeout,
    set to the same bound so the thread ends by itself). A request never waits on a slow warehouse."""
    outcome = {}

    def run():
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the waiting thread below
            outcome["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=run, name="connection-test", daemon=True)
    worker.start()
    worker.join(seconds + 1)
    if worker.is_alive():
        raise WarehouseError(f"Timed out after {seconds} s: the warehouse did not answer in time.")
    error = outcome.get("error")
    if error is None:
        return outcome["value"]
    if isinstance(error, WarehouseError) and time.monotonic() - started >= seconds:
        raise WarehouseError(f"Timed out after {seconds} s: {error}") from None
    raise error


@sensitive_variables("password", "sealed")
def connection_test(*, principal, store: DataStore, remote_addr: str = "") -> tuple[bool, str]:
    """Try the connection now; remembers and returns ``(ok, message)``. The message never holds a
    secret. Bounded by ``CATALOG_CONNECTION_TEST_TIMEOUT`` (connecting, reading and the wait
    itself), and audited as ``connection.tested``."""
    _check(principal)
    connection = Connection.objects.select_related("store", "secret", "options_secret").filter(store=store).first()
    if connection is None:
        raise ValidationError({"connection": ["This store has no connection yet."]})
    timeout = settings.CATALOG_CONNECTION_TEST_TIMEOUT
    try:
        password = secret_open(connection.secret) if connection.secret_id else ""
        sealed = sealed_options_open(connection)
        connector = connector_for(connection, password, sealed_options=sealed, timeout=timeout)
        ok, message = True, _within(timeout, connector.test)
    except (WarehouseError, SecretUnavailable) as exc:
        ok, message = False, str(exc)
    with transaction.atomic():
        Connection.objects.filter(pk=connection.pk).update(
            last_tested_at=timezone.now(), last_test_ok=ok, last_test_message=message[:1000]
        )
        audit_record(actor=principal, action="connection.tested", obj=connection, remote_addr=remote_addr,
                     details={"store": store.name, "ok": ok, "message": message[:1000]})
    return ok, message
