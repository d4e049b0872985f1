"""Suggest personal-data classifications for a harvested warehouse column.

The warehouse sync calls :func:`classify_column` for every new or changed column (tens of
thousands per sync), so this module is pure Python: no database, regexes compiled once at import,
and at most ``MAX_VALUES`` sampled values looked at. Evidence holds counts and fixed descriptions
only, never a sampled value or any fragment of one: it is stored in the catalog and shown to people
who may have no access to the data itself.
"""

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field
from itertools import islice

from catalog.vocabulary import Sensitivity

MAX_VALUES = 200  # values looked at per column, whatever the caller passes
MAX_VALUE_LENGTH = 256  # longer values match no pattern; skipping them bounds regex work
MIN_CONFIDENCE = 0.25
VALUES_ONLY_MIN_SAMPLED = 5
VALUES_ONLY_MIN_FRACTION = 0.8

LABELS: dict[str, Sensitivity] = {
    "email": Sensitivity.SENSITIVE,
    "phone": Sensitivity.SENSITIVE,
    "national_id": Sensitivity.RESTRICTED,
    "credit_card": Sensitivity.RESTRICTED,
    "person_name": Sensitivity.SENSITIVE,
    "birth_date": Sensitivity.SENSITIVE,
    "address": Sensitivity.SENSITIVE,
    "ip_address": Sensitivity.SENSITIVE,
}


@dataclass(frozen=True)
class Suggestion:
    """One suggested label for a column, with the evidence a steward needs to accept or reject it."""

    label: str  # a key of LABELS
    sensitivity: Sensitivity  # LABELS[label]
    confidence: float  # 0..1, two decimals
    # Counts and fixed descriptions only, JSON-serialisable. Excluded from the hash: a dict has none.
    evidence: dict = field(hash=False)


# Name evidence. Keywords are compared with runs of 1-4 adjacent name tokens joined together, so
# `E_MAIL`, `date_of_birth` and `SocialSecurityNumber` reach `email`, `dateofbirth` and
# `socialsecuritynumber`, while `zipped` or `description` never reach `zip` or `ip`.
_NAME_KEYWORDS = {  # label -> {strength: keywords}
    "email": {0.7: "email emailaddress emailaddr", 0.6: "mailaddress"},
    "phone": {0.7: "phone telephone cellphone mobilephone msisdn", 0.65: "mobilenumber",
              0.55: "mobile tel contactnumber", 0.5: "fax"},
    "national_id": {
        0.7: "ssn socialsecurity socialsecuritynumber socialinsurancenumber nationalinsurancenumber "
             "nino nationalid nationalidentifier passport taxid taxpayerid taxidentificationnumber "
             "driverlicense driverslicense driverlicence driverslicence drivinglicense "
             "drivinglicence aadhaar nric",
        0.6: "sin nin tin taxnumber", 0.5: "idnumber idcard"},
    # A card suggestion from the name alone stays moderate: only Luhn-valid values make it firm.
    "credit_card": {0.6: "creditcard creditcardnumber cardnumber cardnum cardno ccnumber ccnum ccno "
                         "debitcard primaryaccountnumber", 0.55: "pan"},
    "person_name": {0.7: "firstname lastname fullname surname givenname familyname forename "
                         "maidenname personname",
                    0.65: "middlename namefirst namelast legalname", 0.55: "fname lname"},
    "birth_date": {0.7: "dob dateofbirth birthdate birthday birthdt", 0.6: "bday", 0.55: "birth"},
    "address": {0.7: "streetaddress addressline homeaddress mailingaddress", 0.65: "address street",
                0.6: "postcode postalcode zipcode", 0.55: "zip addr", 0.5: "postal"},
    "ip_address": {0.7: "ip ipaddr ipaddress ipv4 ipv6 remoteaddr"},
}
_KEYWORDS = {keyword: (label, strength) for label, tiers in _NAME_KEYWORDS.items()
             for strength, keywords in tiers.items() for keyword in keywords.split()}

# `<who>_name` is a person's name; `<thing>_name` (product, table, file, company ...) is not, and
# the things are endless, so only these qualifiers count.
_PERSON_QUALIFIERS = frozenset(
    "customer client contact person patient employee member owner holder cardholder recipient "
    "sender guest student applicant beneficiary passenger traveler traveller buyer driver parent "
    "guardian spouse child teacher doctor subscriber tenant borrower policyholder signatory "
    "emergency manager author".split())
# Tokens saying the column is *about* the thing (a flag, a count, a timestamp), not the thing.
_GENERAL_VETO = frozenset(
    "is has count cnt flag enabled verified verification valid validated validation confirmed "
    "opt optin optout consent status type kind format length len domain bounced bounce sent at ts "
    "updated created modified changed provider preference pref template subject body campaign "
    "opened clicked unsubscribed".split())
