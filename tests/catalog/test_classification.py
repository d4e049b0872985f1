"""Classification suggestions for harvested columns: names, types, sampled values, evidence."""

import dataclasses
import datetime as dt
import json
import re
import time
from decimal import Decimal

import pytest

from catalog.classification import LABELS, Suggestion, classify_column, luhn_valid
from catalog.vocabulary import Sensitivity

TEST_CARDS = ["4111111111111111", "5500005555555559", "378282246310005"]


def labels(suggestions):
    return [s.label for s in suggestions]


def only(suggestions, label):
    """The single suggestion for ``label``; fails if absent."""
    [suggestion] = [s for s in suggestions if s.label == label]
    return suggestion


def one_digit_changed(number):
    last = int(number[-1])
    return number[:-1] + str((last + 1) % 10)


# Luhn


@pytest.mark.parametrize("number", TEST_CARDS)
def test_luhn_accepts_the_standard_test_card_numbers(number):
    assert luhn_valid(number)


@pytest.mark.parametrize("number", TEST_CARDS)
def test_luhn_rejects_a_number_with_one_digit_changed(number):
    assert not luhn_valid(one_digit_changed(number))


@pytest.mark.parametrize("number", TEST_CARDS)
def test_luhn_rejects_a_change_to_any_single_digit(number):
    for position, digit in enumerate(number):
        changed = number[:position] + str((int(digit) + 5) % 10) + number[position + 1:]
        assert not luhn_valid(changed), changed


def test_luhn_ignores_spaces_and_dashes():
    assert luhn_valid("4111 1111 1111 1111")
    assert luhn_valid("5500-0055-5555-5559")


def test_luhn_rejects_fewer_than_13_or_more_than_19_digits():
    assert not luhn_valid("42")  # passes the checksum, far too short for a card
    assert not luhn_valid("4111111111111111" + "0000")


def test_luhn_rejects_letters_and_other_non_digits():
    assert not luhn_valid("4111-1111-1111-111x")
    assert not luhn_valid("")
    assert not luhn_valid(None)


def test_luhn_accepts_an_integer_card_number():
    assert luhn_valid(4111111111111111)


# Vocabulary and the suggestion shape


def test_labels_map_each_category_to_its_tier():
    assert LABELS == {
        "email": Sensitivity.SENSITIVE,
        "phone": Sensitivity.SENSITIVE,
        "national_id": Sensitivity.RESTRICTED,
        "credit_card": Sensitivity.RESTRICTED,
        "person_name": Sensitivity.SENSITIVE,
        "birth_date": Sensitivity.SENSITIVE,
        "address": Sensitivity.SENSITIVE,
        "ip_address": Sensitivity.SENSITIVE,
    }


def test_suggestion_carries_the_tier_of_its_label():
    [suggestion] = classify_column(name="ssn")
    assert suggestion.sensitivity == Sensitivity.RESTRICTED


def test_suggestion_is_frozen():
    [suggestion] = classify_column(name="email")
    with pytest.raises(dataclasses.FrozenInstanceError):
        suggestion.confidence = 1.0


def test_column_with_no_evidence_gets_no_suggestion():
    assert classify_column(name="order_total", type="numeric", values=[1, 2, 3, 4, 5]) == []


# Name evidence, label by label


@pytest.mark.parametrize("name", ["email", "EmailAddress", "email_addr", "customer-email", "E_MAIL"])
def test_email_found_from_the_name_in_any_naming_style(name):
    assert labels(classify_column(name=name)) == ["email"]


@pytest.mark.parametrize("name", ["phone", "phone_number", "PhoneNo", "mobile_number", "telephone"])
def test_phone_found_from_the_name(name):
    assert labels(classify_column(name=name)) == ["phone"]


@pytest.mark.parametrize("name", ["ssn", "sin", "social_security_number", "passport_no", "national_id",
                                  "tax_id", "drivers_license_number", "NationalInsuranceNumber"])
