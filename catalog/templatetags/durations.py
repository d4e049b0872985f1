"""Durations in words, with plurals: ``{{ request.duration|duration_words }}`` -> "1 hour 30 minutes"."""

from datetime import timedelta

from django import template
from django.template.defaultfilters import pluralize

register = template.Library()


@register.filter
def duration_words(value) -> str:
    """A ``timedelta`` as days, hours and minutes ("4 hours", "1 day 2 hours", "45 minutes")."""
    if not isinstance(value, timedelta):
        return "" if value is None else str(value)
    minutes = round(value.total_seconds() / 60)
    if minutes < 1:
        seconds = round(value.total_seconds())
        return f"{seconds} second{pluralize(seconds)}"
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{count} {unit}{pluralize(count)}" for count, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))
             if count]
    return " ".join(parts)