_KEY_VETO = "id key uuid guid fk pk ref "  # `email_id`, `name_id`: a foreign key, not the thing
_LABEL_VETO = {label: frozenset(words.split()) for label, words in {
    "email": _KEY_VETO,
    "phone": _KEY_VETO + "app device os platform browser model carrier country code ext extension",
    "national_id": "country issuer issuing expiry expires expiration exp issued authority photo "
                   "image scan",
    "credit_card": _KEY_VETO + "brand network expiry exp expiration last first bin holder name "
                               "token tokenized issuer country fingerprint cvv cvc month year "
                               "scheme masked",
    "person_name": _KEY_VETO,
    "birth_date": _KEY_VETO + "place city country state location weight order rank certificate "
                              "cert registration rate",
    "address": _KEY_VETO + "mac web url wallet host server network net memory mem remote local "
                           "contract bitcoin btc eth ethernet hardware bluetooth proxy gateway "
                           "socket port mail file archive path folder",
    "ip_address": _KEY_VETO + "country city region geo location range block allowlist denylist "
                              "whitelist blacklist version",
}.items()}
_TOKEN_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

_BOOL_TYPE_RE = re.compile(r"(?:bool|boolean|bit)\b")
_NETWORK_TYPE_RE = re.compile(r"(?:inet|cidr)\b")
_TEMPORAL_TYPE_RE = re.compile(r"date|time")
_NUMERIC_TYPE_RE = re.compile(
    r"(?:u?int\d*|integer|bigint|smallint|tinyint|mediumint|byteint|number|numeric|decimal|dec"
    r"|float\d*|double|real|long|short|serial|bigserial|money)\b")
# Labels whose values can be stored as numbers (a phone or card as a bigint, an IPv4 as an int).
_NUMERIC_OK = frozenset({"phone", "national_id", "credit_card", "address", "ip_address"})

# Value evidence.
_EMAIL_RE = re.compile(r"[\w.%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}", re.ASCII)
_PHONE_CHARS_RE = re.compile(r"\+[\d\s().-]{7,24}")
# National format needs separators, so bare ids, dates (2020-01-15), SSNs and cards stay out.
_PHONE_NATIONAL_RE = re.compile(r"(?:\(\d{2,5}\)\s?|\d{2,5}[\s.-])\d{3,4}[\s.-]?\d{3,4}")
_PHONE_STRIP_RE = re.compile(r"[\s().+-]")
_SEPARATORS_RE = re.compile(r"[\s-]")
_SSN_RE = re.compile(r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}")
_SIN_RE = re.compile(r"\d{3}([\s-])\d{3}\1\d{3}")
_NINO_RE = re.compile(r"[A-CEGHJ-PR-TW-Z]{2}\d{6}[A-D]")
_ID_SHAPE_RE = re.compile(r"(?=[A-Z]*\d)[A-Z0-9]{5,20}")  # passport, licence: alphanumeric
_IP_CHARS_RE = re.compile(r"[0-9A-Fa-f.:]+(?:%[\w.-]+)?")
_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ].*)?")
_STREET_RE = re.compile(
    r"\d+[A-Za-z]?(?:-\d+)?,?\s+(?:[\w.'-]+\s+){0,5}(?:street|st|avenue|ave|road|rd|boulevard"
    r"|blvd|lane|ln|drive|dr|way|court|ct|place|pl|terrace|close|crescent|highway|hwy|parkway"
    r"|square|sq)\b", re.IGNORECASE)
_UK_POSTCODE_RE = re.compile(r"[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}")
_CA_POSTCODE_RE = re.compile(r"[ABCEGHJ-NPRSTVXY]\d[A-Z]\s?\d[A-Z]\d")
_US_ZIP_RE = re.compile(r"\d{5}(?:-\d{4})?")
_LOOSE_ADDRESS_RE = re.compile(r"(?=.*\d)(?=.*[^\W\d_])\S.*\s.*\S")  # letters, digits and a space
_NAME_SHAPE_RE = re.compile(r"[^\W\d_]+(?:[\s'’.-]+[^\W\d_]+){0,4}\.?")

# What each label's values are checked against (shown in evidence), and how far agreeing values can
# lift a name hint: a name shape proves far less than a Luhn check.
_VALUE_PATTERNS = {
    "email": ("email address", 0.99),
    "phone": ("phone number (E.164 or national format)", 0.95),
    "national_id": ("SSN, SIN, NINO or identifier shape", 0.97),
    "credit_card": ("Luhn-valid 13-19 digit card number", 0.99),
    "person_name": ("alphabetic name shape", 0.8),
    "birth_date": ("plausible date of birth, not in the future", 0.95),
    "address": ("street address or postal code", 0.9),
    "ip_address": ("IPv4 or IPv6 address", 0.99),
}
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_checksum_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        total += _DOUBLED[digit] if position % 2 else digit
    return total % 10 == 0


