"""Counts read as English: "1 hour", "2 hours" (Django's pluralize), on pages and in mail."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse

from catalog.templatetags.durations import duration_words
from tests.access.test_views import ask, orders, owner, prod, web  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("value, words", [
    (timedelta(hours=1), "1 hour"),
    (timedelta(hours=4), "4 hours"),
    (timedelta(minutes=90), "1 hour 30 minutes"),
    (timedelta(minutes=1), "1 minute"),
    (timedelta(days=1, hours=2), "1 day 2 hours"),
    (timedelta(seconds=20), "20 seconds"),
])
def test_durations_are_written_in_words_with_plurals(value, words):
    assert duration_words(value) == words


def test_a_one_hour_request_reads_1_hour_in_the_queue_and_on_its_page(client, reader, owner, orders):  # noqa: F811
    request = ask(reader, orders, duration=1)

    queue = web(client, owner).get(reverse("access:approval-queue")).text
    detail = client.get(reverse("access:request-detail", args=[request.pk])).text

    assert "<dd>1 hour</dd>" in queue and "1 hours" not in queue
    assert "<dd>1 hour</dd>" in detail and "1 hours" not in detail


def test_a_two_hour_request_reads_2_hours(client, reader, owner, orders):  # noqa: F811
    ask(reader, orders, duration=2)

    queue = web(client, owner).get(reverse("access:approval-queue")).text

    assert "<dd>2 hours</dd>" in queue


def test_the_request_mail_gives_the_duration_in_words(reader, owner, orders, django_capture_on_commit_callbacks):  # noqa: F811
    with django_capture_on_commit_callbacks(execute=True):
        ask(reader, orders, duration=1)

    body = next(message.body for message in mail.outbox if "Access request" in message.subject)
    assert "Duration: 1 hour\n" in body
