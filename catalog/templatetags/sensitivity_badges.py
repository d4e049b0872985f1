"""The sensitivity badge of a dataset: its tier, or "Unclassified" while nobody has declared one."""

from django import template

from catalog.vocabulary import UNCLASSIFIED_LABEL, unclassified_tier

register = template.Library()


def _unclassified_title() -> str:
    return (f"Nobody has classified it yet: access is decided as {unclassified_tier().label} "
            "until its owner or a security engineer declares its columns' sensitivity")


@register.inclusion_tag("catalog/partials/sensitivity_badge.html")
def dataset_sensitivity_badge(dataset, title=""):
    """``{% dataset_sensitivity_badge dataset "Highest sensitivity of its columns" %}``"""
    if dataset.classified:
        return {"label": dataset.get_sensitivity_display(), "title": title}
    return {"label": UNCLASSIFIED_LABEL, "title": _unclassified_title()}


@register.inclusion_tag("catalog/partials/sensitivity_badge.html")
def unclassified_badge():
    """For a column of a dataset nobody has classified, whatever label its schema carries."""
    return {"label": UNCLASSIFIED_LABEL, "title": _unclassified_title()}