def luhn_valid(number: str) -> bool:
    """True when ``number`` is 13-19 digits (spaces and dashes ignored) passing the Luhn check."""
    if isinstance(number, int) and not isinstance(number, bool):
        number = str(number)
    if not isinstance(number, str):
        return False
    digits = _SEPARATORS_RE.sub("", number)
    return (13 <= len(digits) <= 19 and digits.isascii() and digits.isdigit()
            and _luhn_checksum_ok(digits))


def _name_hints(name: str) -> dict[str, tuple[float, str]]:
    """Label -> (strength, keyword) suggested by the column name alone."""
    tokens = [token.lower() for token in _TOKEN_RE.findall(name)]
    token_set = set(tokens)
    if token_set & _GENERAL_VETO:
        return {}
    hints: dict[str, tuple[float, str]] = {}
    for start in range(len(tokens)):
        joined = ""
        for token in tokens[start:start + 4]:
            joined += token
            label, strength = _KEYWORDS.get(joined, (None, 0.0))
            if label and strength > hints.get(label, (0.0, ""))[0]:
                hints[label] = (strength, joined)
    if "person_name" not in hints and "name" in token_set:
        before = tokens[tokens.index("name") - 1] if tokens[0] != "name" else None
        if before in _PERSON_QUALIFIERS:
            hints["person_name"] = (0.6, f"{before} name")
        elif tokens == ["name"]:
            hints["person_name"] = (0.3, "name")  # bare `name`: could name anything
    for label in list(hints):
        if token_set & _LABEL_VETO[label]:
            del hints[label]
    # `email_address`, `ip_address`: the address words belong to the other label.
    if "email" in hints or "ip_address" in hints:
        hints.pop("address", None)
    return hints


def _type_adjusted(label: str, strength: float, column_type: str) -> tuple[float | None, str | None]:
    """Strength after weighing the declared type (None: the type rules the label out), and a note."""
    if not column_type:
        return strength, None
    if _BOOL_TYPE_RE.match(column_type):  # `phone_verified`, `has_email`: a flag about the thing
        return None, None
    if _NETWORK_TYPE_RE.match(column_type):
        return (strength + 0.1, "network type supports it") if label == "ip_address" else (None, None)
    if _TEMPORAL_TYPE_RE.search(column_type):
        return (strength + 0.1, "date type supports it") if label == "birth_date" else (None, None)
    if _NUMERIC_TYPE_RE.match(column_type):
        if label == "birth_date":  # e.g. yyyymmdd integers: possible, less likely
            return strength * 0.7, "numeric type weakens it"
        return (strength, None) if label in _NUMERIC_OK else (None, None)
    return strength, None


def _as_text(raw) -> str:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw).decode("utf-8", "replace").strip()  # binary stays unmatchable garbage
    if isinstance(raw, str):
        return raw.strip()
    try:
        return str(raw).strip()
    except Exception:  # a value whose str() fails is still a sampled value; it matches nothing
        return "\ufffd"


def _plausible_birth(day: dt.date, today: dt.date) -> bool:
    return dt.date(1900, 1, 1) <= day <= today


