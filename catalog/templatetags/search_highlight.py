"""What a search matched, highlighted: every piece of text is escaped, each match wrapped in <mark>."""

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

register = template.Library()

SNIPPET_CONTEXT = 60  # characters either side of the first match in a long description


def _marked(text: str, query: str, *, break_at_dots: bool = False) -> str:
    def plain(piece: str) -> str:
        escaped = escape(piece)
        return escaped.replace(".", ".<wbr>") if break_at_dots else escaped

    query = (query or "").strip()
    if not query:
        return plain(text)
    pieces = re.split(f"({re.escape(query)})", text, flags=re.IGNORECASE)
    # re.split with one group: even indexes are the text between matches, odd ones the matches.
    return "".join(f"<mark>{escape(piece)}</mark>" if index % 2 else plain(piece) for index, piece in enumerate(pieces))


@register.filter(needs_autoescape=False)
def highlight(text, query):
    """``text`` escaped, with every case-insensitive occurrence of ``query`` in <mark>."""
    return mark_safe(_marked(str(text or ""), str(query or "")))


@register.filter(needs_autoescape=False)
def highlight_name(text, query):
    """As ``highlight``, for a qualified name: it may break after each dot."""
    return mark_safe(_marked(str(text or ""), str(query or ""), break_at_dots=True))


@register.filter(needs_autoescape=False)
def highlight_snippet(text, query):
    """The part of a long ``text`` around the first match of ``query``, highlighted."""
    text, query = str(text or ""), str(query or "").strip()
    found = text.lower().find(query.lower()) if query else -1
    if found < 0 or len(text) <= 2 * SNIPPET_CONTEXT + len(query):
        return highlight(text, query)
    start, end = max(0, found - SNIPPET_CONTEXT), min(len(text), found + len(query) + SNIPPET_CONTEXT)
    snippet = _marked(text[start:end], query)
    return mark_safe(("…" if start else "") + snippet + ("…" if end < len(text) else ""))
