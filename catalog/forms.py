"""Browser forms of the catalog.

These forms only collect input and show errors. They validate nothing about datasets or
stores themselves: the view hands what they collected to the same service the API uses
(``dataset_register``, ``store_save``) and maps its ``ValidationError`` back onto fields.
"""

import json
import re

from django import forms
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from catalog.connections import FILE_PLATFORMS
from catalog.connectors import CONNECTORS
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


# How the form names what the API names by its JSON keys, in errors shown in the browser.
LABEL_FOR_API_KEY = {
    "originatingSource": "Originating source",
    "registeredBy": "Registered by",
    "registrationTime": "Registration time",
    "non_field_errors": "",
}
_COLUMN_PATH_RE = re.compile(r"columns\[(\d+)\]")
_API_KEY_RE = re.compile(r"\b(" + "|".join(key for key in LABEL_FOR_API_KEY if key != "non_field_errors") + r")\b")


def registration_errors_apply(error: ValidationError, *, dataset_form: DatasetForm, formset: BaseColumnFormSet,
                              rows: list[ColumnForm]) -> None:
    """Put each error of ``dataset_register`` next to the field it is about, in the form's words.

    ``columns[i].<field>`` goes to the i-th submitted row (``rows``, blank and removed rows
    excluded), dataset keys to the dataset form, the rest to the form's general errors. The
    service speaks the API's language (``columns[0]``, ``originatingSource``); the form numbers
    its rows from 1 as the page shows them and uses its own labels, so texts are translated.
    """
    row_numbers = {index: formset.forms.index(row) + 1 for index, row in enumerate(rows)}
    messages = error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
    for path, texts in messages.items():
        target, field = _error_target(path, dataset_form=dataset_form, formset=formset, rows=rows)
        for text in texts:
            text = _in_form_words(text, row_numbers)
            if target is formset:
                formset.non_form_errors().append(text)
            elif field in target.fields and not target.fields[field].disabled:
                target.add_error(field, text)
            elif field in target.fields:
                # Store and name are fixed on edit, so their errors go above the form.
                target.add_error(None, f"{target[field].label}: {text}")
            elif target is dataset_form and path != NON_FIELD_ERRORS:
                place = _in_form_words(path, row_numbers)
                place = place[:1].upper() + place[1:]
                target.add_error(None, f"{place}: {text}" if place else text)
            else:
                target.add_error(None, text)


def _in_form_words(text: str, row_numbers: dict[int, int]) -> str:
    """``Duplicate column name 'id' (also columns[0])`` -> ``... (also row 1)``; API keys -> labels
    (capitalised only where they start the text)."""
    text = _COLUMN_PATH_RE.sub(lambda match: f"row {row_numbers.get(int(match[1]), int(match[1]) + 1)}", text)
    text = _API_KEY_RE.sub(lambda match: LABEL_FOR_API_KEY[match[1]] if match.start() == 0
                           else LABEL_FOR_API_KEY[match[1]].lower(), text)
    if text in LABEL_FOR_API_KEY:
        return LABEL_FOR_API_KEY[text]
    return text


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


# Warehouse connections -------------------------------------------------------------------

DATABASE_HELP = {
    "sqlite": "Path of the SQLite database file, as the sync worker sees it, e.g. /data/warehouse.db.",
    "duckdb": "Path of the DuckDB database file, as the sync worker sees it, e.g. /data/warehouse.duckdb.",
    "bigquery": "The Google Cloud project that holds the datasets, e.g. acme-analytics.",
    "snowflake": "The Snowflake database; the host is the account URL.",
    "mysql": "Leave blank to sync every database (schema) the user can see, or name one.",
}
DATABASE_HELP_DEFAULT = "The database to connect to, e.g. analytics."