def test_national_id_found_from_the_name(name):
    assert labels(classify_column(name=name)) == ["national_id"]


@pytest.mark.parametrize("name", ["cc_number", "card_num", "pan", "creditCardNumber"])
def test_credit_card_found_from_the_name(name):
    assert labels(classify_column(name=name)) == ["credit_card"]


@pytest.mark.parametrize("name", ["first_name", "LastName", "full_name", "surname", "given_name",
                                  "customer_name"])
def test_person_name_found_from_the_name(name):
    assert labels(classify_column(name=name)) == ["person_name"]


@pytest.mark.parametrize("name", ["dob", "date_of_birth", "birthdate", "BirthDay"])
def test_birth_date_found_from_the_name(name):
    assert labels(classify_column(name=name)) == ["birth_date"]


@pytest.mark.parametrize("name", ["street", "address_line1", "postal_code", "zip", "home_address"])
def test_address_found_from_the_name(name):
    assert labels(classify_column(name=name)) == ["address"]


@pytest.mark.parametrize("name", ["ip", "ip_addr", "client_ip", "remote_addr", "IPAddress"])
def test_ip_address_found_from_the_name(name):
    assert labels(classify_column(name=name)) == ["ip_address"]


def test_strong_name_only_match_is_moderately_confident():
    [suggestion] = classify_column(name="email")
    assert 0.6 <= suggestion.confidence <= 0.7
    assert suggestion.evidence == {"name": "matches 'email'", "type": None, "sampled": 0,
                                   "matched": 0, "pattern": None}


def test_bare_name_is_only_a_weak_person_name_hint():
    [suggestion] = classify_column(name="name")
    assert suggestion.label == "person_name"
    assert suggestion.confidence < only(classify_column(name="first_name"), "person_name").confidence
    assert suggestion.confidence <= 0.4


def test_card_suggestion_from_the_name_alone_stays_moderate():
    assert 0.5 <= only(classify_column(name="card_number"), "credit_card").confidence <= 0.65


# Name false positives and the declared type


@pytest.mark.parametrize("name", ["shipping_method", "zipped", "description", "vip_level", "tipping",
                                  "company", "sinusoid", "panel_id"])
def test_words_that_merely_contain_a_keyword_are_not_matches(name):
    assert classify_column(name=name) == []


def test_emailed_at_timestamp_is_not_an_email():
    assert classify_column(name="emailed_at", type="TIMESTAMP") == []


def test_email_name_with_a_timestamp_type_is_not_an_email():
    assert classify_column(name="email", type="timestamp with time zone") == []


def test_boolean_phone_verified_is_not_a_phone():
    assert classify_column(name="phone_verified", type="boolean") == []


def test_boolean_type_removes_a_phone_suggestion_from_the_name():
    assert classify_column(name="phone", type="BOOL") == []


@pytest.mark.parametrize("name", ["has_email", "email_count", "phone_type", "address_id", "email_domain"])
def test_columns_about_personal_data_are_not_personal_data(name):
    assert classify_column(name=name) == []


@pytest.mark.parametrize("name", ["product_name", "table_name", "file_name", "company_name", "name_id"])
def test_names_of_things_are_not_person_names(name):
    assert classify_column(name=name) == []


def test_email_address_is_an_email_not_an_address():
    assert labels(classify_column(name="email_address")) == ["email"]


def test_ip_address_is_an_ip_not_a_postal_address():
    assert labels(classify_column(name="ip_address")) == ["ip_address"]


def test_mac_address_is_not_personal_data():
    assert classify_column(name="mac_address") == []


def test_card_holder_name_is_a_person_name_not_a_card():
    assert labels(classify_column(name="card_holder_name")) == ["person_name"]


def test_card_expiry_and_last_four_are_not_card_numbers():
    assert classify_column(name="card_expiry") == []
    assert classify_column(name="card_last4") == []


