"""Lineage from a view's SQL definition, parsed with sqlglot.

A view definition gives dataset edges (every table it reads) and column edges (which
table columns each view column is computed from). A view column that is a bare column
reference is a copy, one computed by an aggregate an aggregation, anything else a
transformation; tables that appear only in joins and filters are read but pass no values.
"""

from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.lineage import lineage as sqlglot_lineage

from lineage.models import EdgeKind


class SQLLineageError(Exception):
    """The definition could not be parsed; the message says where."""


@dataclass(frozen=True)
class ColumnSource:
    schema: str  # the warehouse schema ("" when the definition does not say and no default applies)
    table: str
    column: str
    kind: str  # EdgeKind.COPY, TRANSFORMATION or AGGREGATION


@dataclass
class ViewLineage:
    tables: list[tuple[str, str]] = field(default_factory=list)  # (schema, table) the view reads
    columns: dict[str, list[ColumnSource]] = field(default_factory=dict)  # view column -> sources


def _select_of(definition: str, dialect: str) -> exp.Expression:
    try:
        statements = [s for s in sqlglot.parse(definition, dialect=dialect or None) if s is not None]
    except SqlglotError as exc:
        raise SQLLineageError(str(exc).splitlines()[0][:300]) from None
    if len(statements) != 1:
        raise SQLLineageError(f"Expected one statement, found {len(statements)}.")
    statement = statements[0]
    if isinstance(statement, exp.Create):
        statement = statement.expression
    if not isinstance(statement, exp.Query):
        raise SQLLineageError(f"Expected a SELECT, found {statement.key.upper()}.")
    return statement


def _kind(expression: exp.Expression) -> str:
    inner = expression.this if isinstance(expression, exp.Alias) else expression
    if isinstance(inner, exp.Column):
        return EdgeKind.COPY
    if inner.find(exp.AggFunc) is not None:
        return EdgeKind.AGGREGATION
    return EdgeKind.TRANSFORMATION


def view_lineage(definition: str, *, dialect: str, default_schema: str = "", columns=()) -> ViewLineage:
    """The tables and columns a view reads. ``default_schema`` qualifies unqualified tables
    (the view's own schema, where most warehouses resolve them)."""
    select = _select_of(definition, dialect)
    cte_names = {cte.alias_or_name.lower() for cte in select.find_all(exp.CTE)}
    result = ViewLineage()
    seen_tables = set()
    for table in select.find_all(exp.Table):
        if not table.name or table.name.lower() in cte_names:
            continue
        key = (table.db or default_schema, table.name)
        if key not in seen_tables:
            seen_tables.add(key)
            result.tables.append(key)

    try:
        nodes = sqlglot_lineage(None, select, None, dialect=dialect or None)
    except SqlglotError as exc:
        raise SQLLineageError(str(exc).splitlines()[0][:300]) from None
    if isinstance(nodes, exp.Expression) or not isinstance(nodes, dict):
        nodes = {nodes.name: nodes}
    # The view's own column names (from the warehouse) win over the names sqlglot infers.
    names = list(columns) or list(nodes)
    for position, (name, node) in enumerate(nodes.items()):
        view_column = names[position] if position < len(names) else name
        sources, seen = [], set()
        for leaf in node.walk():
            if leaf.downstream or not isinstance(leaf.expression, exp.Table):
                continue
            table = leaf.expression
            column = leaf.name.rpartition(".")[2].strip("\"`[]")
            key = (table.db or default_schema, table.name, column)
            if column and key not in seen and table.name.lower() not in cte_names:
                seen.add(key)
                sources.append(ColumnSource(*key, kind=_kind(node.expression)))
        if sources:
            result.columns[view_column] = sources
    return result
