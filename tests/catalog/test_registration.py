import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from catalog.registration import parse_registration_time, registration_parse
from catalog.vocabulary import ColumnMode, Protection, Sensitivity, parse_protection, parse_sensitivity
from tests.factories import column_payload, registration_payload


def errors_of(payload) -> dict:
    with pytest.raises(ValidationError) as excinfo:
        registration_parse(payload)
    return excinfo.value.message_dict


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Public", Sensitivity.PUBLIC),
        ("regular", Sensitivity.REGULAR),
        ("INTERNAL", Sensitivity.REGULAR),
        ("Sensitive", Sensitivity.SENSITIVE),
        (" restricted ", Sensitivity.RESTRICTED),
    ],
)
def test_sensitivity_accepts_any_case_and_synonyms(raw, expected):
    assert parse_sensitivity(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("None", Protection.NONE),
        ("masking", Protection.MASKED),
        ("Masked", Protection.MASKED),
        ("tokenization", Protection.TOKENIZED),
        ("hash", Protection.HASHED),
        ("HASHED", Protection.HASHED),
        ("encryption", Protection.ENCRYPTED),
    ],
)
def test_protection_accepts_any_case_and_synonyms(raw, expected):
    assert parse_protection(raw) == expected


def test_the_guidance_example_parses_with_canonical_spellings():
    registration = registration_parse(
        registration_payload(
            store="analytics",
            columns=[column_payload("Email", sensitivity="sensitive", protection="masking", mode="nullable")],
        )
    )
    assert registration.schema == "marketing"
    assert registration.name == "review_sentiment"
    assert registration.snapshots[0]["sensitivity"] == "Sensitive"
    assert registration.snapshots[0]["protection"] == "Masked"
    assert registration.snapshots[0]["mode"] == "NULLABLE"
    assert registration.columns[0].mode == ColumnMode.NULLABLE


def test_originating_source_is_stored_parsed():
    registration = registration_parse(
        registration_payload(store="analytics", columns=[column_payload("ReviewID", originatingSource="Transactional:Reviews")])
    )
    column = registration.columns[0]
    assert (column.originating_source_kind, column.originating_source_name) == ("transactional", "Reviews")
    assert registration.snapshots[0]["originatingSource"] == "transactional:Reviews"


@pytest.mark.parametrize("bad", ["Reviews", ":Reviews", "transactional:", "trans actional:Reviews", 42])
def test_malformed_originating_source_is_refused(bad):
    errors = errors_of(registration_payload(store="analytics", columns=[column_payload("a", originatingSource=bad)]))
    assert list(errors) == ["columns[0].originatingSource"]


def test_registration_time_accepts_epoch_seconds_as_string_or_number():
    expected = dt.datetime(2021, 6, 8, 15, 55, 11, tzinfo=dt.timezone.utc)
    assert parse_registration_time("1623167711") == expected
    assert parse_registration_time(1623167711) == expected


def test_registration_time_accepts_iso_8601():
    assert parse_registration_time("2021-06-08T15:55:11Z") == dt.datetime(2021, 6, 8, 15, 55, 11, tzinfo=dt.timezone.utc)
    assert parse_registration_time("2021-06-08T17:55:11+02:00").utcoffset() == dt.timedelta(hours=2)


@pytest.mark.parametrize("bad", ["yesterday", "1623167711000", True, [], "2021-13-45T00:00:00"])
def test_bad_registration_time_names_the_field(bad):
    errors = errors_of(registration_payload(store="analytics", registrationTime=bad))
    assert list(errors) == ["registrationTime"]


def test_duplicate_column_names_are_refused_naming_the_column():
    errors = errors_of(
        registration_payload(
            store="analytics",
            columns=[column_payload("ReviewID"), column_payload("ReviewSentiment"), column_payload("ReviewSentiment")],
        )
    )
    assert errors == {"columns[2].name": ["Duplicate column name 'ReviewSentiment' (also columns[1])."]}


def test_every_problem_is_reported_at_once_by_path():
    errors = errors_of(
        {
            "store": 7,
            "columns": [
                {"name": "a", "type": "STRING", "sensitivity": "Top secret"},
                {"name": "b", "type": "STRING", "sensitivity": "Public", "protection": "rot13"},
                "not an object",
            ],
        }
    )
    assert set(errors) == {"name", "store", "columns[0].sensitivity", "columns[1].protection", "columns[2]"}
    assert "Unknown sensitivity 'Top secret'" in errors["columns[0].sensitivity"][0]


def test_unknown_fields_are_refused_rather_than_ignored():
    errors = errors_of(registration_payload(store="analytics", colums=[]))
    assert errors == {"colums": ["Unknown field."]}


def test_columns_must_not_be_empty():
    assert errors_of(registration_payload(store="analytics", columns=[])) == {
        "columns": ["A dataset needs at least one column."]
    }
