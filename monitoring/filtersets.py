"""Filters of the alert inbox, one FilterSet used by its page (``/monitoring/alerts/``) and its
endpoint (``GET /api/v1/monitoring/alerts/``) alike."""

import django_filters
from django.db.models import Q
from django.utils import timezone

from monitoring.detectors import DEFAULTS as DETECTOR_DEFAULTS
from monitoring.models import Alert, AlertStatus, Severity

# What the inbox shows when the URL says nothing: alerts still to work (open or acknowledged),
# not snoozed.
DEFAULTS = {"status": "open", "snoozed": "false"}

ALERT_STATUS_CHOICES = [
    ("open", "To work (open or acknowledged)"),
    ("new", "Open, not acknowledged"),
    ("acknowledged", "Acknowledged"),
    ("resolved", "Resolved"),
    ("all", "Any status"),
]
SEVERITY_CHOICES = [(severity.label.lower(), severity.label) for severity in Severity]
SEVERITY_BY_NAME = {severity.label.lower(): severity for severity in Severity}
SNOOZED_CHOICES = [("false", "Not snoozed"), ("true", "Snoozed"), ("any", "Snoozed or not")]


def snoozed_condition(now=None) -> Q:
    """Alerts hidden from the inbox right now (snoozed until a later time)."""
    return Q(snoozed_until__gt=now or timezone.now())


class AlertFilterSet(django_filters.FilterSet):
    """``status`` (default open: open or acknowledged), ``severity``, ``rule``, ``assignee``
    (a username, ``me`` or ``none``), ``snoozed`` (default false) and ``q`` (words in the title,
    summary, person, database role or subject)."""

    status = django_filters.ChoiceFilter(
        choices=ALERT_STATUS_CHOICES, method="filter_status", empty_label=None, label="Status",
        help_text="open (default: open or acknowledged), new (open, not acknowledged), acknowledged, resolved, all.",
    )
    severity = django_filters.ChoiceFilter(
        choices=SEVERITY_CHOICES, method="filter_severity", empty_label="Any severity", label="Severity",
        help_text="low, medium, high or critical.",
    )
    rule = django_filters.ChoiceFilter(
        field_name="rule", choices=[(rule, rule) for rule in sorted(DETECTOR_DEFAULTS)], empty_label="Any rule",
        label="Rule", help_text="The detector's rule name (docs/monitoring.md describes each).",
    )
    assignee = django_filters.CharFilter(method="filter_assignee", label="Assignee",
                                         help_text='A username, "me" or "none" (unassigned).')
    snoozed = django_filters.ChoiceFilter(
        choices=SNOOZED_CHOICES, method="filter_snoozed", empty_label=None, label="Snoozed",
        help_text="false (default: hide snoozed alerts), true (only snoozed ones), any.",
    )
    q = django_filters.CharFilter(method="filter_q", label="Search",
                                  help_text="Words in the title, summary, person, database role or subject.")

    class Meta:
        model = Alert
        fields = ["status", "severity", "rule", "assignee", "snoozed", "q"]

    def __init__(self, data=None, *args, **kwargs):
        if data is not None:
            data = data.copy()
            for name, value in DEFAULTS.items():
                if not data.get(name):
                    data[name] = value
        super().__init__(data, *args, **kwargs)

    def filter_status(self, queryset, name, value):
        if value == "open":
            return queryset.exclude(status=AlertStatus.RESOLVED)
        if value == "new":
            return queryset.filter(status=AlertStatus.OPEN)
        if value in (AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED):
            return queryset.filter(status=value)
        return queryset

    def filter_severity(self, queryset, name, value):
        return queryset.filter(severity=SEVERITY_BY_NAME[value])

    def filter_assignee(self, queryset, name, value):
        value = value.strip()
        if value == "me":
            return queryset.filter(assignee=self.request.user)
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        return queryset.filter(assignee__username=value)

    def filter_snoozed(self, queryset, name, value):
        if value == "true":
            return queryset.filter(snoozed_condition())
        if value == "false":
            return queryset.exclude(snoozed_condition())
        return queryset

    def filter_q(self, queryset, name, value):
        for word in value.split()[:8]:
            queryset = queryset.filter(
                Q(title__icontains=word) | Q(summary__icontains=word) | Q(user__username__icontains=word)
                | Q(database_role__icontains=word) | Q(subject_key__icontains=word) | Q(rule__icontains=word)
            )
        return queryset
