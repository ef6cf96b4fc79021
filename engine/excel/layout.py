"""The columns of templates and exports, and how an uploaded header row maps back to fields."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from engine.excel.limits import FileRejected
from engine.fields.normalise import remove_spaces, to_halfwidth
from engine.issues import Issue
from engine.permissions import is_masked, writable_keys
from engine.spec import FieldSpec, FormPolicy, FormSpec, OrgLevel

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
    """Header text → field key: labels, keys, keys a field was renamed from, `aliases`, and the unit label (also
    without its 所属/所在: 所属班级 is 班级 and 所在班级 in a school's own sheet). Labels win over the rest."""
    names: dict[str, str] = {}
    for name in unit_names(form):
        names[header_text(name)] = UNIT_KEY
    for key, spec in form.fields.items():
        for name in (*reversed(spec.renamed_from), key, *spec.aliases):
            names[header_text(name)] = key
    for key, spec in form.fields.items():
        names[header_text(spec.label)] = key
    for name in ("所属单位", UNIT_KEY, form.unit_label):
        names[header_text(name)] = UNIT_KEY
    return names


def unit_names(form: FormSpec) -> list[str]:
    label = header_text(form.unit_label)
    bare = label[2:] if label[:2] in ("所属", "所在") and len(label) > 2 else label
    return [bare, "所属" + bare, "所在" + bare]


def suggest(form: FormSpec, label: str, candidates: Iterable[str]) -> str | None:
    """The field a header most likely means (学生联系电话 → 学生本人联系电话): the closest label or alias by
    similarity, if close enough; None when nothing is."""
    text = header_text(label)
    best, best_key = 0.0, None
    for key in candidates:
        names = unit_names(form) if key == UNIT_KEY else [form.fields[key].label, *form.fields[key].aliases]
        for name in names:
            other = header_text(name)
            score = difflib.SequenceMatcher(None, text, other).ratio()
            if text and (text in other or other in text):
                score = max(score, 0.75)
            if score > best:
                best, best_key = score, key
    return best_key if best >= 0.6 else None


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
    # Headers matching no field, each with the field it most likely means (or ""): the preview's mapping step.
    unknown: dict[str, str] = field(default_factory=dict)
    # Columns headed by the label of an org level above the record's unit (年级 for a class): level key → column.
    levels: dict[str, int] = field(default_factory=dict)

    def column_of(self, key: str) -> int | None:
        if key == UNIT_KEY:
            return self.unit
        return self.fields.get(key, self.match_only.get(key))


def levels_above(form: FormSpec, levels: Iterable[OrgLevel]) -> list[OrgLevel]:
    """The org levels above the form's unit level (school, grade for a class); none when records take any level."""
    levels = list(levels)
    keys = [level.key for level in levels]
    return levels[:keys.index(form.unit_level)] if form.unit_level in keys else []


def map_header(form: FormSpec, found: FormPolicy, cells: list[Any], header_row: int, keys: KeySheet,
               mode: str, unit_required: bool, levels: Iterable[OrgLevel] = ()) -> ColumnMap:
    """Fields by column; unknown and read-only columns become warnings, missing required ones reject the file."""
    names = key_lookup(form)
    keys_writable = writable(found, form)
    mapped = ColumnMap(header_row=header_row)
    seen: dict[str, list[int]] = {}
    unknown: list[str] = []
    above = {header_text(level.label): level.key for level in levels_above(form, levels)}
    for index, cell in enumerate(cells):
        text = header_text(cell)
        if not text:
            continue
        label = str(cell).strip()
        mapped.labels[index] = label
        if text in above and above[text] not in mapped.levels:
            mapped.levels[above[text]] = index  # and perhaps a field too (the student form's 年级)
        key = _resolve_key(form, keys.headers[text]) if text in keys.headers else names.get(text)
        if key is None:
            if text not in above:
                unknown.append(label)
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
    choices = mapping_choices(form, found)
    free = [k for k in choices if k not in seen]
    mapped.unknown = {label: suggest(form, label, free) or "" for label in unknown}
    if unknown:  # one warning however many: a sheet with 175 extra columns is one fact, not 175
        mapped.warnings.insert(0, Issue("import_column_unknown", {"label": unknown[0]}) if len(unknown) == 1 else
                               Issue("import_columns_unknown", {"count": len(unknown), "labels": "、".join(unknown)}))
    for key, indexes in seen.items():
        if len(indexes) > 1:
            label = form.unit_label if key == UNIT_KEY else form.fields[key].label
            raise FileRejected("import_duplicate_column", label=label, columns="、".join(str(i + 1) for i in indexes))
    missing = _missing(form, keys_writable, mapped, mode, unit_required)
    if missing:
        raise ColumnsMissing(missing, mapped.unknown)
    return mapped


class ColumnsMissing(FileRejected):
    """Required columns not found; the headers that matched nothing go with it, for the mapping step."""

    def __init__(self, missing: list[str], unknown: dict[str, str]) -> None:
        super().__init__("import_missing_columns", columns="、".join(missing))
        self.missing, self.unknown = missing, unknown


def mapping_choices(form: FormSpec, found: FormPolicy) -> dict[str, str]:
    """Field key → label of what a column may be mapped to: the unit and the fields this role may import."""
    keys = writable(found, form)
    return {UNIT_KEY: form.unit_label} | {k: spec.label for k, spec in form.fields.items() if k in keys and importable(spec)}


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
