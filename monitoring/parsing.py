"""Reading warehouse audit logs: pgaudit's csvlog records and MariaDB server_audit lines, and the
statements in them (parsed with sqlglot, as lineage/sql.py parses view definitions).

Nothing here touches the database: it turns log text into ``LogRecord``s (one relation read or
written, or one statement) and a statement into the relations and columns it reads and writes.
Statements are kept only as their *fingerprint*: the SQL with every literal replaced by ``?``,
because values in a WHERE clause can be personal data.
"""

import csv
import datetime as dt
import hashlib
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

# Longest normalized statement kept on an event; the fingerprint covers the whole of it.
STATEMENT_KEEP = 4000
STAR = "*"


@dataclass
class LogRecord:
    """One thing a log says happened. ``relation`` is set when the log itself names the relation
    (pgaudit with log_relation); otherwise the statement says which relations it touched."""

    record_key: str
    occurred_at: dt.datetime
    database_role: str
    client_address: str | None
    application: str
    statement: str
    dialect: str
    default_schema: str = ""
    relation: tuple[str, str] | None = None  # (schema, table)
    action: str = ""  # "read" / "write" when the log says
    rows: int | None = None


@dataclass
class RelationAccess:
    schema: str
    table: str
    reads: set = field(default_factory=set)  # column names, STAR for every column
    writes: set = field(default_factory=set)
    # Unqualified names that are also this relation's name or alias: in PostgreSQL ``SELECT u FROM
    # users u`` (or ``row_to_json(u)``) reads the whole row, unless the table has a column so named.
    row_refs: set = field(default_factory=set)
    read: bool = False
    written: bool = False


@dataclass
class StatementAccess:
    fingerprint: str
    normalized: str
    relations: dict = field(default_factory=dict)  # (schema.lower(), table.lower()) -> RelationAccess
    unresolved: set = field(default_factory=set)  # unqualified columns of a multi-relation scope
    error: str = ""  # the statement could not be parsed


class LogFormatError(ValueError):
    """A line is not in the format the store ships; the message says what is wrong."""


# Fingerprints ---------------------------------------------------------------------------------

# One pass, left to right, so that a quote inside a comment or a comment marker inside a string is
# read as what it sits in. Comments go too: they are free text (a ticket, a customer's e-mail), and
# a line comment must end at its line, not swallow the rest of the statement once whitespace is
# collapsed (``SELECT id -- x\n, ssn FROM t`` would read as ``SELECT id``, hiding the read of ssn).
_LEXEMES = (
    r"(?P<string>'(?:[^'\\]|\\.|'')*(?:'|$))"  # quoted strings ('' or \' inside; cut off at the end of a log)
    # PostgreSQL dollar-quoted strings, $$...$$ too (the tag group matches empty: a group that took
    # no part in the match would fail its back-reference, and $$...$$ would be kept as written),
    # cut off at the end of a log like quoted strings
    r"|(?P<dollar>\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?(?:\$(?P=tag)\$|$))"
    r"|(?P<block>/\*.*?(?:\*/|$))"  # block comments
    r"|(?P<line>--[^\n]*)"  # line comments
    r"{mysql}"
    # numbers: 42, 1.5, .75, 1e5, 1_000, and MySQL's 0x hex and 0b bit literals (a hex SSN is a value)
    # (one way to match each: no split of a digit run to try, so a long one costs linear time)
    r"|(?P<number>(?<![\w$.])-?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)"
    r"(?:[eE][-+]?\d+)?)\b)"
)
_SCRUB = re.compile(_LEXEMES.format(mysql=""), re.S)
# MySQL and MariaDB: "..." is a string (without ANSI_QUOTES), # starts a comment, and /*! ... */
# (/*M! ... */ in MariaDB) is no comment: the server runs what it holds, so the parser must read it.
_SCRUB_MYSQL = re.compile(r"(?P<executable>/\*M?!\d*(?P<body>.*?)\*/)|" + _LEXEMES.format(
    mysql=r'|(?P<dquoted>"(?:[^"\\]|\\.|"")*(?:"|$))|(?P<hash>#[^\n]*)'), re.S)
