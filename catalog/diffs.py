"""Differences between two schema snapshots (lists of canonical column dicts)."""

COMPARED_FIELDS = ("type", "mode", "description", "originatingSource", "sensitivity", "protection")
BREAKING_FIELDS = {"type", "mode"}


def schema_diff(old_columns: list[dict], new_columns: list[dict]) -> dict:
    """What changed from ``old_columns`` to ``new_columns``.

    Breaking: a removed column, or a column whose type or mode changed.
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
            changed.append({"name": name, "fields": fields, "breaking": bool(BREAKING_FIELDS & set(fields))})
    return {
        "added": added,
        "removed": removed,
        "changed": changed,
        "breaking": bool(removed) or any(change["breaking"] for change in changed),
    }
