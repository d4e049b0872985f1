"""Browser forms of the catalog.

These forms only collect input and show errors. They validate nothing about datasets or
stores themselves: the view hands what they collected to the same service the API uses
(``dataset_register``, ``store_save``) and maps its ``ValidationError`` back onto fields.
"""

from django import forms
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from catalog.models import Environment, Platform, StoreKind
from catalog.vocabulary import ColumnMode, Protection, Sensitivity

SENSITIVITY_CHOICES = [("", "Choose…")] + [(label, label) for label in Sensitivity.labels]
PROTECTION_CHOICES = [(label, label) for label in Protection.labels]
MODE_CHOICES = [(label, label) for label in ColumnMode.labels]

# Registration payload keys (the API's spelling) -> form field names.
DATASET_FIELD_FOR_KEY = {
    "name": "name",
    "store": "store",
    "description": "description",
    "owners": "owners",
    "registeredBy": "registered_by",
    "version": "version",
}
COLUMN_FIELD_FOR_KEY = {
    "name": "name",
    "type": "type",
    "mode": "mode",
    "sensitivity": "sensitivity",
    "protection": "protection",
    "originatingSource": "originating_source",
    "description": "description",
}
COLUMN_TEXT_FIELDS = ("name", "type", "originating_source", "description")
# Sent even when empty, so the service names them as missing; blank choices are left out, as in the API.
COLUMN_ALWAYS_SENT = ("name", "type", "description")
COLUMN_DEFAULTS = {"mode": "NULLABLE", "protection": "None"}