def _value_labels(raw, hinted, today: dt.date) -> set[str] | None:
    """Labels whose value pattern ``raw`` matches; None when the value is null or empty.

    Loose patterns (bare digits as a phone, any date as a birth date) only apply to ``hinted``
    labels, which the name already suggests.
    """
    if raw is None:
        return None
    if isinstance(raw, dt.date):
        day = raw.date() if isinstance(raw, dt.datetime) else raw
        return {"birth_date"} if "birth_date" in hinted and _plausible_birth(day, today) else set()
    text = _as_text(raw)
    if not text:
        return None
    if len(text) > MAX_VALUE_LENGTH:
        return set()
    if "@" in text:  # nothing else we look for contains an @
        return {"email"} if _EMAIL_RE.fullmatch(text) else set()
    found = set()
    if ("." in text or ":" in text) and _IP_CHARS_RE.fullmatch(text):
        try:
            ipaddress.ip_address(text)
            return {"ip_address"}
        except ValueError:
            pass
    compact = _SEPARATORS_RE.sub("", text)
    # Digits, spaces and dashes only: no pattern needing letters (street, postcode, NINO, name)
    # can match, and skipping them keeps numeric columns, the commonest, cheap.
    numeric = compact.isascii() and compact.isdigit()
    upper = compact.upper()
    if numeric:
        length = len(compact)
        # All-identical digits (0000...) pass Luhn but are placeholders, not cards.
        if 13 <= length <= 19 and compact.count(compact[0]) != length and _luhn_checksum_ok(compact):
            found.add("credit_card")
        if length == 9 and (_SSN_RE.fullmatch(text) or (_SIN_RE.fullmatch(text)
                                                        and _luhn_checksum_ok(compact))):
            found.add("national_id")
    elif _NINO_RE.fullmatch(upper):
        found.add("national_id")
    if "national_id" in hinted and _ID_SHAPE_RE.fullmatch(upper):
        found.add("national_id")
    if text[0] == "+" and _PHONE_CHARS_RE.fullmatch(text):
        if 8 <= sum(char.isdigit() for char in text) <= 15:
            found.add("phone")
    elif compact != text and _PHONE_NATIONAL_RE.fullmatch(text) and sum(c.isdigit() for c in text) >= 10:
        found.add("phone")
    elif "phone" in hinted:
        digits = _PHONE_STRIP_RE.sub("", text)
        if 7 <= len(digits) <= 15 and digits.isascii() and digits.isdigit():
            found.add("phone")
    if not numeric and (_STREET_RE.match(text) or _UK_POSTCODE_RE.fullmatch(upper)
                        or _CA_POSTCODE_RE.fullmatch(upper)):
        found.add("address")
    elif "address" in hinted and (_US_ZIP_RE.fullmatch(text) or _LOOSE_ADDRESS_RE.fullmatch(text)):
        found.add("address")
    if "birth_date" in hinted and _ISO_DATE_RE.fullmatch(text):
        try:
            if _plausible_birth(dt.date.fromisoformat(text[:10]), today):
                found.add("birth_date")
        except ValueError:
            pass
    if not numeric and "person_name" in hinted and _NAME_SHAPE_RE.fullmatch(text):
        found.add("person_name")
    return found


def _scan(values, hinted) -> tuple[int, dict[str, int]]:
    """(non-null values looked at, matches per label) over the first ``MAX_VALUES`` values."""
    if isinstance(values, (str, bytes)):  # one value passed bare, not a sequence of characters
        values = [values]
    today = dt.date.today()
    sampled, counts = 0, dict.fromkeys(LABELS, 0)
    for raw in islice(values, MAX_VALUES):
        labels = _value_labels(raw, hinted, today)
        if labels is None:
            continue
        sampled += 1
        for label in labels:
            counts[label] += 1
    return sampled, counts


def classify_column(*, name: str, type: str = "", values=None) -> list[Suggestion]:
    """Suggest personal-data labels for a column, best first, at most one per label.

    ``name`` and the declared ``type`` give name evidence; ``values``, an optional sample read from
    the warehouse (only the first ``MAX_VALUES`` are looked at), confirm, contradict or, when at
    least 80% of 5+ non-null values match a strict pattern, suggest a label by themselves. Evidence
    holds counts and descriptions only, never values.
    """
    column_type = (type or "").strip().lower()
    hints = {}
    for label, (strength, keyword) in _name_hints(name or "").items():
        adjusted, note = _type_adjusted(label, strength, column_type)
        if adjusted is not None:
            hints[label] = (adjusted, keyword, note)
    sampled, counts = _scan(values, hints) if values is not None else (0, {})
    suggestions = []
    for label, sensitivity in LABELS.items():
        matched = counts.get(label, 0)
        fraction = matched / sampled if sampled else 0.0
        base, keyword, type_note = hints.get(label, (None, None, None))
        if base is not None:
            confidence = base
            if sampled:
                weight = min(1.0, sampled / VALUES_ONLY_MIN_SAMPLED)  # few values prove little
                if fraction >= 0.5:
                    confidence = base + (_VALUE_PATTERNS[label][1] - base) * fraction * weight
                elif fraction < 0.2:  # the values contradict the name (or are hashed, masked ...)
                    confidence = base * (1 - 0.5 * weight)
        elif sampled >= VALUES_ONLY_MIN_SAMPLED and fraction >= VALUES_ONLY_MIN_FRACTION:
            confidence = 0.9 * fraction
        else:
            continue
        if confidence < MIN_CONFIDENCE:
            continue
        evidence = {
            "name": f"matches '{keyword}'" if keyword else None,
            "type": type_note,
            "sampled": sampled,
            "matched": matched,
            "pattern": _VALUE_PATTERNS[label][0] if sampled else None,
        }
        suggestions.append(Suggestion(label, sensitivity, round(min(confidence, 0.99), 2), evidence))
    suggestions.sort(key=lambda s: (-s.confidence, -s.sensitivity, s.label))
    return suggestions
