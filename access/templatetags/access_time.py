"""Times as people read them: "7 Dec 2026, 14:05" in the page, the exact ISO time on hover.

The server writes the catalog's time zone (``TIME_ZONE``, named after the time);
``static/js/local-times.js`` rewrites it in the reader's own time zone when scripts run.
"""

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.filter
def when(value):
    """A ``<time>`` element: readable text, ``datetime`` and ``title`` with the exact ISO time."""
    if not value:
        return "—"
    local = timezone.localtime(value)
    exact = local.isoformat()
    zone = local.tzname() or ""
    text = f"{local.day} {local:%b %Y, %H:%M}"
    return format_html('<time datetime="{}" title="{}" data-local>{} <span class="tz">{}</span></time>',
                       exact, exact, text, zone)