class DatasetForm(forms.Form):
    """Where the dataset lives and who looks after it. Every field is checked by the service."""

    store = forms.CharField(required=False, widget=forms.Select)
    name = forms.CharField(
        required=False,
        label="Name",
        help_text="<schema>.<name>, e.g. marketing.review_sentiment (the schema may be left out).",
        widget=forms.TextInput(attrs={"placeholder": "marketing.review_sentiment", "autocomplete": "off"}),
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    owners = forms.CharField(
        required=False,
        help_text="Usernames, separated by commas.",
        widget=forms.TextInput(attrs={"placeholder": "dave, sam", "autocomplete": "off"}),
    )
    registered_by = forms.CharField(
        required=False,
        label="Registered by (declared)",
        help_text="Optional: the producer as it names itself, e.g. ServiceAccount1.",
    )
    version = forms.CharField(
        required=False, label="Version label", help_text="Optional: the producer's own version label."
    )

    def __init__(self, *args, store_choices=(), fixed_identity=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["store"].widget.choices = [("", "Choose a store…")] + [(s, s) for s in store_choices]
        if fixed_identity:
            # A dataset's qualified name never changes: edits register a new version of it.
            for name in ("store", "name"):
                self.fields[name].disabled = True
                self.fields[name].help_text = "Fixed: a dataset keeps its store and name."
            self.fields["store"].widget = forms.TextInput()
            self.fields["owners"].help_text = "Usernames, separated by commas. Leave blank for no owners."
        else:
            self.fields["owners"].help_text = "Usernames, separated by commas. Leave blank to be the owner yourself."

    def owner_usernames(self) -> list[str]:
        raw = self.cleaned_data.get("owners") or ""
        return [name.strip() for name in raw.replace("\n", ",").split(",") if name.strip()]


class ColumnForm(forms.Form):
    """One row of the column table."""

    name = forms.CharField(required=False, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    type = forms.CharField(required=False, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    mode = forms.CharField(required=False, initial="NULLABLE", widget=forms.Select(choices=MODE_CHOICES))
    sensitivity = forms.CharField(required=False, widget=forms.Select(choices=SENSITIVITY_CHOICES))
    protection = forms.CharField(required=False, initial="None", widget=forms.Select(choices=PROTECTION_CHOICES))
    originating_source = forms.CharField(
        required=False,
        label="Originating source",
        widget=forms.TextInput(attrs={"placeholder": "kind:name", "autocomplete": "off"}),
    )
    description = forms.CharField(required=False)

    def is_blank(self) -> bool:
        """A row the user left empty (extra rows, or a row whose fields were all cleared)."""
        data = getattr(self, "cleaned_data", {}) or {}
        return not any((data.get(name) or "").strip() for name in (*COLUMN_TEXT_FIELDS, "sensitivity"))

    def is_removed(self) -> bool:
        return bool((getattr(self, "cleaned_data", {}) or {}).get("DELETE"))

    def column_payload(self) -> dict:
        """The row as a column of the registration JSON; blank choices are left out, as in the API."""
        column = {}
        for key, field in COLUMN_FIELD_FOR_KEY.items():
            value = (self.cleaned_data.get(field) or "").strip()
            if value or key in COLUMN_ALWAYS_SENT:
                column[key] = value
        return column


class BaseColumnFormSet(forms.BaseFormSet):
    def submitted_rows(self) -> list[ColumnForm]:
        """The rows sent to the service, in order: row ``i`` here is ``columns[i]`` of the payload."""
        return [form for form in self.forms if not form.is_removed() and not form.is_blank()]


ColumnFormSet = forms.formset_factory(
    ColumnForm,
    formset=BaseColumnFormSet,
    extra=1,
    can_delete=True,
    max_num=settings.CATALOG_MAX_COLUMNS,
    absolute_max=settings.CATALOG_MAX_COLUMNS,
)


def column_initial(snapshot: dict) -> dict:
    """A version's canonical column dict as a row of the form."""
    return {field: snapshot.get(key, COLUMN_DEFAULTS.get(key, "")) for key, field in COLUMN_FIELD_FOR_KEY.items()}


def registration_errors_apply(error: ValidationError, *, dataset_form: DatasetForm, formset: BaseColumnFormSet,
                              rows: list[ColumnForm]) -> None:
    """Put each error of ``dataset_register`` next to the field it is about.

    ``columns[i].<field>`` goes to the i-th submitted row (``rows``, blank and removed rows
    excluded), dataset keys to the dataset form, the rest to the form's general errors.
    """
    messages = error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
    for path, texts in messages.items():
        target, field = _error_target(path, dataset_form=dataset_form, formset=formset, rows=rows)
        for text in texts:
            if target is formset:
                formset.non_form_errors().append(text)
            elif field in target.fields and not target.fields[field].disabled:
                target.add_error(field, text)
            elif field in target.fields:
                # Store and name are fixed on edit, so their errors go above the form.
                target.add_error(None, f"{target[field].label}: {text}")
            elif target is dataset_form and path != NON_FIELD_ERRORS:
                target.add_error(None, f"{path}: {text}")
            else:
                target.add_error(None, text)


def _error_target(path: str, *, dataset_form, formset, rows):
    if path in DATASET_FIELD_FOR_KEY:
        return dataset_form, DATASET_FIELD_FOR_KEY[path]
    if path == "columns":
        return formset, None
    if path.startswith("columns["):
        index_text, _, rest = path[len("columns["):].partition("]")
        if index_text.isdigit() and int(index_text) < len(rows):
            row = rows[int(index_text)]
            field = COLUMN_FIELD_FOR_KEY.get(rest.lstrip("."))
            return row, field
    return dataset_form, None


class StoreForm(forms.Form):
    """A store's attributes; ``store_save`` validates them (the model's own rules)."""

    name = forms.CharField(
        required=False, help_text="Lower-case letters, digits, _ and -. Datasets are named after it."
    )
    kind = forms.ChoiceField(choices=StoreKind.choices)
    platform = forms.ChoiceField(choices=Platform.choices)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    environment = forms.ChoiceField(choices=Environment.choices, initial=Environment.PROD)
    residency = forms.CharField(required=False, help_text="Jurisdiction the data must stay in, e.g. CA, DE, EU, US.")
    line_of_business = forms.CharField(required=False, label="Line of business")
    customer = forms.CharField(required=False, help_text="Customer or tenant, when segmented by one.")
    lineage_namespace = forms.CharField(
        required=False, label="OpenLineage namespace",
        help_text="How pipelines name this store in OpenLineage events, e.g. postgres://appdb.internal:5432.",
    )

    def errors_apply(self, error: ValidationError) -> None:
        messages = error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
        for field, texts in messages.items():
            for text in texts:
                self.add_error(field if field in self.fields else None, text)
