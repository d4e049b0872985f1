"""Pulling a store's audit log through its catalog connection, from the stored position on.

PostgreSQL (pgaudit): the csvlog files in the server's log directory, read with
``pg_read_binary_file`` by the connection's role (granted ``pg_read_server_files`` and
``pg_monitor``; docs/monitoring.md). Files are named by their start time, so after a rotation the
rest of the old file is read, then the newer ones in order. MariaDB (server_audit): the log file read
by path, for a catalog running on the database's host; elsewhere a shipper pushes it.

Each chunk is taken in under a row lock of the store's ``LogPosition``, and the position moves in
the same transaction as the events it covers: a pull killed half-way leaves both as they were, and
two pulls of one store wait for each other instead of reading the same bytes.
"""

import os
import posixpath

import sqlalchemy as sa
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.connectors import WarehouseError, connector_for, safe_message
from catalog.errors import ApplicationError
from catalog.models import DataStore
from catalog.secrets import secret_open
from monitoring.ingestion import IngestResult, access_log_ingest
from monitoring.models import EventSource, LogFormat, LogPosition
from monitoring.parsing import records_from_text

PLATFORM_FORMATS = {"postgresql": LogFormat.PGAUDIT, "mysql": LogFormat.SERVER_AUDIT}


def access_log_pull_enable(*, store: DataStore, log_format: str = "", file: str = "", from_now: bool = True) -> LogPosition:
    """Start pulling a store's audit log (from its end now, unless ``from_now`` is False: then from
    the oldest file PostgreSQL keeps, or the start of the MariaDB file)."""
    log_format = log_format or PLATFORM_FORMATS.get(store.platform, "")
    if log_format not in LogFormat.values:
        raise ApplicationError(f"Stores on '{store.platform}' have no audit log the catalog reads; "
                               "pgaudit (postgresql) and server_audit (mysql/MariaDB) are supported.")
    if log_format == LogFormat.SERVER_AUDIT and not file:
        raise ApplicationError("A MariaDB store's pull reads the server_audit file by path: give 'file'.")
    position, _ = LogPosition.objects.update_or_create(
        store=store, defaults={"log_format": log_format, "pull_enabled": True, "file": file, "offset": 0},
    )
    if from_now:
        with transaction.atomic():
            position = LogPosition.objects.select_for_update().get(pk=position.pk)
            if log_format == LogFormat.PGAUDIT:
                with _pg_engine(store).connect() as conn:
                    current = conn.execute(sa.text("SELECT pg_current_logfile('csvlog')")).scalar() or ""
                    size = _pg_size(conn, current) if current else 0
                position.file, position.offset = current, size
            else:
                position.offset = os.path.getsize(file) if os.path.exists(file) else 0
            position.save(update_fields=["file", "offset"])
    return position


def _pg_engine(store: DataStore) -> sa.Engine:
    connection = getattr(store, "connection", None)
    if connection is None:
        raise ApplicationError(f"Store '{store.name}' has no connection to pull its audit log through.")
    password = secret_open(connection.secret) if connection.secret_id else ""
    return connector_for(connection, password).engine()


def _pg_size(conn, path: str) -> int:
    return conn.execute(sa.text("SELECT size FROM pg_stat_file(:p, true)"), {"p": path}).scalar() or 0


def access_log_pull(*, store: DataStore, max_chunks: int | None = None) -> IngestResult:
    """Read what the store's audit log gained since the last pull and record its events."""
    position = LogPosition.objects.select_related("store").get(store=store)
    total = IngestResult()
    try:
        if position.log_format == LogFormat.PGAUDIT:
            _pull_pgaudit(position, total, max_chunks)
        else:
            _pull_server_audit(position, total, max_chunks)
    except (WarehouseError, sa.exc.SQLAlchemyError, OSError) as exc:
        message = safe_message(exc)[:500]
        LogPosition.objects.filter(pk=position.pk).update(last_error=message, pulled_at=timezone.now())
        raise ApplicationError(f"Could not pull the audit log of '{store.name}': {message}") from None
    LogPosition.objects.filter(pk=position.pk).update(last_error="", pulled_at=timezone.now())
    return total


def _add(total: IngestResult, part: IngestResult) -> None:
    total.records += part.records
    total.recorded += part.recorded
    total.duplicates += part.duplicates
    total.unparsed += part.unparsed
    total.findings += part.findings
    total.errors.extend(part.errors[: max(0, 20 - len(total.errors))])