def test_birth_place_is_not_a_birth_date():
    assert classify_column(name="birth_place") == []


def test_date_type_supports_a_birth_date_name():
    with_type = only(classify_column(name="dob", type="DATE"), "birth_date")
    assert with_type.confidence > only(classify_column(name="dob"), "birth_date").confidence
    assert with_type.evidence["type"] == "date type supports it"


def test_numeric_type_keeps_a_phone_stored_as_a_number():
    assert labels(classify_column(name="phone_number", type="BIGINT")) == ["phone"]


def test_numeric_type_removes_an_email_suggestion():
    assert classify_column(name="email", type="INTEGER") == []


# Value evidence, label by label


def test_email_found_from_values_when_the_name_says_nothing():
    values = [f"user{i}@mail{i}.org" for i in range(20)]
    suggestion = only(classify_column(name="contact", type="varchar", values=values), "email")
    assert suggestion.confidence >= 0.8
    assert suggestion.evidence == {"name": None, "type": None, "sampled": 20, "matched": 20,
                                   "pattern": "email address"}


def test_phone_found_from_e164_and_national_values_when_the_name_says_nothing():
    values = ["+44 20 7946 0958", "+1 (555) 123-4567", "+33612345678", "(555) 234-5678", "020 7946 0123"]
    assert labels(classify_column(name="col_7", values=values)) == ["phone"]


def test_bare_digits_count_as_phones_only_when_the_name_says_phone():
    values = ["5551234567", "5559876543", "5550001111", "5552223333", "5554445555"]
    assert classify_column(name="col_7", values=values) == []
    assert only(classify_column(name="phone", values=values), "phone").confidence >= 0.9


def test_ssn_values_are_found_when_the_name_says_nothing():
    values = ["219-09-9999", "078-05-1120", "123-45-6789", "536-22-8726", "401-33-2210"]
    assert labels(classify_column(name="ref", values=values)) == ["national_id"]


def test_ssn_shapes_that_are_never_issued_do_not_count():
    values = ["000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"]
    assert classify_column(name="ref", values=values) == []


def test_luhn_valid_canadian_sin_values_are_found():
    values = ["046 454 286", "046-454-286", "130 692 544", "130-692-544", "046 454 286"]
    assert labels(classify_column(name="ref", values=values)) == ["national_id"]


def test_card_found_from_luhn_valid_values_when_the_name_says_nothing():
    values = TEST_CARDS + ["4111 1111 1111 1111", "5500-0055-5555-5559"]
    assert labels(classify_column(name="payload", values=values)) == ["credit_card"]


def test_card_shaped_values_failing_luhn_are_not_cards():
    values = [one_digit_changed(number) for number in TEST_CARDS] * 2
    assert classify_column(name="payload", values=values) == []


def test_all_zero_placeholders_are_not_cards():
    assert classify_column(name="payload", values=["0000000000000000"] * 10) == []


def test_card_name_with_luhn_valid_values_is_highly_confident():
    suggestion = only(classify_column(name="card_number", values=TEST_CARDS * 2), "credit_card")
    assert suggestion.confidence >= 0.95


def test_card_name_with_values_failing_luhn_loses_confidence():
    values = [one_digit_changed(number) for number in TEST_CARDS] * 2
    name_only = only(classify_column(name="card_number"), "credit_card").confidence
    suggestions = classify_column(name="card_number", values=values)
    assert all(s.confidence < name_only for s in suggestions)


def test_integer_card_numbers_count():
    values = [int(number) for number in TEST_CARDS] * 2
    assert labels(classify_column(name="payload", type="bigint", values=values)) == ["credit_card"]


def test_ipv4_and_ipv6_values_are_found_when_the_name_says_nothing():
    values = ["203.0.113.7", "198.51.100.23", "2001:db8::1", "fe80::1ff:fe23:4567:890a", "10.1.2.3"]
    assert labels(classify_column(name="origin", values=values)) == ["ip_address"]


