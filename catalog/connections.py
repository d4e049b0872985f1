"""Services for a store's warehouse connection: save (sealing the password), test, schedule, remove."""

import json

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from access import policies
from catalog.connectors import CONNECTORS, WarehouseError, connector_for
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


@sensitive_variables("password")
def connection_save(*, principal, store: DataStore, password: str | None = None, **fields) -> Connection:
    """Create or change the store's connection. ``password=None`` keeps the stored secret, ``""``
    removes it, anything else replaces it (sealed; never stored or logged in clear)."""
    _check(principal)
    unknown = set(fields) - set(CONNECTION_FIELDS)
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    if store.platform not in CONNECTORS:
        raise ValidationError({"platform": [
            f"Stores on platform '{store.platform}' cannot be synced; supported: {', '.join(CONNECTORS)}."
        ]})
    with transaction.atomic():
        connection = Connection.objects.select_for_update().filter(store=store).first() or Connection(store=store)
        reached_before = tuple(getattr(connection, name) for name in REACH_FIELDS)
        errors = {}
        for name, value in fields.items():
            try:
                value = _field_value(name, value)
            except ValidationError as exc:
                errors.update(exc.message_dict)
                continue
            setattr(connection, name, value)
        if not connection.database and store.platform in (*FILE_PLATFORMS, Platform.BIGQUERY):
            errors["database"] = [
                "Required: the database file path." if store.platform in FILE_PLATFORMS else "Required: the project."
            ]
        if not connection.host and store.platform not in (*FILE_PLATFORMS, Platform.BIGQUERY):
            errors["host"] = ["Required for this platform."]
        if connection.sample_size is not None and not 1 <= connection.sample_size <= 1000:
            errors["sample_size"] = ["Between 1 and 1000."]
        cron = None
        if connection.schedule and "schedule" not in errors:
            try:
                cron = _crontab(connection.schedule)
            except ValidationError as exc:
                errors.update(exc.message_dict)
        try:
            connection.full_clean(exclude=["store", "secret", "periodic_task", *errors])
        except ValidationError as exc:
            errors.update(exc.message_dict)
        moved = any(getattr(connection, name) != before for name, before in zip(REACH_FIELDS, reached_before))
        if connection.pk and moved and connection.secret_id and password is None and "password" not in errors:
            # The stored password goes only where it was entered for, never to a new place.
            errors["password"] = [
                "Enter the password again (or clear it): the host, port, database, user or options changed."
            ]
        if errors:  # every problem at once, and nothing written
            raise ValidationError(errors)
        if password is not None or moved:
            # A test of the old settings says nothing about the new ones.
            connection.last_tested_at, connection.last_test_ok, connection.last_test_message = None, None, ""
        if password == "" and connection.secret is not None:
            old, connection.secret = connection.secret, None
            connection.save()
            old.delete()
        elif password:
            connection.secret = secret_seal(password, secret=connection.secret)
        connection.save()
        _schedule_sync(connection, cron)
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


def connection_delete(*, principal, store: DataStore) -> None:
    """Remove the store's connection, its sealed secret and its schedule (datasets stay)."""
    _check(principal)
    connection_remove_for_store(store)


def connection_remove_for_store(store: DataStore) -> None:
    """The work of ``connection_delete`` without the permission check, for deleting the store itself."""
    with transaction.atomic():
        connection = Connection.objects.select_for_update().filter(store=store).first()
        if connection is None:
            return
        secret, task = connection.secret, connection.periodic_task
        connection.delete()
        if secret is not None:
            secret.delete()
        if task is not None:
            task.delete()


@sensitive_variables("password")
def connection_test(*, principal, store: DataStore) -> tuple[bool, str]:
    """Try the connection now; remembers and returns ``(ok, message)``. The message never holds the secret."""
    _check(principal)
    connection = Connection.objects.select_related("store", "secret").filter(store=store).first()
    if connection is None:
        raise ValidationError({"connection": ["This store has no connection yet."]})
    try:
        password = secret_open(connection.secret) if connection.secret_id else ""
        ok, message = True, connector_for(connection, password).test()
    except (WarehouseError, SecretUnavailable) as exc:
        ok, message = False, str(exc)
    Connection.objects.filter(pk=connection.pk).update(
        last_tested_at=timezone.now(), last_test_ok=ok, last_test_message=message[:1000]
    )
    return ok, message