# The reads decode with surrogateescape so that the text gives back the file's bytes exactly: a byte
# that is not UTF-8 (a latin1 client's, in MariaDB's file) decoded as U+FFFD would count three bytes
# for one, and the position would move into the next record.
def _take(position_pk: int, read, total: IngestResult) -> bool:
    """One chunk under the position's lock: ``read(position, size)`` returns (text, final, next_file)
    or None when there is nothing new. Returns whether anything was read. A chunk that holds no whole
    record (one statement longer than the chunk) is read again larger, up to
    ``MONITORING_PULL_RECORD_MAX_BYTES``: a position that silently never moved would leave every
    later read unseen. A longer record is an error on the position (``last_error``), not skipped:
    skipping into the middle of a csvlog record would read the rest of its statement as records."""
    with transaction.atomic():
        position = LogPosition.objects.select_for_update().select_related("store").get(pk=position_pk)
        size = settings.MONITORING_PULL_CHUNK_BYTES
        while True:
            chunk = read(position, size)
            if chunk is None:
                return False
            text, final, next_file = chunk
            records, errors, consumed = records_from_text(text, position.log_format, final=final)
            length = len(text.encode("utf-8", "surrogateescape"))
            if consumed or final or next_file is not None or length < size:
                break
            if size >= settings.MONITORING_PULL_RECORD_MAX_BYTES:
                raise WarehouseError(
                    f"The record at byte {position.offset:,} of {position.file} is longer than {size:,} bytes "
                    "(MONITORING_PULL_RECORD_MAX_BYTES): raise the limit to read on.")
            size = min(size * 4, settings.MONITORING_PULL_RECORD_MAX_BYTES)

        def advance():
            if next_file is not None and consumed >= len(text.encode("utf-8", "surrogateescape")):
                position.file, position.offset = next_file, 0
            else:
                position.offset += consumed
            position.save(update_fields=["file", "offset"])

        part = access_log_ingest(store=position.store, records=records, source=EventSource.PULL,
                                 log_format=position.log_format, on_written=advance)
        part.errors = errors + part.errors
        _add(total, part)
        return consumed > 0 or next_file is not None


def _pull_pgaudit(position: LogPosition, total: IngestResult, max_chunks) -> None:
    engine = _pg_engine(position.store)
    try:
        with engine.connect() as conn:
            current = conn.execute(sa.text("SELECT pg_current_logfile('csvlog')")).scalar() or ""
            if not current:
                raise WarehouseError("pg_current_logfile('csvlog') is empty: is log_destination 'csvlog'?")
            # Read up to where the log ended when this pull began: what it writes meanwhile (the
            # pull's own statements, if its role is audited) waits for the next pull.
            end_of_current = _pg_size(conn, current)

            def read(pos: LogPosition, chunk_size: int):
                directory = posixpath.dirname(current)
                names = [row[0] for row in conn.execute(sa.text(
                    "SELECT name FROM pg_ls_logdir() WHERE name LIKE '%.csv' ORDER BY name"))]
                files = [posixpath.join(directory, n) for n in names]
                if not pos.file or pos.file not in files:
                    # First pull, or the file read last was removed: from the oldest file kept.
                    later = [f for f in files if f > (pos.file or "")]
                    pos.file, pos.offset = (later[0] if later else current), 0
                size = end_of_current if pos.file == current else _pg_size(conn, pos.file)
                following = [f for f in files if f > pos.file and f <= current]
                if pos.offset >= size:
                    if not following:
                        return None
                    return "", True, following[0]
                data = conn.execute(sa.text("SELECT pg_read_binary_file(:p, :o, :n, true)"),
                                    {"p": pos.file, "o": pos.offset, "n": min(chunk_size, size - pos.offset)}).scalar()
                data = bytes(data or b"")
                ends_file = pos.offset + len(data) >= size and bool(following)
                return data.decode("utf-8", "surrogateescape"), ends_file, following[0] if ends_file else None

            chunks = 0
            while _take(position.pk, read, total):
                chunks += 1
                if max_chunks is not None and chunks >= max_chunks:
                    break
    finally:
        engine.dispose()


def _pull_server_audit(position: LogPosition, total: IngestResult, max_chunks) -> None:
    def read(pos: LogPosition, chunk_size: int):
        size = os.path.getsize(pos.file)
        if size < pos.offset:  # rotated (server_audit renames the full file to .1): start the new one
            pos.offset = 0
        if pos.offset >= size:
            return None
        with open(pos.file, "rb") as log:
            log.seek(pos.offset)
            data = log.read(min(chunk_size, size - pos.offset))
        return data.decode("utf-8", "surrogateescape"), False, None

    chunks = 0
    while _take(position.pk, read, total):
        chunks += 1
        if max_chunks is not None and chunks >= max_chunks:
            break
