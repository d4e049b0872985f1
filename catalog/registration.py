"""Parsing and validating a dataset registration.

The REST API and the browser form both hand the registration (the security guidance's
JSON, plus ``name`` and ``store``) to :func:`registration_parse`, so both accept and
refuse exactly the same input. Every problem found is reported at once, keyed by the
path of the field (``columns[2].sensitivity``), as a Django ``ValidationError``.
"""

import datetime as dt
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from catalog.validation import FieldErrors, json_type, string_field
from catalog.vocabulary import (
    ColumnMode,
    Protection,
    Sensitivity,
    parse_mode,
    parse_originating_source,
    parse_protection,
    parse_sensitivity,
)

DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_$\-/]*(\.[A-Za-z0-9_$][A-Za-z0-9_$\-/]*)*$")
KNOWN_FIELDS = {
    "name", "store", "registrationTime", "registeredBy", "description", "version", "columns", "owners", "tags",
}
KNOWN_COLUMN_FIELDS = {"name", "description", "mode", "type", "originatingSource", "sensitivity", "protection"}
# Epoch seconds later than this (the year 2286) are almost certainly milliseconds.
MAX_EPOCH_SECONDS = 9_999_999_999


# Label lookups without building an enum member per column (a sync snapshots tens of thousands).
_MODE_LABELS = dict(ColumnMode.choices)
_SENSITIVITY_LABELS = dict(Sensitivity.choices)
_PROTECTION_LABELS = dict(Protection.choices)


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    sensitivity: Sensitivity
    protection: Protection = Protection.NONE
    mode: ColumnMode = ColumnMode.NULLABLE
    description: str = ""
    originating_source_kind: str = ""
    originating_source_name: str = ""

    @property
    def originating_source(self) -> str:
        if not self.originating_source_kind:
            return ""
        return f"{self.originating_source_kind}:{self.originating_source_name}"

    def snapshot(self) -> dict:
        """The column in canonical output form, as versions store it and the API returns it."""
        return {
            "name": self.name,
            "description": self.description,
            "mode": _MODE_LABELS[self.mode],
            "type": self.type,
            "originatingSource": self.originating_source,
            "sensitivity": _SENSITIVITY_LABELS[self.sensitivity],
            "protection": _PROTECTION_LABELS[self.protection],
        }


@dataclass(frozen=True)
class Registration:
    store: str
    schema: str
    name: str
    columns: list[ColumnSpec]
    description: str | None = None  # None: not sent, keep the dataset's description
    registered_by: str = ""
    registration_time: dt.datetime | None = None
    declared_version: str = ""
    owners: list[str] | None = None
    tags: list[str] | None = None
    snapshots: list[dict] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return schema_fingerprint(self.snapshots)


