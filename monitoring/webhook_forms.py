"""The form of the webhooks page: the same fields the API takes, checked by the same service
(``webhooks.webhook_endpoint_create`` / ``_update``), whose errors land on the field they name."""

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from monitoring.models import Severity, WebhookKind
from monitoring.webhooks import EVENT_TYPES, TargetRefused, webhook_url_vet

SEVERITY_CHOICES = [("", "No alerts"), *[(s.label, s.label) for s in Severity]]


class WebhookEndpointForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="How people will recognise it, e.g. SIEM or #security-alerts.")
    url = forms.CharField(max_length=1000, label="URL", help_text=(
        "http(s) address of the receiver. Loopback, private and the catalog's own addresses are refused unless "
        "the operator allows them (MONITORING_WEBHOOK_ALLOWED_PRIVATE)."),
        widget=forms.URLInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    kind = forms.ChoiceField(choices=WebhookKind.choices, initial=WebhookKind.GENERIC,
                             help_text="Generic: signed JSON. Slack and Teams: their incoming-webhook message shapes.")
    min_severity = forms.ChoiceField(choices=SEVERITY_CHOICES, required=False, label="Alerts from severity",
                                     initial="High")
    event_types = forms.MultipleChoiceField(
        choices=[(name, f"{name}: {text}") for name, text in EVENT_TYPES.items() if name != "alert.raised"],
        required=False, widget=forms.CheckboxSelectMultiple, label="Catalog events")
    active = forms.BooleanField(required=False, initial=True, help_text="Inactive endpoints receive nothing.")

    def __init__(self, *args, url_hint: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        if url_hint:  # editing: the stored URL is never sent back (Slack's and Teams' URLs are credentials)
            self.fields["url"].required = False
            self.fields["url"].help_text = f"Now {url_hint}. Leave empty to keep it; type a new URL to replace it."

    def clean_url(self) -> str:
        url = self.cleaned_data.get("url", "").strip()
        if url:  # checked here too, so one submission names every problem (the service checks again)
            try:
                webhook_url_vet(url)
            except TargetRefused as refusal:
                raise ValidationError(str(refusal)) from None
        return url

    def service_fields(self) -> dict:
        data = dict(self.cleaned_data)
        if not data.get("url"):
            data.pop("url", None)
        data["min_severity"] = data.get("min_severity") or None
        return data

    def errors_apply(self, error: ValidationError) -> None:
        messages = error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
        for field, texts in messages.items():
            for text in texts:
                self.add_error(field if field in self.fields else None, text)

    def focus_problems(self) -> None:
        """After a refused save, the first field with an error has the focus."""
        erroneous = [name for name in self.fields if name in self.errors]
        if erroneous:
            self.fields[erroneous[0]].widget.attrs["autofocus"] = True
