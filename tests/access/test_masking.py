from types import SimpleNamespace

import pytest

from access.masking import Plan, Statement, Treatment, ValueKind, column_treatment, value_kind
from catalog.vocabulary import Protection, Sensitivity


def column(name="c", type="text", sensitivity=Sensitivity.REGULAR, protection=Protection.NONE):
    return SimpleNamespace(name=name, type=type, sensitivity=sensitivity, protection=protection)


@pytest.mark.parametrize(("sensitivity", "protection", "expected"), [
    (Sensitivity.REGULAR, Protection.NONE, Treatment.AS_IS),
    (Sensitivity.SENSITIVE, Protection.MASKED, Treatment.PARTIAL),
    (Sensitivity.SENSITIVE, Protection.HASHED, Treatment.HASH),
    (Sensitivity.SENSITIVE, Protection.TOKENIZED, Treatment.TOKEN),
    (Sensitivity.SENSITIVE, Protection.ENCRYPTED, Treatment.NULL),
    (Sensitivity.RESTRICTED, Protection.NONE, Treatment.NULL),
    (Sensitivity.RESTRICTED, Protection.MASKED, Treatment.NULL),
])
def test_treatment_follows_protection_and_restricted_is_hidden(sensitivity, protection, expected):
    assert column_treatment(column(sensitivity=sensitivity, protection=protection)) == expected


@pytest.mark.parametrize(("name", "type", "expected"), [
    ("email", "character varying(255)", ValueKind.EMAIL),
    ("contact_e_mail", "VARCHAR", ValueKind.EMAIL),
    ("note", "text", ValueKind.TEXT),
    ("amount", "numeric(12,2)", ValueKind.NUMBER),
    ("id", "BIGINT", ValueKind.NUMBER),
    ("born", "date", ValueKind.DATE),
    ("seen_at", "timestamp with time zone", ValueKind.DATE),
    ("payload", "bytea", ValueKind.OTHER),
])
def test_value_kind_from_type_and_name(name, type, expected):
    assert value_kind(column(name=name, type=type)) == expected


def test_a_statement_with_a_key_is_shown_redacted():
    plan = Plan(platform="postgresql", statements=[
        Statement("CREATE VIEW v AS SELECT 1", "the view", "postgres"),
        Statement("INSERT INTO keys VALUES ('k')", "the key", "postgres", secret=True),
    ])
    shown = plan.as_dict()["statements"]
    assert shown[0]["text"] == "CREATE VIEW v AS SELECT 1" and not shown[0]["redacted"]
    assert "'k'" not in shown[1]["text"] and shown[1]["redacted"]
