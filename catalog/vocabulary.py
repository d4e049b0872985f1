"""Sensitivity tiers, protections and column modes, with the spellings inputs may use.

Inputs are case-insensitive and accept obvious synonyms; outputs always use the canonical
labels (``Restricted``, ``Hashed``, ``REQUIRED``).
"""

import re

from django.db import models


class Sensitivity(models.IntegerChoices):
    PUBLIC = 0, "Public"
    REGULAR = 1, "Regular"
    SENSITIVE = 2, "Sensitive"
    RESTRICTED = 3, "Restricted"


def sensitivity_label(value) -> str | None:
    """``2`` -> ``"Sensitive"``; ``None`` (not known yet) stays ``None``."""
    return None if value is None else Sensitivity(value).label


# What a dataset nobody has classified shows instead of a tier (it is decided as ``unclassified_tier()``).
UNCLASSIFIED_LABEL = "Unclassified"


def unclassified_tier() -> Sensitivity:
    """The tier the access decision gives a dataset nobody has classified:
    ``settings.CATALOG_UNCLASSIFIED_TIER``, read at the moment of asking (so changing it applies at
    once, with no data to migrate), and never below Regular: what the catalog does not know is not public."""
    from django.conf import settings

    value = settings.CATALOG_UNCLASSIFIED_TIER
    tier = parse_sensitivity(value) if isinstance(value, str) else Sensitivity(value)
    return max(tier, Sensitivity.REGULAR)


class Protection(models.TextChoices):
    NONE = "none", "None"
    MASKED = "masked", "Masked"
    TOKENIZED = "tokenized", "Tokenized"
    HASHED = "hashed", "Hashed"
    ENCRYPTED = "encrypted", "Encrypted"


class ColumnMode(models.TextChoices):
    REQUIRED = "REQUIRED", "REQUIRED"
    NULLABLE = "NULLABLE", "NULLABLE"
    REPEATED = "REPEATED", "REPEATED"


SENSITIVITY_SYNONYMS = {
    "public": Sensitivity.PUBLIC,
    "open": Sensitivity.PUBLIC,
    "regular": Sensitivity.REGULAR,
    "internal": Sensitivity.REGULAR,
    "sensitive": Sensitivity.SENSITIVE,
    "confidential": Sensitivity.SENSITIVE,
    "restricted": Sensitivity.RESTRICTED,
    "highly sensitive": Sensitivity.RESTRICTED,
    "secret": Sensitivity.RESTRICTED,
}

PROTECTION_SYNONYMS = {
    "none": Protection.NONE,
    "no": Protection.NONE,
    "unprotected": Protection.NONE,
    "plain": Protection.NONE,
    "plaintext": Protection.NONE,
    "masked": Protection.MASKED,
    "mask": Protection.MASKED,
    "masking": Protection.MASKED,
    "tokenized": Protection.TOKENIZED,
    "tokenised": Protection.TOKENIZED,
    "token": Protection.TOKENIZED,
    "tokenization": Protection.TOKENIZED,
    "tokenisation": Protection.TOKENIZED,
    "hashed": Protection.HASHED,
    "hash": Protection.HASHED,
    "hashing": Protection.HASHED,
    "encrypted": Protection.ENCRYPTED,
    "encrypt": Protection.ENCRYPTED,
    "encryption": Protection.ENCRYPTED,
}

MODE_SYNONYMS = {
    "required": ColumnMode.REQUIRED,
    "not null": ColumnMode.REQUIRED,
    "nullable": ColumnMode.NULLABLE,
    "optional": ColumnMode.NULLABLE,
    "repeated": ColumnMode.REPEATED,
    "array": ColumnMode.REPEATED,
}

ORIGINATING_SOURCE_RE = re.compile(r"^(?P<kind>[A-Za-z][A-Za-z0-9_\-]*):(?P<name>\S(?:.*\S)?)$")


def _lookup(raw, table: dict, what: str, canonical: list[str]):
    if not isinstance(raw, str):
        raise ValueError(f"{what} must be a string, one of: {', '.join(canonical)}.")
    value = table.get(" ".join(raw.strip().lower().split()))
    if value is None:
        raise ValueError(f"Unknown {what} '{raw}'. Use one of: {', '.join(canonical)}.")
    return value


def parse_sensitivity(raw) -> Sensitivity:
    return _lookup(raw, SENSITIVITY_SYNONYMS, "sensitivity", Sensitivity.labels)


def parse_protection(raw) -> Protection:
    return _lookup(raw, PROTECTION_SYNONYMS, "protection", Protection.labels)


def parse_mode(raw) -> ColumnMode:
    return _lookup(raw, MODE_SYNONYMS, "mode", ColumnMode.labels)


def parse_originating_source(raw) -> tuple[str, str]:
    """``transactional:Reviews`` -> ``("transactional", "Reviews")``; the kind is lower-cased."""
    if not isinstance(raw, str):
        raise ValueError("originatingSource must be a string of the form <kind>:<name>.")
    match = ORIGINATING_SOURCE_RE.match(raw.strip())
    if match is None:
        raise ValueError(
            f"originatingSource '{raw}' must have the form <kind>:<name>, e.g. transactional:Reviews."
        )
    return match["kind"].lower(), match["name"]
