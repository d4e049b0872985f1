"""Differences between two schema snapshots (lists of canonical column dicts)."""

COMPARED_FIELDS = ("type", "mode", "description", "originatingSource", "sensitivity", "protection")
BREAKING_FIELDS = {"type", "mode"}
# How a column's type is spelt before anyone knows it: OpenLineage schema facets without a type
# (before ``dbt docs generate`` has run) and warehouse columns without a declared type.
UNKNOWN_TYPE = "UNKNOWN"


def type_is_known(type_: str | None) -> bool:
    return bool(type_ and type_.strip()) and type_.strip().upper() != UNKNOWN_TYPE


def field_change_is_breaking(key: str, change: dict) -> bool:
    """Whether this change of one field breaks readers: a mode change, or a type changed from one
    known type to another. Learning a type (``UNKNOWN`` -> ``INTEGER``) or forgetting it is not."""
    if key == "type":
        return type_is_known(change.get("from")) and type_is_known(change.get("to"))
    return key in BREAKING_FIELDS


def schema_diff(old_columns: list[dict], new_columns: list[dict]) -> dict:
    """What changed from ``old_columns`` to ``new_columns``.

    Breaking: a removed column, or a column whose mode, or type between two known types, changed.
    """
    old = {column["name"]: (position, column) for position, column in enumerate(old_columns)}
    new = {column["name"]: (position, column) for position, column in enumerate(new_columns)}
    added = [name for name in new if name not in old]
    removed = [name for name in old if name not in new]
    changed = []
    for name, (position, column) in new.items():
        if name not in old:
            continue
        old_position, old_column = old[name]
        fields = {
            key: {"from": old_column.get(key, ""), "to": column.get(key, "")}
            for key in COMPARED_FIELDS
            if old_column.get(key, "") != column.get(key, "")
        }
        if old_position != position:
            fields["position"] = {"from": old_position + 1, "to": position + 1}
        if fields:
            breaking = any(field_change_is_breaking(key, values) for key, values in fields.items())
            changed.append({"name": name, "fields": fields, "breaking": breaking})
    return {
        "added": added,
        "removed": removed,
        "changed": changed,
        "breaking": bool(removed) or any(change["breaking"] for change in changed),
    }
