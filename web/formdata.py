"""Reads a posted form into raw field values: each field's widget reads its own part of the post."""
from __future__ import annotations

from typing import Any, Mapping

from litestar.datastructures import FormMultiDict, UploadFile

from engine.fields import UploadedFile
from engine.fields.table import MAX_TABLE_ROWS
from engine.fields.widgets import PostedData
from engine.spec import FormSpec


async def read_submission(form: FormSpec, data: FormMultiDict, writable: frozenset[str]) -> dict[str, Any]:
    """Raw values for `writable` fields, plus every other non-control key as sent (the service refuses those)."""
    posted, files = await _split(data, writable)
    submitted: dict[str, Any] = {}
    for key in writable:
        widget = form.fields[key].kind.widget
        if not widget.value_omitted_from_data(posted, files, key):
            submitted[key] = widget.value_from_datadict(posted, files, key)
    for name in dict.fromkeys(data.keys()):
        if name.startswith("_"):
            continue
        base = name.split(".")[0]
        spec = form.fields.get(base)
        if spec is None:  # a widget's second input (a link's typed text, `<field>__text`)
            owner = next((k for k, f in form.fields.items() if name.startswith(k) and f.kind.widget.claims(k, name)), None)
            if owner is not None:
                base, spec = owner, form.fields[owner]
        # Read by the field's widget; a table's cells are dropped, as ever, when this user may not write the table.
        if spec is not None and spec.kind.widget.claims(base, name) and (base in writable or name != base):
            continue
        submitted[name if base in writable else base] = data.get(name)
    return submitted


async def _split(data: FormMultiDict, writable: frozenset[str]) -> tuple[PostedData, dict[str, UploadedFile]]:
    """Text values by name, and the chosen files of fields this user may write (others are never read)."""
    values: dict[str, list[str]] = {}
    files: dict[str, UploadedFile] = {}
    for name, value in data.multi_items():
        if isinstance(value, str):
            values.setdefault(name, []).append(value)
        elif isinstance(value, UploadFile) and value.filename and name.split(".")[0] in writable and name not in files:
            files[name] = UploadedFile(value.filename, value.content_type or "", await value.read())
    return PostedData({name: tuple(v) for name, v in values.items()}), files


def table_action(data: Mapping[str, Any], submitted: dict[str, Any]) -> bool:
    """Handle 添加一行 / 删除 buttons (they re-render the form, they do not save); True if one was pressed."""
    action = data.get("_action")
    if not isinstance(action, str) or ":" not in action:
        return False
    verb, _, rest = action.partition(":")
    key, _, index = rest.partition(":")
    rows = submitted.get(key)
    if not isinstance(rows, list):
        return False
    if verb == "add" and len(rows) < MAX_TABLE_ROWS:
        rows.append({})
    elif verb == "remove" and index.isdigit() and int(index) < len(rows):
        rows.pop(int(index))
    return verb in ("add", "remove")