def test_version_like_and_time_values_are_not_ips():
    values = ["1.2.3", "12:30:00", "300.1.1.1", "1.2", "v1.2.3.4"]
    assert classify_column(name="origin", values=values) == []


def test_street_addresses_are_found_when_the_name_says_nothing():
    values = ["221B Baker Street", "10 Downing St", "1600 Pennsylvania Avenue NW",
              "742 Evergreen Terrace", "4 Privet Drive"]
    assert labels(classify_column(name="line", values=values)) == ["address"]


def test_postcodes_confirm_a_postal_code_name():
    values = ["SW1A 1AA", "K1A 0B1", "90210", "10001-1234", "EC1A 1BB"]
    assert only(classify_column(name="postal_code", values=values), "address").confidence >= 0.85


def test_birth_dates_in_values_count_only_when_the_name_hints_birth():
    values = [dt.date(1980, 5, 17), "1975-02-03", dt.datetime(1990, 1, 1, 12, 0), "2001-12-31", "1966-07-30"]
    assert classify_column(name="event_day", values=values) == []
    assert only(classify_column(name="dob", type="date", values=values), "birth_date").confidence >= 0.9


def test_dates_before_1900_or_in_the_future_are_not_birth_dates():
    future = dt.date.today() + dt.timedelta(days=30)
    values = ["1850-01-01", future.isoformat(), future, dt.date(1899, 12, 31), "1801-06-06"]
    suggestion = only(classify_column(name="dob", values=values), "birth_date")
    assert suggestion.evidence["matched"] == 0


def test_person_shaped_values_raise_a_bare_name_hint():
    values = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Katherine Johnson", "Edsger W. Dijkstra"]
    with_values = only(classify_column(name="name", values=values), "person_name")
    assert with_values.confidence > only(classify_column(name="name"), "person_name").confidence


def test_person_name_is_never_suggested_from_values_alone():
    values = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Katherine Johnson", "Linus Torvalds"]
    assert classify_column(name="label", values=values) == []


# How values weigh


def test_name_and_values_agreeing_give_high_confidence():
    values = [f"person{i}@host{i}.net" for i in range(50)]
    suggestion = only(classify_column(name="email", values=values), "email")
    assert 0.9 <= suggestion.confidence <= 0.99


def test_values_only_needs_at_least_five_values():
    assert classify_column(name="contact", values=["a@b.org", "c@d.org", "e@f.org", "g@h.org"]) == []


def test_values_only_needs_a_high_matched_fraction():
    values = ["a@b.org", "c@d.org", "e@f.org", "nope", "nothing", "none here"]
    assert classify_column(name="contact", values=values) == []


def test_none_and_empty_values_are_not_sampled():
    values = [None, "", "   ", "a@b.org", None, "c@d.org"]
    assert only(classify_column(name="email", values=values), "email").evidence["sampled"] == 2


def test_only_the_first_200_values_are_looked_at():
    looked_at = []

    def endless():
        i = 0
        while True:
            looked_at.append(i)
            yield f"user{i}@site.org"
            i += 1

    suggestion = only(classify_column(name="email", values=endless()), "email")
    assert suggestion.evidence["sampled"] == 200
    assert len(looked_at) == 200


def test_values_of_awkward_types_are_converted_safely():
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no")

    values = [b"a@b.org", bytearray(b"c@d.org"), b"\xff\xfe\x00", 42, 3.5, Decimal("7"), True,
              dt.time(12, 0), Unprintable(), ["nested"], {"k": 1}, "x" * 10_000]
    suggestions = classify_column(name="email", values=values)
    assert only(suggestions, "email").evidence == {
        "name": "matches 'email'", "type": None, "sampled": 12, "matched": 2, "pattern": "email address"}


def test_a_single_string_passed_as_values_is_one_value():
    assert only(classify_column(name="email", values="a@b.org"), "email").evidence["sampled"] == 1


