"""What a reader without raw access sees of each column, decided once for every kind of store.

The catalog's protection and sensitivity of a column become a *treatment* here; each store kind
(``access/warehouses/<kind>.py``) turns treatments into its own SQL or JSON. Keeping the rule in one
place means PostgreSQL, MariaDB, Snowflake and BigQuery never disagree on what is hidden.

- ``Restricted`` columns and ``Encrypted`` ones: ``NULL`` unless granted.
- ``Masked``: a partial mask by the column's kind of value (an e-mail keeps its domain, a number its
  last digits, a date its year, other text its first character).
- ``Hashed``: a keyed hash (HMAC-SHA256 with the dataset's key).
- ``Tokenized``: a stable token (a prefix and the first 16 hex characters of the keyed hash).
- Everything else as it is.

Enforcement work is previewed before it runs: each step is a ``Statement`` and a store's work for a
dataset is a ``Plan``; the same objects are shown on the dataset page, returned by the API, run by
the workers and recorded (redacted) in the audit trail.
"""

import re
from dataclasses import dataclass, field

from django.db import models

from catalog.vocabulary import Protection, Sensitivity


# A ``Masked`` number keeps its last digits: ``x MOD 10 ** NUMBER_DIGITS_KEPT``, the same in every
# store kind (PostgreSQL, MariaDB, Snowflake; BigQuery's data policies cannot keep digits, see there).
NUMBER_DIGITS_KEPT = 2
NUMBER_MODULUS = 10**NUMBER_DIGITS_KEPT


class Treatment(models.TextChoices):
    AS_IS = "as_is", "As it is"
    PARTIAL = "partial", "Partially masked"
    HASH = "hash", "Keyed hash"
    TOKEN = "token", "Stable token"
    NULL = "null", "Hidden (NULL)"


class ValueKind(models.TextChoices):
    EMAIL = "email", "e-mail address"
    NUMBER = "number", "number"
    DATE = "date", "date or time"
    TEXT = "text", "text"
    OTHER = "other", "other"


_NUMBER = re.compile(r"int|numeric|decimal|number|float|double|real|serial|money", re.IGNORECASE)
_DATE = re.compile(r"date|time", re.IGNORECASE)
_TEXT = re.compile(r"char|text|string|clob|citext|uuid|json", re.IGNORECASE)
_EMAIL_NAME = re.compile(r"e[-_]?mail", re.IGNORECASE)


def column_treatment(column) -> str:
    """The treatment of ``column`` (a ``catalog.Column`` or anything with sensitivity/protection)."""
    if column.sensitivity >= Sensitivity.RESTRICTED or column.protection == Protection.ENCRYPTED:
        return Treatment.NULL
    return {
        Protection.MASKED: Treatment.PARTIAL,
        Protection.HASHED: Treatment.HASH,
        Protection.TOKENIZED: Treatment.TOKEN,
    }.get(column.protection, Treatment.AS_IS)


def value_kind(column) -> str:
    """What kind of value a column holds, from its declared type and, for text, its name."""
    declared = column.type or ""
    if _DATE.search(declared) and not _TEXT.search(declared):
        return ValueKind.DATE
    if _NUMBER.search(declared):
        return ValueKind.NUMBER
    if _TEXT.search(declared):
        return ValueKind.EMAIL if _EMAIL_NAME.search(column.name) else ValueKind.TEXT
    return ValueKind.OTHER


@dataclass(frozen=True)
class Statement:
    """One step of enforcement, readable before it runs.

    ``text`` is SQL in ``dialect`` (a sqlglot dialect name: ``postgres``, ``mysql``, ``snowflake``,
    ``bigquery``) or, for ``dialect == "json"``, a JSON document (BigQuery IAM bindings and policy
    tags). ``secret`` marks a statement whose text carries a key: it is shown and audited redacted.
    """

    text: str
    purpose: str
    dialect: str
    secret: bool = False

    def shown(self) -> str:
        return "-- (carries a key; not shown)" if self.secret else self.text


@dataclass
class Plan:
    """What enforcement would do in one store for one dataset (or the whole store)."""

    platform: str
    statements: list[Statement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "platform": self.platform,
            "statements": [
                {"text": s.shown(), "purpose": s.purpose, "dialect": s.dialect, "redacted": s.secret}
                for s in self.statements
            ],
            "notes": list(self.notes),
        }
