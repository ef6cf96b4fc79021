"""审核条件: a workflow's `figures` over the target record's child records and its `checks` over them.

A check is evaluated when the application is submitted (a failing one refuses it, every reason listed) and again at
final approval (the record may have changed meanwhile), always on what the database holds in that transaction. The
figures count every child record of the target, whoever looks: the user sees the reasons, not the records."""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from engine.documents import read_values
from engine.expressions import AGGREGATES, holds
from engine.spec import Definitions
from engine.storage.models import Record
from engine.storage.projection import projection_of
from engine.workflows.spec import RECORD, CheckSpec, TallySpec, WorkflowSpec

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")


@dataclass(frozen=True)
class CheckResult:
    check: CheckSpec
    passed: bool
    reason: str  # the check's message with its figures filled in ("" when it passed)


def results(s: DbSession, definitions: Definitions, spec: WorkflowSpec, dialect: str, record_id: int,
            record: Mapping[str, Any], application: Mapping[str, Any]) -> list[CheckResult]:
    """Every check of `spec` on the record as `s` reads it; `application`: the application's values."""
    if not spec.checks:
        return []
    figures = tallies(s, definitions, spec, dialect, record_id, record)
    names = {**application, **figures, RECORD: dict(record)}
    found = []
    for check in spec.checks:
        passed = holds(check.require, names)
        found.append(CheckResult(check, passed, "" if passed else _reason(check, names)))
    return found


def failing(found: list[CheckResult]) -> list[str]:
    return [r.reason for r in found if not r.passed]


def tallies(s: DbSession, definitions: Definitions, spec: WorkflowSpec, dialect: str, record_id: int,
            record: Mapping[str, Any]) -> dict[str, Any]:
    """The value of each figure: one query per child form (and one per linked form a condition reads)."""
    children: dict[str, list[dict[str, Any]]] = {}
    for tally in spec.tallies:
        if tally.form not in children:
            children[tally.form] = _children(s, definitions, tally.form, dialect, record_id)
    targets = _targets(s, definitions, spec, children)
    figures: dict[str, Any] = {}
    for tally in spec.tallies:
        child = definitions.forms[tally.form]
        rows = children[tally.form]
        if tally.where is not None:
            rows = [row for row in rows if holds(tally.where, _names(child, row, tally, targets, record))]
        if tally.measure == "count":
            figures[tally.key] = len(rows)
        else:
            figures[tally.key] = AGGREGATES[tally.measure]([row.get(tally.number) for row in rows])
    return figures


def _children(s: DbSession, definitions: Definitions, form_key: str, dialect: str, record_id: int) -> list[dict[str, Any]]:
    child = definitions.forms[form_key]
    projection = projection_of(child, dialect)
    parent = projection.column(child.parent_field)
    rows = s.execute(select(Record.data).join(projection.table, projection.table.c.record_id == Record.id)
                     .where(parent == record_id).order_by(Record.id))
    return [read_values(child, data or {}) for (data,) in rows]


def _targets(s: DbSession, definitions: Definitions, spec: WorkflowSpec,
             children: Mapping[str, list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """Values of the records the children link to, where a condition reads them (exam.kind), by record id."""
    wanted: dict[str, set[int]] = {}
    for tally in spec.tallies:
        child = definitions.forms[tally.form]
        for key in tally.links:
            ids = {row[key] for row in children[tally.form] if isinstance(row.get(key), int)}
            wanted.setdefault(child.fields[key].kind.form, set()).update(ids)  # type: ignore[attr-defined]
    found: dict[int, dict[str, Any]] = {}
    for form_key, ids in wanted.items():
        form = definitions.forms.get(form_key)
        if form is None or not ids:
            continue
        for record_id, data in s.execute(select(Record.id, Record.data).where(Record.id.in_(sorted(ids)),
                                                                              Record.form_key == form_key)):
            found[record_id] = read_values(form, data or {})
    return found


def _names(child: Any, row: Mapping[str, Any], tally: TallySpec, targets: Mapping[int, Mapping[str, Any]],
           record: Mapping[str, Any]) -> dict[str, Any]:
    names = dict(row)
    for key in tally.links:
        names[key] = targets.get(row.get(key), {}) if row.get(key) is not None else {}
    names[RECORD] = dict(record)
    return names


def _reason(check: CheckSpec, names: Mapping[str, Any]) -> str:
    if not check.message:
        return f"不满足：{check.label}"

    def fill(match: re.Match[str]) -> str:
        head, _, attr = match[1].partition(".")
        value = names.get(head)
        if attr:
            value = value.get(attr) if isinstance(value, Mapping) else None
        return _text(value)

    return _PLACEHOLDER.sub(fill, check.message)


def _text(value: Any) -> str:
    if value is None:
        return "无"
    if isinstance(value, Decimal):
        value = value.quantize(Decimal("0.1")).normalize() if value != value.to_integral() else value.to_integral()
        return format(value, "f")
    return str(value)
