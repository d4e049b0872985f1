"""Long qualified names (``store.schema.table``) that wrap at their dots, not mid-word."""

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def break_at_dots(name) -> str:
    """``analytics.reporting.review_digest`` with a line-break opportunity after each dot."""
    parts = str(name).split(".")
    joined = mark_safe(".<wbr>").join(conditional_escape(part) for part in parts)
    return mark_safe(joined)
