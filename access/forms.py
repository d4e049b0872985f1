from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator
from django.template.defaultfilters import pluralize

from django.conf import settings

from access.models import TEXT_MAX_LENGTH, AccessLevel


class LoginForm(AuthenticationForm):
    """Service accounts authenticate with tokens only; they cannot sign in to the browser."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if user.is_service_account:
            raise forms.ValidationError("Service accounts cannot sign in to the browser.", code="service_account")
        from identity.local_login import local_login_allowed, local_login_refusal

        if not local_login_allowed(user):
            raise forms.ValidationError(local_login_refusal(), code="local_login")

    def clean(self):
        # LOCAL_LOGIN=none: no password is even checked.
        from identity.local_login import local_login_mode, local_login_refusal

        if local_login_mode() == "none":
            raise forms.ValidationError(local_login_refusal(), code="local_login")
        return super().clean()


# Access pages --------------------------------------------------------------------------------
# The forms only shape input; every rule is decided by the services in access/grants.py, whose
# ValidationErrors (per field) come back through ``errors_apply``.

LEVEL_CHOICES = [("read", "Read"), ("write", "Write")]


class AccessFormMixin:
    """Service errors onto fields, and the focus on the first field in error (keyboard users)."""

    def errors_apply(self, error: ValidationError) -> None:
        messages = error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
        for field, texts in messages.items():
            target = field if field in self.fields else None
            for text in texts:
                self.add_error(target, text)
        self.focus_problems()

    def focus_problems(self) -> None:
        erroneous = [name for name in self.fields if name in self.errors]
        if not erroneous:
            return
        for name, field in self.fields.items():
            field.widget.attrs.pop("autofocus", None)
            if name in self.errors:
                field.widget.attrs["aria-invalid"] = "true"
                field.widget.attrs["aria-describedby"] = f"id_{self.add_prefix(name)}_error"
        self.fields[erroneous[0]].widget.attrs["autofocus"] = True

    def full_clean(self):
        super().full_clean()
        if self.is_bound and self._errors:
            self.focus_problems()


class AccessRequestForm(AccessFormMixin, forms.Form):
    level = forms.ChoiceField(choices=LEVEL_CHOICES, initial="read", widget=forms.RadioSelect, label="Access")
    columns = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Columns",
        help_text="Leave all unticked for the whole dataset.",
    )
    duration = forms.IntegerField(min_value=1, label="Duration (hours)")
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="Justification", max_length=TEXT_MAX_LENGTH,
                                    help_text="What you need it for; the approvers read this.")
    ticket = forms.CharField(required=False, max_length=128, label="Ticket",
                             help_text="A change or incident reference, e.g. SEC-1234.")

    def __init__(self, *args, columns=(), max_hours=None, ticket_required=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["columns"].choices = [(column.name, column.name) for column in columns]
        if max_hours:
            self.fields["duration"].widget.attrs["max"] = max_hours
            self.fields["duration"].help_text = f"At most {max_hours} hour{pluralize(max_hours)}."
        if ticket_required:  # the service decides (it depends on the columns asked for); this tells
            self.fields["ticket"].label = "Ticket (required)"
            self.fields["ticket"].help_text = "Required for this scope: a change or incident reference."
        self.fields["level"].widget.attrs["autofocus"] = True


class GrantExtendForm(AccessFormMixin, forms.Form):
    duration = forms.IntegerField(min_value=1, label="Extra hours")
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Why longer", max_length=TEXT_MAX_LENGTH)
    ticket = forms.CharField(required=False, max_length=128, label="Ticket")


class GrantRevokeForm(AccessFormMixin, forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Reason to end it now",
                             max_length=TEXT_MAX_LENGTH)


class ReviewForm(AccessFormMixin, forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Reason", max_length=TEXT_MAX_LENGTH,
                             help_text="Required to deny.")

    def clean(self):
        data = super().clean()
        if data.get("decision") == "deny" and not (data.get("reason") or "").strip():
            self.add_error("reason", "Say why you deny it.")
        return data


class BreakGlassReviewForm(AccessFormMixin, forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Review note", max_length=TEXT_MAX_LENGTH,
                           help_text="What you checked and found.")


class BreakGlassForm(AccessFormMixin, forms.Form):
    level = forms.ChoiceField(choices=LEVEL_CHOICES, initial="read", widget=forms.RadioSelect, label="Access")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Emergency", max_length=TEXT_MAX_LENGTH,
                             help_text="The incident and why it cannot wait for an approval.")
    minutes = forms.IntegerField(min_value=1, label="Minutes")

    def __init__(self, *args, cap: int, levels=("read",), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["level"].choices = [c for c in LEVEL_CHOICES if c[0] in levels]
        self.fields["minutes"].widget.attrs["max"] = cap
        self.fields["minutes"].help_text = f"At most {cap} minute{pluralize(cap)}."
        self.fields["minutes"].initial = cap
        self.fields["level"].widget.attrs["autofocus"] = True


class AccessReviewConfirmForm(AccessFormMixin, forms.Form):
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Note", max_length=TEXT_MAX_LENGTH,
                           help_text="Anything you changed or want on record.")


class StewardAddForm(AccessFormMixin, forms.Form):
    """Name a user or a group (a team); the service checks who may and whether they exist."""

    user = forms.CharField(required=False, max_length=150, label="Username")
    group = forms.CharField(required=False, max_length=150, label="or group name")


class StewardRemoveForm(AccessFormMixin, forms.Form):
    kind = forms.ChoiceField(choices=[("user", "User"), ("group", "Group")])
    name = forms.CharField(max_length=150)


class RolePermissionForm(AccessFormMixin, forms.Form):
    standing = forms.TypedChoiceField(choices=AccessLevel.choices, coerce=int, label="Standing")
    aggregated_only = forms.BooleanField(required=False, label="Standing covers aggregated datasets only")
    jit_level = forms.TypedChoiceField(choices=AccessLevel.choices, coerce=int, label="Just in time up to")
    jit_max_hours = forms.IntegerField(min_value=0, label="JIT maximum hours")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limit = settings.ACCESS_JIT_MAX_HOURS  # read now: an operator may change it
        field = self.fields["jit_max_hours"]
        field.max_value = limit
        field.validators.append(MaxValueValidator(limit, message=f"At most {limit:,} hours (ACCESS_JIT_MAX_HOURS)."))
        field.widget.attrs["max"] = limit
        field.help_text = f"At most {limit:,} hours. Break-glass is capped separately at " \
                          f"{settings.ACCESS_BREAK_GLASS_MAX_MINUTES} minutes."
    approvals_required = forms.IntegerField(min_value=1, max_value=3, label="Approvals required")
    security_approval_required = forms.BooleanField(required=False, label="A security engineer must approve")
    ticket_required = forms.BooleanField(required=False, label="A ticket is required")
    break_glass = forms.BooleanField(required=False, label="Break-glass allowed")


AUDIT_EXPORT_FORMATS = ("csv", "json")


IMPOSSIBLE_RANGE = "From is after To: nothing can match."


class AuditFilterForm(forms.Form):
    action = forms.CharField(required=False, label="Action", widget=forms.Select,
                             help_text="One action, or a whole family (grant.*).")
    actor = forms.CharField(required=False, label="Actor (username)")
    dataset = forms.CharField(required=False, label="Dataset (qualified name)")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        from access.audit_actions import audit_action_choices

        super().__init__(*args, **kwargs)
        choices = audit_action_choices()
        chosen = (self.data.get("action") or "").strip() if self.is_bound else ""
        known = {value for _, group in choices[1:] for value, _ in group} | {""}
        if chosen and chosen not in known:  # an older action or a family spelt "grant.": keep it selected
            choices.append(("Other", [(chosen, chosen)]))
        self.fields["action"].widget.choices = choices

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("since", IMPOSSIBLE_RANGE)
        return data