_WHITESPACE = re.compile(r"\s+")


def _lexeme(match: re.Match) -> str:
    if match.group(1) is not None and match.re is _SCRUB_MYSQL:  # an executable comment: its statement
        return f" {scrub(match.group('body'), 'mysql')} "
    return " " if match.lastgroup in ("block", "line", "hash") else "?"


def scrub(statement: str, dialect: str = "") -> str:
    """Literals and comments removed without parsing: what is parsed and what is kept of statements
    sqlglot cannot read."""
    pattern = _SCRUB_MYSQL if dialect in ("mysql", "mariadb") else _SCRUB
    return _WHITESPACE.sub(" ", pattern.sub(_lexeme, statement)).strip()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Every kind of literal sqlglot knows: numbers and strings, and raw, dollar-quoted, hex, bit, byte
# and national strings.
LITERALS = tuple({exp.Literal} | {
    getattr(exp, name) for name in dir(exp)
    if (name.endswith("String") or name == "National") and isinstance(getattr(exp, name), type)
})


def _placeholder(node: exp.Expression) -> exp.Expression:
    if isinstance(node, LITERALS):
        return exp.Var(this="?")
    return node


# Statements -----------------------------------------------------------------------------------

def _name(identifier) -> str:
    return identifier.name if identifier is not None else ""


def _is_cte_reference(table: exp.Table) -> bool:
    """Whether ``table`` names a CTE visible where it stands rather than a stored relation: a CTE of
    a WITH attached to an enclosing statement, and inside a CTE's own body only the CTEs before it
    (all of them under WITH RECURSIVE). A CTE's name does not hide the table it shadows elsewhere:
    in ``WITH users AS (SELECT * FROM users) SELECT ssn FROM users`` the body reads the table."""
    if table.db or table.catalog:
        return False  # a CTE is named without a schema
    name = table.name.lower()
    child, node = table, table.parent
    while node is not None:
        if isinstance(node, exp.With):
            ctes = node.expressions
            index = next((i for i, cte in enumerate(ctes) if cte is child), None)
            visible = ctes if node.args.get("recursive") or index is None else ctes[:index]
            if any(cte.alias_or_name.lower() == name for cte in visible):
                return True
        else:
            attached = next((value for value in node.args.values() if isinstance(value, exp.With)), None)
            if attached is not None and attached is not child and any(
                    cte.alias_or_name.lower() == name for cte in attached.expressions):
                return True
        child, node = node, node.parent
    return False


def _tables_in_scope(select: exp.Select) -> dict:
    """alias or name (lowercased) -> (schema, table) of the relations directly in a SELECT's FROM
    and JOINs (not those of nested subqueries, nor CTE references)."""
    scope = {}
    for table in select.find_all(exp.Table):
        if not table.name or table.find_ancestor(exp.Select) is not select or _is_cte_reference(table):
            continue
        key = (table.db, table.name)
        scope[table.alias_or_name.lower()] = key
        scope[table.name.lower()] = key
    return scope


def _relation(access: StatementAccess, schema: str, table: str) -> RelationAccess:
    key = (schema.lower(), table.lower())
    if key not in access.relations:
        access.relations[key] = RelationAccess(schema, table)
    return access.relations[key]


def _columns_of(node: exp.Expression, scope: dict, access: StatementAccess, target: str, owner=None) -> None:
    """Record the columns ``node`` references against the relations of ``scope``; columns of nested
    subqueries are left to their own SELECT (``owner`` is the SELECT being read, None outside one)."""
    relations = set(scope.values())
    for column in node.find_all(exp.Column):
        name = column.name
        if not name or isinstance(column.this, exp.Star) or column.find_ancestor(exp.Select) is not owner:
            continue
        qualifier = column.table.lower()
        if qualifier:
            if qualifier in scope:
                getattr(_relation(access, *scope[qualifier]), target).add(name)
            continue  # a subquery's or CTE's column: read where that one is defined
        if target == "reads" and name.lower() in scope:
            _relation(access, *scope[name.lower()]).row_refs.add(name)
        if len(relations) == 1:
            getattr(_relation(access, *next(iter(relations))), target).add(name)
        elif relations:
            access.unresolved.add(name)


