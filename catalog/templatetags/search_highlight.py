"""What a search matched, highlighted: every piece of text is escaped, each match wrapped in <mark>."""

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

register = template.Library()

SNIPPET_CONTEXT = 60  # characters either side of the first match in a long description


def _terms(query) -> list[str]:
    """What to mark: a search (a string), or its words (a list), longest first."""
    if isinstance(query, (list, tuple)):
        terms = [str(term).strip() for term in query]
    else:
        terms = [str(query or "").strip()]
    return sorted({term for term in terms if term}, key=len, reverse=True)


def _marked(text: str, query: str, *, break_at_dots: bool = False) -> str:
    def plain(piece: str) -> str:
        escaped = escape(piece)
        return escaped.replace(".", ".<wbr>") if break_at_dots else escaped

    terms = _terms(query)
    if not terms:
        return plain(text)
    pattern = "|".join(re.escape(term) for term in terms)
    pieces = re.split(f"({pattern})", text, flags=re.IGNORECASE)
    # re.split with one group: even indexes are the text between matches, odd ones the matches.
    return "".join(f"<mark>{escape(piece)}</mark>" if index % 2 else plain(piece) for index, piece in enumerate(pieces))


@register.filter(needs_autoescape=False)
def highlight(text, query):
    """``text`` escaped, with every case-insensitive occurrence of ``query`` in <mark>."""
    return mark_safe(_marked(str(text or ""), query))


@register.filter(needs_autoescape=False)
def highlight_name(text, query):
    """As ``highlight``, for a qualified name: it may break after each dot."""
    return mark_safe(_marked(str(text or ""), query, break_at_dots=True))


@register.filter(needs_autoescape=False)
def highlight_snippet(text, query):
    """The part of a long ``text`` around the first match of ``query``, highlighted."""
    text, terms = str(text or ""), _terms(query)
    lowered = text.lower()
    found, length = min(((lowered.find(term.lower()), len(term)) for term in terms if term.lower() in lowered), default=(-1, 0))
    if found < 0 or len(text) <= 2 * SNIPPET_CONTEXT + length:
        return highlight(text, query)
    start, end = max(0, found - SNIPPET_CONTEXT), min(len(text), found + length + SNIPPET_CONTEXT)
    snippet = _marked(text[start:end], query)
    return mark_safe(("…" if start else "") + snippet + ("…" if end < len(text) else ""))
