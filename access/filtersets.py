"""Filters of access lists, one FilterSet per list, used by its page and its endpoint alike."""

import re
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone

import django_filters
from django import forms
from django.db.models import Q
from django.utils import timezone

from access import decisions, selectors
from access.models import Enforcement, Grant, GrantStatus
from catalog.api_support import ID_RANGE
from catalog.models import Environment

FAILED_ENFORCEMENT = (Enforcement.APPLY_FAILED, Enforcement.REVOKE_FAILED)
LARGEST_ID = ID_RANGE[1]

GRANT_STATUS_CHOICES = [
    ("live", "Live (gives access now)"),
    ("ending_today", "Live, ending today"),
    ("scheduled", "Scheduled (not started)"),
    ("failed", "Failed in the warehouse"),
    ("expired", "Expired"),
    ("revoked", "Revoked"),
    ("active", "Active (same as live)"),
]


def grant_status_filter(status: str, now=None) -> Q:
    """A grant's status as of ``now``, as the decision and ``GrantSerializer.status`` see it: a live
    grant past its end is expired even before a worker marks it; ``failed``: the warehouse change
    failed (enforcement ``apply_failed`` or ``revoke_failed``), whatever the grant's status."""
    now = now or timezone.now()
    live = Q(status__in=decisions.LIVE_STATUSES, starts_at__lte=now, ends_at__gt=now)
    if status in ("live", "active"):
        return live
    if status == "ending_today":
        tomorrow = datetime.combine(timezone.localdate(now) + timedelta(days=1), time.min,
                                    tzinfo=timezone.get_current_timezone())
        return live & Q(ends_at__lt=tomorrow)
    if status == "scheduled":
        return Q(status__in=decisions.LIVE_STATUSES, starts_at__gt=now, ends_at__gt=now)
    if status == "failed":
        return Q(enforcement__in=FAILED_ENFORCEMENT)
    if status == "expired":
        return Q(status=GrantStatus.EXPIRED) | Q(status__in=decisions.LIVE_STATUSES, ends_at__lte=now)
    return Q(status=GrantStatus.REVOKED)


class UtcDateOrTimeField(forms.DateTimeField):
    """A date (its midnight, catalog time zone) or a date-time, read as the instant it names in
    UTC; an instant outside the years 1 to 9999 in UTC is a field error, not a database error."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(dt_timezone.utc)
        except OverflowError:
            raise forms.ValidationError("Out of range: a date or date-time from the year 1 to 9999 in UTC.") from None


class UtcDateOrTimeFilter(django_filters.DateTimeFilter):
    field_class = UtcDateOrTimeField


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class GrantFilterSet(django_filters.FilterSet):
    """Filters of ``GET /api/v1/access/grants/`` and of the grants page (``/access/grants/``)."""

    status = django_filters.ChoiceFilter(
        choices=GRANT_STATUS_CHOICES, method="filter_status", empty_label="Any status",
        help_text="As of now: live (gives access now; `active` is the same), ending_today (live, ends before "
                  "midnight), scheduled, failed (the warehouse change failed), expired (also live grants past "
                  "their end), revoked.",
    )
    dataset = django_filters.CharFilter(method="filter_dataset", label="Dataset",
                                        help_text="Dataset id, or its qualified name (any case).")
    user = django_filters.CharFilter(method="filter_user", label="User", help_text='A username, or "me".')
    store = django_filters.CharFilter(field_name="dataset__store__name", lookup_expr="iexact", label="Store",
                                      help_text="Store name (any case).")
    environment = django_filters.ChoiceFilter(field_name="dataset__store__environment", choices=Environment.choices,
                                              empty_label="Any environment", label="Environment")
    endsAfter = UtcDateOrTimeFilter(
        field_name="ends_at", lookup_expr="gte", label="Ends from", widget=forms.DateInput(attrs={"type": "date"}),
        help_text="ISO 8601 date or date-time, inclusive (a date is its midnight, catalog time zone).",
    )
    endsBefore = UtcDateOrTimeFilter(
        field_name="ends_at", lookup_expr="lt", label="Ends before", widget=forms.DateInput(attrs={"type": "date"}),
        help_text="ISO 8601 date or date-time, exclusive (a date is its midnight, catalog time zone).",
    )
    live = django_filters.BooleanFilter(method="filter_live", help_text="true: gives access now; false: does not.")
    breakGlass = django_filters.BooleanFilter(field_name="is_break_glass")
    awaitingReview = django_filters.BooleanFilter(
        method="filter_awaiting_review", help_text="true: break-glass grants still waiting for their after-the-fact review."
    )

    class Meta:
        model = Grant
        fields = ["status", "dataset", "user", "store", "environment", "endsAfter", "endsBefore", "live", "breakGlass",
                  "awaitingReview"]

    def is_valid(self):
        valid = super().is_valid()
        if valid:
            after, before = self.form.cleaned_data.get("endsAfter"), self.form.cleaned_data.get("endsBefore")
            if after and before and after >= before:
                self.form.add_error("endsAfter", "Ends from is not before Ends before: nothing can match.")
                return False
            dataset = (self.form.cleaned_data.get("dataset") or "").strip()
            if _NUMBER.fullmatch(dataset) and not (dataset.isdigit() and 1 <= int(dataset) <= LARGEST_ID):
                # A number that is no id (1e3, 0, -1.09e166, past the column's range) is not a name either.
                self.form.add_error("dataset", f"A dataset id from 1 to {LARGEST_ID}, or a qualified name.")
                return False
        return valid

    def filter_status(self, queryset, name, value):
        return queryset.filter(grant_status_filter(value)) if value else queryset

    def filter_dataset(self, queryset, name, value):
        value = value.strip()
        if value.isdigit():
            return queryset.filter(dataset_id=int(value)) if int(value) <= LARGEST_ID else queryset.none()
        return queryset.filter(dataset__qualified_name__iexact=value)

    def filter_awaiting_review(self, queryset, name, value):
        return queryset.filter(selectors.AWAITING_REVIEW) if value else queryset.exclude(selectors.AWAITING_REVIEW)

    def filter_user(self, queryset, name, value):
        if value == "me":
            return queryset.filter(user=self.request.user)
        return queryset.filter(user__username=value.strip())

    def filter_live(self, queryset, name, value):
        live = grant_status_filter("live")
        return queryset.filter(live) if value else queryset.exclude(live)