def _stars(select: exp.Select, scope: dict, access: StatementAccess) -> None:
    """``SELECT *`` reads every column of every relation in scope; ``SELECT t.*`` those of t."""
    for projection in select.expressions:
        if isinstance(projection, exp.Star):
            for key in set(scope.values()):
                _relation(access, *key).reads.add(STAR)
        elif isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
            qualifier = projection.table.lower()
            if qualifier in scope:
                _relation(access, *scope[qualifier]).reads.add(STAR)


def _analyse(statement: exp.Expression, access: StatementAccess) -> None:
    written = set()
    if isinstance(statement, (exp.Insert, exp.Update, exp.Delete, exp.Merge)):
        target = statement.this
        if isinstance(target, exp.Schema):  # INSERT INTO t (a, b)
            table = target.this
            columns = [_name(c) for c in target.expressions]
        else:
            table = target
            columns = []
        if isinstance(table, exp.Table) and table.name:
            relation = _relation(access, table.db, table.name)
            relation.written = True
            written.add(id(table))
            scope = {table.alias_or_name.lower(): (table.db, table.name), table.name.lower(): (table.db, table.name)}
            if isinstance(statement, exp.Update):
                for assignment in statement.expressions:
                    if isinstance(assignment, exp.EQ) and isinstance(assignment.this, exp.Column):
                        relation.writes.add(assignment.this.name)
                        if assignment.expression is not None:
                            _columns_of(assignment.expression, scope, access, "reads")
            elif columns:
                relation.writes.update(columns)
            else:
                relation.writes.add(STAR)
            where = statement.args.get("where")
            if where is not None and isinstance(statement, (exp.Update, exp.Delete)):
                relation.read = True
                _columns_of(where, scope, access, "reads")
    for select in statement.find_all(exp.Select):
        scope = _tables_in_scope(select)
        for key in set(scope.values()):
            _relation(access, *key).read = True
        _stars(select, scope, access)
        _columns_of(select, scope, access, "reads", owner=select)
    # Relations touched outside any SELECT (DELETE ... USING, TRUNCATE, ...) still count as read.
    for table in statement.find_all(exp.Table):
        if table.name and id(table) not in written and not _is_cte_reference(table):
            relation = _relation(access, table.db, table.name)
            if not relation.written:
                relation.read = True


def statement_access(statement: str, dialect: str) -> StatementAccess:
    """The relations and columns a statement reads and writes, and its fingerprint. Literals are
    scrubbed first (a cheap pattern pass), and the shape left is parsed once and cached: a log
    repeats the same statements with other values (and pgaudit repeats one per relation)."""
    return _shape_access(scrub(statement, dialect), dialect)


statement_access.cache_clear = lambda: _shape_access.cache_clear()


@lru_cache(maxsize=8192)
def _shape_access(statement: str, dialect: str) -> StatementAccess:
    try:
        expressions = [e for e in sqlglot.parse(statement, dialect=dialect or None) if e is not None]
        if not expressions:
            raise SqlglotError("empty statement")
    except (SqlglotError, RecursionError, ValueError) as exc:
        normalized = scrub(statement, dialect)[:STATEMENT_KEEP]
        message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return StatementAccess(_digest(normalized), normalized, error=message)
    normalized_parts = []
    access = StatementAccess("", "")
    for expression in expressions:
        if isinstance(expression, exp.Command):  # sqlglot's fallback: it did not understand it
            access.error = f"Not a statement the parser reads: {expression.name.upper()}"[:300]
        else:
            _analyse(expression, access)
        # In place (the tree is not needed after the analysis): copying it cost a quarter of a parse.
        normalized_parts.append(expression.transform(_placeholder, copy=False).sql(dialect=dialect or None))
    normalized = "; ".join(normalized_parts)
    access.normalized = normalized[:STATEMENT_KEEP]
    access.fingerprint = _digest(normalized)
    return access


