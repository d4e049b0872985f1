"""Checking JSON input field by field, collecting every problem under the path of its field
(``columns[2].name``, ``outputs[0].facets.schema.fields[1].type``) so one answer lists them all.

Used by the registration parser and the OpenLineage parser alike.
"""

from django.core.exceptions import ValidationError


class FieldErrors:
    def __init__(self):
        self.by_field: dict[str, list[str]] = {}

    def add(self, path: str, message: str):
        self.by_field.setdefault(path, []).append(message)

    def raise_if_any(self):
        if self.by_field:
            raise ValidationError(self.by_field)


def json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def string_field(errors: FieldErrors, container, key: str, path: str, *, required=False, max_length=None) -> str:
    """The stripped string at ``container[key]`` ("" when absent); problems go to ``errors``."""
    value = container.get(key) if isinstance(container, dict) else None
    if value is None:
        if required:
            errors.add(path, "This field is required.")
        return ""
    if not isinstance(value, str):
        errors.add(path, f"Must be a string, not {json_type(value)}.")
        return ""
    value = value.strip()
    if required and not value:
        errors.add(path, "This field may not be blank.")
    if max_length and len(value) > max_length:
        errors.add(path, f"At most {max_length} characters (got {len(value)}).")
    return value
