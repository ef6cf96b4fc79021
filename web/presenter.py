"""Turns a field spec, the user's policy and a value (or what they typed) into widget context."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from engine.issues import Issue
from engine.messages import render
from engine.permissions import is_editable, is_masked
from engine.spec import FieldSpec, FormPolicy, FormSpec


@dataclass
class FieldView:
    key: str
    name: str  # the input's name in the post
    label: str
    widget: str  # the widget's name: web/templates/widgets/<widget>.html
    input_type: str
    required: bool
    help: str
    placeholder: str
    editable: bool
    masked: bool
    display: str  # what a reader sees (masked where needed)
    value: str  # what an input shows
    selected: frozenset[str] = frozenset()
    extra: Mapping[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    visible: bool = True
    conditional: bool = False
    condition: str = ""
    has_dependents: bool = False
    link: str = ""  # attachment download URL
    columns: list["FieldView"] = field(default_factory=list)  # table header
    rows: list[list["FieldView"]] = field(default_factory=list)  # table cells


def issue_text(form: FormSpec, issue: Issue) -> str:
    """A message with the field's label; a table cell reads "家庭成员第2行·姓名"."""
    parts = issue.path.split(".")
    spec = form.fields.get(parts[0])
    if spec is None:
        return render(issue, parts[0])
    label, overrides = spec.label, spec.messages
    if len(parts) == 3 and parts[1].isdigit():
        column = next((c for c in spec.kind.sub_fields() if c.key == parts[2]), None)
        if column is not None:
            label, overrides = f"{spec.label}第{int(parts[1]) + 1}行·{column.label}", column.messages
    return render(issue, label, overrides)


def display_text(spec: FieldSpec, value: Any, masked: bool) -> str:
    if value is None:
        return ""
    text = spec.kind.to_text(value)
    return spec.kind.mask(text) if masked else text


def field_view(form: FormSpec, spec: FieldSpec, found: FormPolicy, value: Any = None, raw: Any = None,
               issues: Iterable[Issue] = (), visible: bool = True, required: bool | None = None,
               name: str | None = None) -> FieldView:
    masked = is_masked(found, spec)
    editable = is_editable(found, spec)
    widget = spec.kind.widget
    context = widget.get_context(value, raw)
    view = FieldView(
        key=spec.key, name=name or spec.key, label=spec.label, widget=widget.name,
        input_type=widget.input_type, required=spec.required if required is None else required,
        help=spec.help, placeholder=spec.placeholder, editable=editable, masked=masked,
        display=display_text(spec, value, masked), value="" if masked else context["value"],
        selected=context["selected"], extra=context["extra"],
        errors=[issue_text(form, i) for i in issues], visible=visible,
        conditional=spec.visible_if is not None, condition=spec.visible_if.source if spec.visible_if else "",
        has_dependents=bool(form.dependents(spec.key)),
    )
    if isinstance(value, Mapping) and "id" in value and not masked:
        view.link = f"/files/{value['id']}"
    elif getattr(value, "href", "") and not masked:  # a linked record the reader may open (engine/fields/link.py)
        view.link = value.href
    if spec.kind.sub_fields():
        _table(form, spec, found, view, value, raw)
    return view


def _table(form: FormSpec, spec: FieldSpec, found: FormPolicy, view: FieldView, value: Any, raw: Any) -> None:
    columns = spec.kind.sub_fields()
    view.columns = [field_view(form, c, found) for c in columns]
    rows = raw if isinstance(raw, list) else (value or [])
    for index, row in enumerate(rows):
        cells = []
        for column in columns:
            cell_raw = row.get(column.key) if isinstance(raw, list) else None
            cell_value = None if isinstance(raw, list) else row.get(column.key)
            cell = field_view(form, column, found, cell_value, cell_raw, name=f"{spec.key}.{index}.{column.key}")
            cell.editable = view.editable
            if view.masked:
                # Columns cannot be marked sensitive themselves; a masked table masks every cell.
                cell.masked, cell.value, cell.link = True, "", ""
                cell.display = column.kind.mask(cell.display) if cell.display else ""
            cells.append(cell)
        view.rows.append(cells)


def issues_by_field(issues: Iterable[Issue]) -> dict[str, list[Issue]]:
    grouped: dict[str, list[Issue]] = {}
    for issue in issues:
        grouped.setdefault(issue.path.split(".")[0], []).append(issue)
    return grouped