# pgaudit csvlog ---------------------------------------------------------------------------------

# A csvlog field holds a whole statement: the csv module's default limit (128 KiB) would refuse the
# record of a long one as malformed, and a comment padding a statement past it would hide its read.
# Records are bounded by the push and pull sizes (MONITORING_PUSH_MAX_BYTES, the pull's chunks).
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))

# PostgreSQL 13+ csvlog columns (https://www.postgresql.org/docs/15/runtime-config-logging.html).
CSV_LOG_TIME, CSV_USER, CSV_DATABASE, CSV_PID, CSV_CONNECTION_FROM, CSV_SESSION_ID, CSV_LINE_NUM = range(7)
CSV_MESSAGE = 13
CSV_APPLICATION = 22
AUDIT_PREFIX = "AUDIT: "
SYSTEM_SCHEMAS = {"pg_catalog", "information_schema", "pg_toast"}


def csv_records(data: bytes, final: bool = False) -> tuple[list[bytes], int]:
    """Split csvlog bytes into complete records (a record may span lines inside a quoted field).
    Returns the records and the number of bytes they take; an incomplete tail is left for the next
    read unless ``final``."""
    records, start, quoted = [], 0, False
    position = 0
    length = len(data)
    while position < length:
        quote = data.find(b'"', position)
        newline = data.find(b"\n", position)
        if quoted:
            if quote == -1:
                break
            quoted, position = False, quote + 1
            continue
        if newline != -1 and (quote == -1 or newline < quote):
            records.append(data[start:newline])
            start = position = newline + 1
            continue
        if quote == -1:
            break
        quoted, position = True, quote + 1
    if final and start < length and data[start:].strip():
        records.append(data[start:])
        start = length
    return [r for r in records if r.strip()], start


def _pg_time(text: str) -> dt.datetime:
    # "2026-12-07 17:23:51.496 UTC" (log_timezone is UTC on the servers the docs set up)
    stamp, _, zone = text.rpartition(" ")
    if not stamp or not re.fullmatch(r"[A-Z]{2,5}|[+-]\d{2}(:?\d{2})?", zone):
        stamp, zone = text, "UTC"
    try:
        moment = dt.datetime.fromisoformat(stamp)
    except ValueError:
        raise LogFormatError(f"log_time '{text[:40]}' is not a timestamp") from None
    if moment.tzinfo is None:
        if zone not in ("UTC", "GMT"):
            offset = re.fullmatch(r"([+-])(\d{2}):?(\d{2})?", zone)
            if offset is None:
                raise LogFormatError(f"log_time '{text[:40]}': the time zone must be UTC or an offset")
            sign = 1 if offset.group(1) == "+" else -1
            delta = dt.timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3) or 0))
            return moment.replace(tzinfo=dt.timezone(sign * delta))
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment


def _address(connection_from: str) -> str | None:
    host = connection_from.rsplit(":", 1)[0] if connection_from.count(":") == 1 else connection_from
    if host.startswith("[") and "]" in host:
        host = host[1:host.index("]")]
    if not host or host == "[local]":
        return None
    return host if re.fullmatch(r"[0-9a-fA-F.:]+", host) else None


