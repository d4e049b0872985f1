"""SCIM filters (RFC 7644 §3.4.2.2) read into a Django ``Q``.

A small recursive-descent parser of the RFC's grammar: ``attrPath op value``, ``attrPath pr``,
``and``, ``or``, ``not (...)``, parentheses and ``attr[subfilter]`` value paths, with the RFC's
precedence (not > and > or). Attribute names and operators are case-insensitive. Each resource
says which attributes may be filtered on and which model field each reads; anything else is an
``invalidFilter`` error naming it."""

import re
from dataclasses import dataclass

from django.db.models import Q

OPERATORS = {"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<lparen>\() | (?P<rparen>\)) | (?P<lbracket>\[) | (?P<rbracket>\])
      | (?P<word>(?:urn:[A-Za-z0-9:._-]+:)?[A-Za-z][A-Za-z0-9_$.-]*)
      | (?P<number>-?\d+(?:\.\d+)?)
    )""",
    re.VERBOSE,
)


class FilterError(ValueError):
    """The filter is malformed or names what cannot be filtered on (``scimType`` invalidFilter)."""


@dataclass(frozen=True)
class Field:
    """How one SCIM attribute reads a model field: ``lookup`` is the ORM path; ``kind`` is
    ``str`` (compared case-insensitively, as SCIM's caseExact=false attributes are), ``bool`` or ``id``."""

    lookup: str
    kind: str = "str"


def _tokens(text: str) -> list[tuple[str, object]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise FilterError(f"Unexpected text at position {position}: {text[position:position + 20]!r}.")
        position = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "string":
            import json

            try:
                value = json.loads(value)
            except ValueError:
                raise FilterError(f"Malformed string {value}.") from None
        elif kind == "number":
            value = float(value) if "." in value else int(value)
        tokens.append((kind, value))
    return tokens


class _Parser:
    def __init__(self, text: str, fields: dict[str, Field]):
        self.tokens = _tokens(text)
        self.position = 0
        self.fields = {name.lower(): field for name, field in fields.items()}

    def peek_word(self) -> str:
        if self.position < len(self.tokens) and self.tokens[self.position][0] == "word":
            return str(self.tokens[self.position][1]).lower()
        return ""

    def take(self, kind: str):
        if self.position >= len(self.tokens) or self.tokens[self.position][0] != kind:
            found = self.tokens[self.position][1] if self.position < len(self.tokens) else "the end"
            raise FilterError(f"Expected {kind} but found {found!r}.")
        self.position += 1
        return self.tokens[self.position - 1][1]

    def parse(self) -> Q:
        if not self.tokens:
            raise FilterError("The filter is empty.")
        q = self.or_expression(prefix="")
        if self.position != len(self.tokens):
            raise FilterError(f"Unexpected {self.tokens[self.position][1]!r} after a complete filter.")
        return q

    def or_expression(self, prefix: str) -> Q:
        q = self.and_expression(prefix)
        while self.peek_word() == "or":
            self.position += 1
            q = q | self.and_expression(prefix)
        return q

    def and_expression(self, prefix: str) -> Q:
        q = self.unary(prefix)
        while self.peek_word() == "and":
            self.position += 1
            q = q & self.unary(prefix)
        return q

    def unary(self, prefix: str) -> Q:
        if self.peek_word() == "not":
            self.position += 1
            self.take("lparen")
            q = self.or_expression(prefix)
            self.take("rparen")
            return ~q
        if self.position < len(self.tokens) and self.tokens[self.position][0] == "lparen":
            self.position += 1
            q = self.or_expression(prefix)
            self.take("rparen")
            return q
        return self.attribute_expression(prefix)

    def attribute_expression(self, prefix: str) -> Q:
        path = str(self.take("word"))
        if ":" in path:  # a schema URN before the attribute: the core schemas are the only ones
            path = path.rsplit(":", 1)[1]
        name = f"{prefix}.{path}" if prefix else path
        if self.position < len(self.tokens) and self.tokens[self.position][0] == "lbracket":
            self.position += 1
            q = self.or_expression(prefix=name)
            self.take("rbracket")
            return q
        operator = self.peek_word()
        if operator == "pr":
            self.position += 1
            field = self.field(name)
            return ~Q(**{f"{field.lookup}__isnull": True}) & ~Q(**{field.lookup: ""}) if field.kind == "str" \
                else ~Q(**{f"{field.lookup}__isnull": True})
        if operator not in OPERATORS:
            raise FilterError(f"Unknown operator {operator or 'missing'!r} after {name}.")
        self.position += 1
        if self.position >= len(self.tokens):
            raise FilterError(f"A value is missing after {name} {operator}.")
        kind, value = self.tokens[self.position]
        self.position += 1
        if kind == "word" and str(value).lower() in ("true", "false", "null"):
            value = {"true": True, "false": False, "null": None}[str(value).lower()]
        elif kind not in ("string", "number"):
            raise FilterError(f"A value is missing after {name} {operator}.")
        return self.compare(self.field(name), operator, value, name)

    def field(self, name: str) -> Field:
        field = self.fields.get(name.lower())
        if field is None:
            raise FilterError(f"Filtering on '{name}' is not supported.")
        return field

    def compare(self, field: Field, operator: str, value, name: str) -> Q:
        if field.kind == "bool":
            if not isinstance(value, bool) or operator not in ("eq", "ne"):
                raise FilterError(f"'{name}' is compared with eq or ne to true or false.")
            q = Q(**{field.lookup: value})
            return ~q if operator == "ne" else q
        if field.kind == "id":
            if operator not in ("eq", "ne"):
                raise FilterError(f"'{name}' is compared with eq or ne.")
            try:
                q = Q(**{field.lookup: int(value)})
            except (TypeError, ValueError):
                q = Q(pk__in=[])  # no resource has that id
            return ~q if operator == "ne" else q
        if value is None:
            q = Q(**{f"{field.lookup}__isnull": True}) | Q(**{field.lookup: ""})
            return ~q if operator == "ne" else q
        if not isinstance(value, str):
            value = str(value)
        lookup = {"eq": "iexact", "ne": "iexact", "co": "icontains", "sw": "istartswith", "ew": "iendswith",
                  "gt": "gt", "ge": "gte", "lt": "lt", "le": "lte"}[operator]
        q = Q(**{f"{field.lookup}__{lookup}": value})
        return ~q if operator == "ne" else q


def scim_filter_q(text: str, fields: dict[str, Field]) -> Q:
    """The ``Q`` that ``text`` (a SCIM filter) means over ``fields``; ``FilterError`` when it cannot."""
    if len(text) > 2000:
        raise FilterError("The filter is longer than 2,000 characters.")
    try:
        return _Parser(text, fields).parse()
    except RecursionError:  # parentheses nested hundreds deep
        raise FilterError("The filter nests too deeply.") from None
