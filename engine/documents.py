"""Between stored JSON documents and Python values, keeping what the current definition does not know."""
from __future__ import annotations

from typing import Any, Mapping

from engine.spec import FieldSpec, FormSpec


def stored_value(field: FieldSpec, data: Mapping[str, Any]) -> Any:
    """The field's value as stored in `data`, under its current key or, not yet rewritten, an old one."""
    return next((data[k] for k in field.stored_keys if k in data), None)


def read_values(form: FormSpec, data: Mapping[str, Any]) -> dict[str, Any]:
    """Python values of the current fields; a renamed field falls back to its old keys."""
    values = {}
    for key, field in form.fields.items():
        stored = stored_value(field, data)
        try:
            values[key] = None if stored is None else field.kind.from_json(stored)
        except (ValueError, TypeError, KeyError):
            # A stored value the current type cannot read stays in the document untouched.
            values[key] = None
    return values


def write_document(form: FormSpec, values: Mapping[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The document to store: current fields under their current keys, plus every unknown key kept.

    Keys of removed fields stay, so the data comes back if the field returns; a renamed field's old
    key is dropped only once its value lives under the new key.
    """
    document = dict(previous or {})
    for key, field in form.fields.items():
        for old in field.renamed_from:
            document.pop(old, None)
        value = values.get(key)
        document[key] = None if value is None else field.kind.to_json(value)
    return document


def stored_changes(form: FormSpec, before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} in stored form, for the audit log."""
    changes = {}
    for key, field in form.fields.items():
        old = stored_value(field, before)
        new = after.get(key)
        if old != new:
            changes[key] = [old, new]
    return changes