def pgaudit_record(line: str) -> LogRecord | None:
    """One csvlog record, or None when it is not a pgaudit relation entry (other server messages,
    or a statement that touched no relation)."""
    try:
        fields = next(csv.reader(io.StringIO(line)))
    except (csv.Error, StopIteration):
        raise LogFormatError("not a csvlog record (unbalanced quotes)") from None
    if len(fields) <= CSV_APPLICATION:
        raise LogFormatError(f"a csvlog record has at least {CSV_APPLICATION + 1} fields, this one {len(fields)}")
    message = fields[CSV_MESSAGE]
    if not message.startswith(AUDIT_PREFIX):
        return None
    try:
        audit = next(csv.reader(io.StringIO(message[len(AUDIT_PREFIX):])))
    except (csv.Error, StopIteration):
        raise LogFormatError("the AUDIT message is not pgaudit's comma-separated format") from None
    if len(audit) < 9:
        raise LogFormatError(f"a pgaudit entry has at least 9 fields, this one {len(audit)}")
    audit_class, object_type, object_name, statement = audit[3], audit[5], audit[6], audit[7]
    schema_name = object_name.rpartition(".")[0].strip('"')
    if schema_name in SYSTEM_SCHEMAS:
        return None  # the driver's catalog lookups, not data
    if not object_name or object_type not in ("TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE",
                                              "PARTITIONED TABLE"):
        return None
    action = {"READ": "read", "WRITE": "write"}.get(audit_class)
    if action is None:
        return None
    schema, _, table = object_name.rpartition(".")
    rows = None
    if len(audit) >= 10 and audit[9].isdigit():
        rows = int(audit[9])
    if not fields[CSV_SESSION_ID] or not fields[CSV_LINE_NUM]:
        raise LogFormatError("session_id and session_line_num are required")
    return LogRecord(
        record_key=f"pg:{fields[CSV_SESSION_ID]}:{fields[CSV_LINE_NUM]}",
        occurred_at=_pg_time(fields[CSV_LOG_TIME]),
        database_role=fields[CSV_USER],
        client_address=_address(fields[CSV_CONNECTION_FROM]),
        application=fields[CSV_APPLICATION][:128],
        statement=statement,
        dialect="postgres",
        default_schema="public",
        relation=(schema.strip('"'), table.strip('"')),
        action=action,
        rows=rows,
    )


# MariaDB server_audit ---------------------------------------------------------------------------

def _unquote_object(text: str) -> str:
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        text = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1), m.group(1)), text)


def server_audit_record(line: str) -> LogRecord | None:
    """One server_audit line (``timestamp,serverhost,username,host,connectionid,queryid,operation,
    database,object,retcode``), or None for events that are not successful queries."""
    line = line.rstrip("\r\n")
    head = line.split(",", 8)
    if len(head) < 9:
        raise LogFormatError("a server_audit line has 10 comma-separated fields")
    timestamp, serverhost, username, host, connection_id, query_id, operation, database, rest = head
    obj, _, retcode = rest.rpartition(",")
    if not retcode.strip().lstrip("-").isdigit():
        raise LogFormatError("the last field (retcode) is not a number")
    if operation != "QUERY" or retcode.strip() != "0":
        return None  # connects, table events, failed queries (nothing was read)
    try:
        occurred_at = dt.datetime.strptime(timestamp, "%Y%m%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise LogFormatError(f"timestamp '{timestamp[:30]}' is not YYYYMMDD HH:MM:SS") from None
    return LogRecord(
        record_key=f"my:{serverhost}:{timestamp}:{connection_id}:{query_id}"[:200],
        occurred_at=occurred_at,
        database_role=username,
        client_address=_address(host),
        application="",
        statement=_unquote_object(obj),
        dialect="mysql",
        default_schema=database,
    )


def records_from_text(text: str, log_format: str, final: bool = True) -> tuple[list[LogRecord], list[str], int]:
    """The records of a chunk of log text: (records, errors, bytes consumed). Bytes that are not
    UTF-8 may come in as surrogates (``surrogateescape``, as the pull reads): they count as the
    bytes they were, and records hold U+FFFD for them."""
    records, errors = [], []
    if log_format == "pgaudit":
        data = text.encode("utf-8", "surrogateescape")
        chunks, consumed = csv_records(data, final=final)
        lines = [c.decode("utf-8", "replace") for c in chunks]
        parse = pgaudit_record
    else:
        data = text.encode("utf-8", "surrogateescape")
        end = len(data) if final else data.rfind(b"\n") + 1
        lines = [line for line in data[:end].decode("utf-8", "replace").split("\n") if line.strip()]
        consumed = end
        parse = server_audit_record
    for number, line in enumerate(lines, start=1):
        try:
            record = parse(line)
        except LogFormatError as exc:
            errors.append(f"record {number}: {exc}")
            continue
        if record is not None:
            records.append(record)
    return records, errors, consumed
