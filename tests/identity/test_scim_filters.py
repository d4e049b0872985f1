"""The SCIM filter parser: the RFC's grammar and precedence, read into a Django Q."""

import pytest
from django.db.models import Q

from identity.scim_filters import Field, FilterError, scim_filter_q

FIELDS = {"userName": Field("username"), "active": Field("is_active", "bool"), "id": Field("pk", "id"),
          "emails.value": Field("email")}


def test_and_binds_tighter_than_or():
    q = scim_filter_q('userName eq "a" or userName eq "b" and active eq true', FIELDS)

    assert q == Q(username__iexact="a") | (Q(username__iexact="b") & Q(is_active=True))


def test_names_and_operators_are_case_insensitive_and_urns_are_read():
    q = scim_filter_q('urn:ietf:params:scim:schemas:core:2.0:User:USERNAME SW "Al"', FIELDS)

    assert q == Q(username__istartswith="Al")


def test_escaped_quotes_and_not():
    q = scim_filter_q(r'not (userName co "say \"hi\"")', FIELDS)

    assert q == ~Q(username__icontains='say "hi"')


def test_value_paths_and_present():
    assert scim_filter_q('emails[value ew "@corp.example"]', FIELDS) == Q(email__iendswith="@corp.example")
    assert scim_filter_q("emails.value pr", FIELDS) == ~Q(email__isnull=True) & ~Q(email="")


def test_an_id_that_is_no_number_matches_nothing():
    assert scim_filter_q('id eq "abc"', FIELDS) == Q(pk__in=[])


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ('userName eq "a" and', "Expected word"),
    ('nickName eq "a"', "'nickName' is not supported"),
    ('active gt true', "eq or ne"),
    ('userName eq "a")', "Unexpected"),
    ('userName eq "a', "Unexpected text"),
    ("x" * 2001, "2,000"),
])
def test_malformed_filters_say_what_is_wrong(text, message):
    with pytest.raises(FilterError, match=message):
        scim_filter_q(text, FIELDS)
