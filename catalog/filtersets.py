import datetime as dt
import json

import django_filters
from django import forms
from django.db import connection
from django.db.models import Exists, OuterRef, Q
from drf_spectacular.utils import extend_schema_field

from catalog.api_support import ID_RANGE
from catalog.models import Column, Dataset, DatasetStatus, Environment, StoreKind
from catalog.search import dataset_search_filter
from catalog.vocabulary import UNCLASSIFIED_LABEL, Protection, Sensitivity


class IdFilter(django_filters.NumberFilter):
    """An id in a query parameter (``?dataset=31``): a whole number from 1 to 2^63-1, or a 400
    naming the parameter (``1e3``, ``-1.09e166`` or an id past the column's range are not ids)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", ID_RANGE[0])
        kwargs.setdefault("max_value", ID_RANGE[1])
        super().__init__(*args, **kwargs)
        # The schema of this parameter (per instance, to keep its help text): drf-spectacular
        # would call a NumberFilter on a foreign key a "number".
        extend_schema_field({
            "type": "integer", "format": "int64", "minimum": ID_RANGE[0], "maximum": ID_RANGE[1],
            "description": str(self.extra.get("help_text") or "An id."),
        })(self)


class UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    """ISO 8601 read as the instant it names, in UTC: PostgreSQL refuses offsets past +-15:59
    that RFC 3339 allows (``+16:00``), and an instant before the year 1 in UTC is no date."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(dt.timezone.utc)
        except OverflowError:
            raise forms.ValidationError("Out of range: a date-time from the year 1 to 9999 in UTC.") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time in a query parameter (``?since=2026-01-01T00:00:00+16:00``)."""

    field_class = UtcDateTimeField


NO_OWNER = "none"  # ?owner=none: datasets nobody owns


def _label_choices(choices):
    """Filters take the canonical labels in the URL (?sensitivity=Restricted)."""
    return [(label, label) for _, label in choices]


class DatasetFilterSet(django_filters.FilterSet):
    """One set of filters for the dataset list page and the list endpoint; all live in the URL."""

    q = django_filters.CharFilter(method="filter_search", label="Search")
    sensitivity = django_filters.MultipleChoiceFilter(
        choices=[*_label_choices(Sensitivity.choices), (UNCLASSIFIED_LABEL, UNCLASSIFIED_LABEL)],
        method="filter_sensitivity",
        label="Sensitivity", widget=forms.CheckboxSelectMultiple,
    )
    protection = django_filters.MultipleChoiceFilter(
        choices=_label_choices(Protection.choices), method="filter_protection",
        label="Protection", widget=forms.CheckboxSelectMultiple,
    )
    environment = django_filters.ChoiceFilter(field_name="store__environment", choices=Environment.choices)
    store = django_filters.CharFilter(field_name="store__name", label="Store")
    store_kind = django_filters.ChoiceFilter(field_name="store__kind", choices=StoreKind.choices, label="Store kind")
    residency = django_filters.CharFilter(field_name="store__residency", lookup_expr="iexact", label="Residency")
    line_of_business = django_filters.CharFilter(field_name="store__line_of_business", lookup_expr="iexact")
    customer = django_filters.CharFilter(field_name="store__customer", lookup_expr="iexact")
    owner = django_filters.CharFilter(
        method="filter_owner", label="Owner", help_text="An owner's username, or `none` for datasets without any owner."
    )
    tag = django_filters.CharFilter(method="filter_tag", label="Tag", help_text="Datasets carrying this tag (exact).")
    status = django_filters.ChoiceFilter(choices=DatasetStatus.choices)

    class Meta:
        model = Dataset
        fields = []

    def filter_search(self, queryset, name, value):
        """Full-text over names, descriptions, column names and descriptions, tags and owners, with
        typos in names forgiven, ranked (``catalog.search``); substring matching on SQLite."""
        return dataset_search_filter(queryset, value)

    def filter_tag(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        if connection.vendor == "postgresql":
            return queryset.filter(tags__contains=[value])
        return queryset.filter(tags__icontains=json.dumps(value))  # SQLite: the JSON text holds "value"

    def filter_sensitivity(self, queryset, name, values):
        """By the label shown: a tier matches classified datasets of that tier; ``Unclassified``
        those nobody has classified (whatever tier the decision gives them)."""
        by_label = {label: value for value, label in Sensitivity.choices}
        condition = Q(classified=True, sensitivity__in=[by_label[label] for label in values if label in by_label])
        if UNCLASSIFIED_LABEL in values:
            condition |= Q(classified=False)
        return queryset.filter(condition)

    def filter_protection(self, queryset, name, values):
        by_label = {label: value for value, label in Protection.choices}
        protected = Column.objects.filter(dataset=OuterRef("pk"), protection__in=[by_label[v] for v in values])
        return queryset.filter(Exists(protected))

    def filter_owner(self, queryset, name, value):
        """By an owner's username; ``none``: datasets without any owner."""
        if value.strip().lower() == NO_OWNER:
            return queryset.filter(~Exists(Dataset.owners.through.objects.filter(dataset=OuterRef("pk"))))
        owned = Dataset.owners.through.objects.filter(dataset=OuterRef("pk"), user__username=value.strip())
        return queryset.filter(Exists(owned))