def test_empty_values_leave_the_name_evidence_alone():
    assert classify_column(name="email", values=[]) == classify_column(name="email")


# Evidence and the shape of the answer


def fragments(value, size=4):
    text = str(value).lower()
    return {text[i:i + n] for n in range(size, len(text) + 1) for i in range(len(text) - n + 1)}


DISTINCTIVE = {
    "email": ["qorvath.zimbel@plunkquist.io", "yselde.marrow@tindlefax.co", "brannoc.vey@quillmere.net",
              "ottoline.sprag@vexholm.org", "wendric.pyle@orrowbay.com"],
    "phone": ["+44 20 7946 0958", "+1 (415) 555-0182", "+33 6 12 34 56 78", "+49 30 901820", "+61 2 9374 4000"],
    "ssn": ["219-09-9999", "078-05-1120", "536-22-8726", "401-33-2210", "287-65-4321"],
    "card_number": TEST_CARDS + ["4012888888881881", "6011111111111117"],
    "client_ip": ["203.0.113.77", "198.51.100.231", "2001:db8:85a3::8a2e:370:7334", "192.0.2.146", "10.44.81.9"],
    "home_address": ["8823 Vellichor Avenue", "17 Quimbly Lane", "402 Sorrowmere Road", "9 Thistlewick Close",
                     "55 Ardenvale Drive"],
    "full_name": ["Zephyrine Quockwell", "Bartholo Mewling", "Ismenia Crabtrude", "Oswin Farraday",
                  "Lucasta Pennywhistle"],
    "dob": ["1961-03-27", "1984-11-08", "1972-06-14", "1995-09-30", "1958-12-02"],
}


@pytest.mark.parametrize("name", DISTINCTIVE)
def test_evidence_never_contains_any_value_or_fragment_of_one(name):
    values = DISTINCTIVE[name]
    suggestions = classify_column(name=name, values=values) + classify_column(name="c", values=values)
    assert suggestions  # the values were recognised, so there was evidence to leak into
    dumped = json.dumps([s.evidence for s in suggestions]).lower()
    leaked = {fragment for value in values for fragment in fragments(value) if fragment in dumped}
    assert leaked == set()


def test_evidence_is_json_serialisable_with_counts_and_descriptions():
    [suggestion] = classify_column(name="client_ip", type="inet", values=DISTINCTIVE["client_ip"])
    assert json.loads(json.dumps(suggestion.evidence)) == {
        "name": "matches 'ip'", "type": "network type supports it", "sampled": 5, "matched": 5,
        "pattern": "IPv4 or IPv6 address"}


def test_at_most_one_suggestion_per_label():
    # The name reaches `email` twice and the values match both email and phone patterns.
    values = ["a@b.org", "+44 20 7946 0958"] * 10
    found = labels(classify_column(name="email_EmailAddress_e_mail_phone", values=values))
    assert len(found) == len(set(found))
    assert set(found) <= set(LABELS)


def test_suggestions_come_best_first():
    values = [f"u{i}@d{i}.org" for i in range(10)]
    suggestions = classify_column(name="email_or_phone", values=values)
    assert labels(suggestions) == ["email", "phone"]
    assert suggestions[0].confidence > suggestions[1].confidence


def test_confidence_is_between_0_and_1_rounded_to_two_decimals():
    for name, values in DISTINCTIVE.items():
        for suggestion in classify_column(name=name, values=values) + classify_column(name=name):
            assert 0 <= suggestion.confidence <= 1
            assert suggestion.confidence == round(suggestion.confidence, 2)
            assert isinstance(suggestion, Suggestion)


# Speed: called for every new or changed column of a 30,000-column sync


def test_classifying_compiles_no_regex(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a regex was compiled while classifying")

    monkeypatch.setattr(re, "compile", refuse)
    monkeypatch.setattr(re, "_compile", refuse)
    for name, values in DISTINCTIVE.items():
        classify_column(name=name, type="varchar", values=values)