def schema_fingerprint(snapshots: list[dict]) -> str:
    canonical = json.dumps(snapshots, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_registration_time(raw) -> dt.datetime:
    """Epoch seconds (number or digit string, as the guidance's example) or ISO 8601."""
    if isinstance(raw, bool):
        raise ValueError("registrationTime must be epoch seconds or an ISO 8601 date-time.")
    if isinstance(raw, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", raw):
        raw = float(raw)
    if isinstance(raw, (int, float)):
        if raw < 0 or raw > MAX_EPOCH_SECONDS:
            raise ValueError(
                f"registrationTime {raw} is out of range for epoch seconds (milliseconds are not accepted)."
            )
        return dt.datetime.fromtimestamp(raw, tz=dt.timezone.utc)
    if isinstance(raw, str):
        try:
            parsed = parse_datetime(raw.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise ValueError(f"registrationTime '{raw}' is neither epoch seconds nor an ISO 8601 date-time.")
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, dt.timezone.utc)
        return parsed
    raise ValueError("registrationTime must be epoch seconds or an ISO 8601 date-time.")


def _string_list(errors: FieldErrors, payload: dict, key: str) -> list[str] | None:
    if key not in payload or payload[key] is None:
        return None
    value = payload[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        errors.add(key, "Must be an array of strings.")
        return None
    return [item.strip() for item in value if item.strip()]


def _disguised(name: str) -> bool:
    """A name that would look like another on a page: invisible (format or control) characters, or
    characters Unicode folds into others (full-width letters, ligatures)."""
    return unicodedata.normalize("NFKC", name) != name or any(
        unicodedata.category(char) in ("Cf", "Cc") for char in name)


def _parse_column(errors: FieldErrors, raw, index: int) -> ColumnSpec | None:
    path = f"columns[{index}]"
    if not isinstance(raw, dict):
        errors.add(path, f"Must be an object, not {json_type(raw)}.")
        return None
    for unknown in sorted(set(raw) - KNOWN_COLUMN_FIELDS):
        errors.add(f"{path}.{unknown}", "Unknown field.")
    name = string_field(errors, raw, "name", f"{path}.name", required=True, max_length=255)
    if name and _disguised(name):
        errors.add(f"{path}.name", "Contains invisible or look-alike characters (e.g. a zero-width space or "
                                   "full-width letters): spell the name as the warehouse does.")
        name = None
    type_ = string_field(errors, raw, "type", f"{path}.type", required=True, max_length=128)
    description = string_field(errors, raw, "description", f"{path}.description")
    parsed = {}
    for key, parser, required in (
        ("sensitivity", parse_sensitivity, True),
        ("protection", parse_protection, False),
        ("mode", parse_mode, False),
        ("originatingSource", parse_originating_source, False),
    ):
        value = raw.get(key)
        if value is None or (key == "originatingSource" and value == ""):
            if required:
                errors.add(f"{path}.{key}", "This field is required.")
            continue
        try:
            parsed[key] = parser(value)
        except ValueError as exc:
            errors.add(f"{path}.{key}", str(exc))
    if not name or not type_ or "sensitivity" not in parsed:
        return None
    kind, source_name = parsed.get("originatingSource", ("", ""))
    return ColumnSpec(
        name=name,
        type=type_,
        description=description,
        sensitivity=parsed["sensitivity"],
        protection=parsed.get("protection", Protection.NONE),
        mode=parsed.get("mode", ColumnMode.NULLABLE),
        originating_source_kind=kind,
        originating_source_name=source_name,
    )


def registration_parse(payload) -> Registration:
    """Validate a registration payload completely, or raise ``ValidationError`` per field."""
    errors = FieldErrors()
    if not isinstance(payload, dict):
        raise ValidationError({"non_field_errors": [f"Expected a JSON object, got {json_type(payload)}."]})
    for unknown in sorted(set(payload) - KNOWN_FIELDS):
        errors.add(unknown, "Unknown field.")

    full_name = string_field(errors, payload, "name", "name", required=True, max_length=500)
    if full_name and not DATASET_NAME_RE.match(full_name):
        errors.add("name", "Use letters, digits, _ - $ / and dots between parts, e.g. marketing.review_sentiment.")
    store = string_field(errors, payload, "store", "store", required=True, max_length=64)
    description = string_field(errors, payload, "description", "description") if "description" in payload else None
    registered_by = string_field(errors, payload, "registeredBy", "registeredBy", max_length=255)
    declared_version = payload.get("version")
    if isinstance(declared_version, int) and not isinstance(declared_version, bool):
        declared_version = str(declared_version)
    if declared_version is not None and not isinstance(declared_version, str):
        errors.add("version", f"Must be a string or an integer, not {json_type(declared_version)}.")
        declared_version = ""
    declared_version = (declared_version or "").strip()[:64]

    registration_time = timezone.now()
    if payload.get("registrationTime") is not None:
        try:
            registration_time = parse_registration_time(payload["registrationTime"])
        except ValueError as exc:
            errors.add("registrationTime", str(exc))

    owners = _string_list(errors, payload, "owners")
    tags = _string_list(errors, payload, "tags")

    columns: list[ColumnSpec] = []
    raw_columns = payload.get("columns")
    if raw_columns is None:
        errors.add("columns", "This field is required.")
    elif not isinstance(raw_columns, list):
        errors.add("columns", f"Must be an array of column objects, not {json_type(raw_columns)}.")
    elif not raw_columns:
        errors.add("columns", "A dataset needs at least one column.")
    elif len(raw_columns) > settings.CATALOG_MAX_COLUMNS:
        errors.add("columns", f"At most {settings.CATALOG_MAX_COLUMNS} columns (got {len(raw_columns)}).")
    else:
        first_seen: dict[str, int] = {}
        for index, raw in enumerate(raw_columns):
            spec = _parse_column(errors, raw, index)
            if spec is None:
                continue
            key = spec.name.lower()
            if key in first_seen:
                errors.add(
                    f"columns[{index}].name",
                    f"Duplicate column name '{spec.name}' (also columns[{first_seen[key]}]).",
                )
                continue
            first_seen[key] = index
            columns.append(spec)

    errors.raise_if_any()
    schema, _, name = full_name.rpartition(".")
    return Registration(
        store=store,
        schema=schema,
        name=name,
        columns=columns,
        description=description,
        registered_by=registered_by,
        registration_time=registration_time,
        declared_version=declared_version,
        owners=owners,
        tags=tags,
        snapshots=[column.snapshot() for column in columns],
    )