class ConnectionForm(forms.Form):
    """A store's warehouse connection; ``connection_save`` validates it (required fields per
    platform, cron, patterns, options). The password and the secret driver options are write-only:
    they are never rendered back."""

    host = forms.CharField(required=False, widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    port = forms.IntegerField(required=False, min_value=1, max_value=65535, help_text="Blank: the platform's default.")
    database = forms.CharField(
        required=False, label="Database / file path / project",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    username = forms.CharField(required=False, widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    password = forms.CharField(
        required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    remove_password = forms.BooleanField(required=False, label="Remove the stored password")
    include_schemas = forms.CharField(
        required=False, label="Include schemas",
        help_text="Names or patterns (* and ?), separated by commas or new lines. Blank: every schema.",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "sales, marketing_*", "spellcheck": "false"}),
    )
    exclude_schemas = forms.CharField(
        required=False, label="Exclude schemas",
        help_text="Left out even when included, e.g. tmp_*, scratch.",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "tmp_*, scratch", "spellcheck": "false"}),
    )
    options = forms.CharField(
        required=False, label="Driver options (JSON)",
        help_text='A JSON object added to the connection URL, e.g. {"sslmode": "require"}.',
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"sslmode": "require"}', "spellcheck": "false",
                                     "class": "mono"}),
    )
    sampling_enabled = forms.BooleanField(
        required=False, label="Sample values to suggest classifications",
        help_text="Reads a few values of new and changed columns; only counts are kept, never the values.",
    )
    sample_size = forms.IntegerField(
        required=False, initial=50, label="Sample size", help_text="Values read per column (1–1000).",
    )
    schedule = forms.CharField(
        required=False, label="Schedule (cron, UTC)",
        help_text="minute hour day month weekday, e.g. “0 2 * * *” (daily at 02:00) or “*/30 * * * *” "
                  "(every 30 minutes). Blank: only when someone clicks Sync now.",
        widget=forms.TextInput(attrs={"placeholder": "0 2 * * *", "autocomplete": "off", "spellcheck": "false",
                                      "class": "mono"}),
    )

    def __init__(self, *args, platform: str, password_stored: bool = False, sealed_options=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.platform = platform
        self.fields["database"].help_text = DATABASE_HELP.get(platform, DATABASE_HELP_DEFAULT)
        connector = CONNECTORS.get(platform)
        allowed = sorted(connector.options_allowed) if connector else []
        if allowed:
            secret = sorted(connector.secret_option_names())
            self.fields["options"].help_text = (
                f"A JSON object; allowed: {', '.join(allowed)}."
                + (f" Secret ones ({', '.join(secret)}) are sealed and never shown again." if secret else "")
                + (f" Stored sealed: {', '.join(sealed_options)} (leave out to keep, \"\" to remove)."
                   if sealed_options else "")
            )
        else:  # a platform without driver options (SQLite, DuckDB, BigQuery): nothing to type
            del self.fields["options"]
        if self.is_file_platform:  # a file path says it all: no host, user or password
            for name in ("host", "port", "username", "password", "remove_password"):
                del self.fields[name]
            self.fields["database"].label = "Database file path"
        elif password_stored:
            self.fields["password"].help_text = "A password is stored. Leave blank to keep it; type a new one to replace it."
        else:
            self.fields["password"].help_text = "No password is stored."
            del self.fields["remove_password"]
        first = "database" if self.is_file_platform else "host"
        self.fields[first].widget.attrs["autofocus"] = True

    @property
    def is_file_platform(self) -> bool:
        return self.platform in FILE_PLATFORMS

    @staticmethod
    def initial_for(connection) -> dict:
        """The form's initial values from a saved connection (never the password)."""
        if connection is None:
            return {"sample_size": 50}
        return {
            "host": connection.host,
            "port": connection.port,
            "database": connection.database,
            "username": connection.username,
            "include_schemas": "\n".join(connection.include_schemas or []),
            "exclude_schemas": "\n".join(connection.exclude_schemas or []),
            "options": json.dumps(ConnectionForm._shown_options(connection), indent=2) if connection.options else "",
            "sampling_enabled": connection.sampling_enabled,
            "sample_size": connection.sample_size,
            "schedule": connection.schedule,
        }

    @staticmethod
    def _shown_options(connection) -> dict:
        """The options without secret ones (a row saved before they were sealed may hold one)."""
        connector = CONNECTORS.get(connection.store.platform)
        secret_names = connector.secret_option_names() if connector else frozenset()
        return {name: value for name, value in connection.options.items() if name not in secret_names}

    def connection_fields(self) -> dict:
        """What to hand to ``connection_save`` (the password separately, see :meth:`password_change`)."""
        data = self.cleaned_data
        fields = {
            name: data.get(name)
            for name in ("host", "port", "database", "username", "include_schemas", "exclude_schemas", "options",
                         "sampling_enabled", "sample_size", "schedule")
            if name in self.fields
        }
        if "options" not in self.fields:  # the platform takes none: clear any a row saved before still holds
            fields["options"] = {}
        if fields.get("sample_size") is None:
            fields["sample_size"] = 50
        return fields

    def password_change(self) -> str | None:
        """``None`` keeps the stored password, ``""`` removes it, anything else replaces it."""
        if "password" not in self.fields:
            return None
        if self.cleaned_data.get("remove_password"):
            return ""
        return self.cleaned_data.get("password") or None

    def focus_problems(self) -> None:
        """After a refused save: focus the first field with an error, and ask for a typed password
        again (it is never sent back to the browser)."""
        erroneous = [name for name in self.fields if name in self.errors]
        if erroneous:
            for field in self.fields.values():
                field.widget.attrs.pop("autofocus", None)
            self.fields[erroneous[0]].widget.attrs["autofocus"] = True
        if "password" in self.fields and self.data.get("password"):
            # Bound fields copy their help text when first made, so change it there.
            self["password"].help_text = "Type the password again: it is never sent back to the browser."

    def errors_apply(self, error: ValidationError) -> None:
        messages = error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
        for field, texts in messages.items():
            for text in texts:
                if field in self.fields:
                    self.add_error(field, text)
                elif field == "platform" or field == NON_FIELD_ERRORS:
                    self.add_error(None, text)
                else:
                    self.add_error(None, f"{field.replace('_', ' ').capitalize()}: {text}")
