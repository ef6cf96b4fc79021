"""The columns of templates and exports, and how an uploaded header row maps back to fields."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from engine.excel.limits import FileRejected
from engine.fields.normalise import remove_spaces, to_halfwidth
from engine.issues import Issue
from engine.permissions import is_masked, writable_keys
from engine.spec import FieldSpec, FormPolicy, FormSpec

UNIT_KEY = "_unit"
FORM_MARK = "_form"
VERSION_MARK = "_version"
MODES = ("insert", "update", "upsert")
_REQUIRED_MARKS = re.compile(r"^[*]+|[*]+$|\(必填\)$")


@dataclass(frozen=True)
class Column:
    key: str  # a field key, or UNIT_KEY for the record's unit
    label: str
    spec: FieldSpec | None
    required: bool = False  # marked "*" and highlighted
    writable: bool = True

    @property
    def header(self) -> str:
        return self.label + ("*" if self.required else "")


def importable(spec: FieldSpec) -> bool:
    """Table fields (家庭成员) and attachments are edited on the web page only; see docs/excel.md."""
    return spec.kind.importable


def required_column(spec: FieldSpec) -> bool:
    return spec.required and spec.user_input


def writable(found: FormPolicy, form: FormSpec) -> frozenset[str]:
    """Fields a file may set: none for a role that can neither create nor update (it only exports)."""
    if not found.actions & {"create", "update"}:
        return frozenset()
    return writable_keys(found, form)


def unit_column(form: FormSpec, required: bool) -> Column:
    return Column(UNIT_KEY, form.unit_label, None, required=required)


def template_columns(form: FormSpec, found: FormPolicy, unit_required: bool) -> list[Column]:
    """Fields this role may write, in the form's order, after the unit column (none for a child form: its records
    sit in their parent's unit)."""
    keys = writable(found, form)
    return ([] if form.parent_field else [unit_column(form, unit_required)]) + [
        Column(key, spec.label, spec, required=required_column(spec))
        for key, spec in form.fields.items() if key in keys and importable(spec)
    ]


def export_columns(form: FormSpec, found: FormPolicy, unit_required: bool) -> list[Column]:
    """Fields this role may read, in the same layout; read-only ones are ignored when imported back."""
    keys = writable(found, form)
    unit = unit_column(form, unit_required and bool(keys))
    return [unit if keys and not form.parent_field else Column(UNIT_KEY, form.unit_label, None, writable=False)] + [
        Column(key, spec.label, spec, required=key in keys and required_column(spec), writable=key in keys)
        for key, spec in form.fields.items() if key not in found.hidden and importable(spec)
    ]


# --- reading a header back ------------------------------------------------------------------------
def header_text(cell: Any) -> str:
    """"身份证号*", " 姓 名 ", "（必填）性别" → comparable text."""
    if cell is None or isinstance(cell, bool):
        return ""
    text = remove_spaces(to_halfwidth(str(cell)))
    return _REQUIRED_MARKS.sub("", text.replace("(必填)", "")).strip("*")


def key_lookup(form: FormSpec) -> dict[str, str]:
    """Header text → field key: labels, keys, keys a field was renamed from, and the unit label."""
    names: dict[str, str] = {}
    for key, spec in form.fields.items():
        for name in (*reversed(spec.renamed_from), key):
            names[header_text(name)] = key
    for key, spec in form.fields.items():
        names[header_text(spec.label)] = key
    for name in ("所属单位", UNIT_KEY, form.unit_label):
        names[header_text(name)] = UNIT_KEY
    return names


@dataclass
class KeySheet:
    """The hidden `_keys` sheet: which form the file was made for, and header text → field key."""

    form_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def read_key_sheet(rows: Iterable[list[Any]]) -> KeySheet:
    sheet = KeySheet()
    for row in rows:
        if len(row) < 2 or not isinstance(row[0], str) or not isinstance(row[1], str):
            continue
        if row[0] == FORM_MARK:
            sheet.form_key = row[1]
        elif row[0] != VERSION_MARK and row[1]:
            sheet.headers[header_text(row[0])] = row[1]
    return sheet


def _resolve_key(form: FormSpec, key: str) -> str | None:
    if key == UNIT_KEY or key in form.fields:
        return key
    return next((k for k, spec in form.fields.items() if key in spec.renamed_from), None)


def header_score(cells: list[Any], names: Mapping[str, str], keys: KeySheet) -> int:
    return sum(1 for cell in cells if (text := header_text(cell)) and (text in keys.headers or text in names))


@dataclass
class ColumnMap:
    """Where each field is in the upload. `match_only` holds natural-key columns this user may read
    but not write: they find the record and are never written."""

    header_row: int
    fields: dict[str, int] = field(default_factory=dict)
    match_only: dict[str, int] = field(default_factory=dict)
    unit: int | None = None
    labels: dict[int, str] = field(default_factory=dict)  # column index → header as uploaded
    warnings: list[Issue] = field(default_factory=list)

    def column_of(self, key: str) -> int | None:
        if key == UNIT_KEY:
            return self.unit
        return self.fields.get(key, self.match_only.get(key))


def map_header(form: FormSpec, found: FormPolicy, cells: list[Any], header_row: int, keys: KeySheet,
               mode: str, unit_required: bool) -> ColumnMap:
    """Fields by column; unknown and read-only columns become warnings, missing required ones reject the file."""
    names = key_lookup(form)
    keys_writable = writable(found, form)
    mapped = ColumnMap(header_row=header_row)
    seen: dict[str, list[int]] = {}
    for index, cell in enumerate(cells):
        text = header_text(cell)
        if not text:
            continue
        label = str(cell).strip()
        mapped.labels[index] = label
        key = _resolve_key(form, keys.headers[text]) if text in keys.headers else names.get(text)
        if key is None:
            mapped.warnings.append(Issue("import_column_unknown", {"label": label}))
            continue
        seen.setdefault(key, []).append(index)
        if key == UNIT_KEY:
            mapped.unit = index
            continue
        spec = form.fields[key]
        if not importable(spec):
            mapped.warnings.append(Issue("import_column_not_importable", {"label": label, "type": spec.kind.title}))
        elif key in keys_writable:
            mapped.fields[key] = index
        elif key in form.natural_key and key not in found.hidden and not is_masked(found, spec):
            mapped.match_only[key] = index
            mapped.warnings.append(Issue("import_column_match_only", {"label": label}))
        else:
            mapped.warnings.append(Issue("import_column_readonly", {"label": label}))
    for key, indexes in seen.items():
        if len(indexes) > 1:
            label = form.unit_label if key == UNIT_KEY else form.fields[key].label
            raise FileRejected("import_duplicate_column", label=label, columns="、".join(str(i + 1) for i in indexes))
    missing = _missing(form, keys_writable, mapped, mode, unit_required)
    if missing:
        raise FileRejected("import_missing_columns", columns="、".join(missing))
    return mapped


def _missing(form: FormSpec, writable: frozenset[str], mapped: ColumnMap, mode: str, unit_required: bool) -> list[str]:
    missing = []
    if mode in ("update", "upsert"):
        missing += [form.fields[k].label for k in form.natural_key if mapped.column_of(k) is None]
    if mode in ("insert", "upsert"):
        if unit_required and mapped.unit is None:
            missing.append(form.unit_label)
        missing += [
            spec.label for key, spec in form.fields.items()
            if key in writable and required_column(spec) and spec.default is None and importable(spec)
            and key not in mapped.fields and spec.label not in missing
        ]
    return missing
