"""Reads a posted form into raw field values: table rows, checkbox groups, uploads."""
from __future__ import annotations

import re
from typing import Any, Mapping

from litestar.datastructures import FormMultiDict, UploadFile

from engine.fields.files import UploadedFile
from engine.spec import FormSpec

_CELL = re.compile(r"^([a-z][a-z0-9_]*)\.(\d{1,4})\.([a-z][a-z0-9_]*)$")
MAX_TABLE_ROWS = 200


async def read_submission(form: FormSpec, data: FormMultiDict, writable: frozenset[str]) -> dict[str, Any]:
    """Raw values for `writable` fields, plus every other non-control key as sent (the service refuses those)."""
    submitted: dict[str, Any] = {}
    tables: dict[str, dict[int, dict[str, Any]]] = {}
    for key in dict.fromkeys(data.keys()):
        if key.startswith("_"):
            continue
        cell = _CELL.match(key)
        if cell and form.fields.get(cell[1]) is not None and form.fields[cell[1]].kind.widget == "table":
            if int(cell[2]) < MAX_TABLE_ROWS:
                tables.setdefault(cell[1], {}).setdefault(int(cell[2]), {})[cell[3]] = data.get(key)
            continue
        base = key.split(".")[0]
        spec = form.fields.get(base)
        if spec is None or base not in writable:
            submitted[base] = data.get(key)
            continue
        if spec.kind.widget == "checkboxes":
            submitted[key] = [v for v in data.getall(key) if isinstance(v, str) and v.strip()]
        elif spec.kind.widget in ("file", "image"):
            upload = data.get(key)
            if isinstance(upload, UploadFile) and upload.filename:
                submitted[key] = UploadedFile(upload.filename, upload.content_type or "", await upload.read())
        else:
            value = data.get(key)
            submitted[key] = value if isinstance(value, str) else None
    for key in writable:
        spec = form.fields[key]
        if spec.kind.widget == "table":
            rows = tables.get(key, {})
            submitted[key] = [rows[i] for i in sorted(rows)]
        elif key not in submitted and spec.kind.widget not in ("file", "image"):
            submitted[key] = [] if spec.kind.widget == "checkboxes" else None
    return submitted


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
