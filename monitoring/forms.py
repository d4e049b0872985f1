"""Forms of the alert workflow (the alert page); the services in monitoring/alerts.py check the rules."""

from datetime import timedelta

from django import forms
from django.utils import timezone

from access.forms import AccessFormMixin
from monitoring.alerts import NOTE_MAX

# The snooze buttons: (value, label, how long).
SNOOZE_PRESETS = [("1h", "1 hour", timedelta(hours=1)), ("1d", "1 day", timedelta(days=1)),
                  ("1w", "1 week", timedelta(weeks=1))]


class AlertFormMixin(AccessFormMixin):
    def errors_from(self, error) -> None:
        """An ``ApplicationError`` onto the field it names (``error.extra``), else above the form."""
        named = False
        for field, texts in (error.extra or {}).items():
            if field in self.fields:
                for text in texts:
                    self.add_error(field, text)
                named = True
        if not named:
            self.add_error(None, error.message)
        self.focus_problems()


class AlertAssignForm(AlertFormMixin, forms.Form):
    assignee = forms.ModelChoiceField(queryset=None, required=False, label="Assign to", empty_label="Nobody",
                                      to_field_name="username")

    def __init__(self, *args, assignees=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = assignees


class AlertResolveForm(AlertFormMixin, forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Resolution note", max_length=NOTE_MAX,
                           error_messages={"required": "Say how the alert was resolved."},
                           help_text="What you found and did; kept in the audit trail.")


class AlertSnoozeForm(AlertFormMixin, forms.Form):
    until = forms.DateTimeField(required=False, label="Snooze until",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
                                help_text="At most 30 days ahead; or use a button.")
    preset = forms.ChoiceField(required=False, choices=[(value, label) for value, label, _ in SNOOZE_PRESETS])

    def clean(self):
        data = super().clean()
        preset = {value: length for value, _, length in SNOOZE_PRESETS}.get(data.get("preset") or "")
        if preset is not None:
            data["until"] = timezone.now() + preset
        elif not data.get("until") and "until" not in self.errors:
            self.add_error("until", "Pick a time, or snooze for 1 hour, 1 day or 1 week.")
        return data


class AlertReopenForm(AlertFormMixin, forms.Form):
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Why (optional)",
                           max_length=NOTE_MAX)
