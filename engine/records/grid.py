"""Grid entry (`grid:` in a form, engine/spec.py GridSpec): a whole group on one page — the students of a class
for one exam, one row each, one cell per subject — loaded and saved through the record service, the one write path.

A row is a record the `rows` link can point at in the chosen unit, read with the user's scope; its record of this
form is the one linking to it with the page's `fixed` values (created on the first save of a filled row). Saving
validates every changed row with the one validator and writes all of them in one transaction, or none: each row's
messages come back at its cells. Each existing row carries the revision it was shown at (an optimistic lock per
row): a row someone else saved meanwhile is reported, not overwritten.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.issues import Issue
from engine.permissions import Principal, can
from engine.records.model import ListQuery, StoredRecord
from engine.records.service import RecordService
from engine.refusals import NotPermitted
from engine.spec import FormSpec
from engine.storage.models import Record

MAX_ROWS = 200


@dataclass
class GridRow:
    target: StoredRecord  # the row's record of the `rows` form (a student)
    record: StoredRecord | None  # its record of this form with the fixed values, if saved before
    issues: list[Issue] = field(default_factory=list)
    conflict: bool = False


@dataclass
class Grid:
    form: FormSpec
    rows: list[GridRow]
    saved: int = 0

    @property
    def ok(self) -> bool:
        return not any(r.issues or r.conflict for r in self.rows)


class GridService:
    def __init__(self, records: RecordService, forms: Any) -> None:
        self.records, self.forms = records, forms

    def load(self, principal: Principal, form: FormSpec, unit_id: int, fixed: Mapping[str, int]) -> Grid:
        grid = form.grid
        if grid is None or not can(principal, "read", form):
            raise NotPermitted()
        target_form = self.forms()[form.fields[grid.rows].kind.form]
        targets = self.records.list(target_form, principal, ListQuery(unit=unit_id, per_page=MAX_ROWS,
                                                                       sort=target_form.title_field)).records
        filters = {key: str(value) for key, value in fixed.items()}
        existing = self.records.list(form, principal, ListQuery(filters=filters, unit=unit_id, per_page=MAX_ROWS * 2)).records
        by_target = {r.values.get(grid.rows): r for r in existing}
        rows = [GridRow(t, by_target.get(t.id)) for t in targets]
        self.records.figured(principal, form, [r.record for r in rows if r.record is not None])
        return Grid(form, rows)

    def save(self, principal: Principal, form: FormSpec, unit_id: int, fixed: Mapping[str, int],
             cells: Mapping[int, Mapping[str, Any]], revisions: Mapping[int, int]) -> Grid:
        """`cells`: {row target id: {column: typed text}}; `revisions`: the revision each existing row was shown at.
        Saved: a Grid with no rows and `saved` set (load the grid again to show what is stored, with its figures);
        refused: the rows as loaded, with each row's issues or conflict, and nothing written."""
        grid = form.grid
        assert grid is not None
        loaded = self.load(principal, form, unit_id, fixed)
        changed = []
        for row in loaded.rows:
            typed = {k: v for k, v in cells.get(row.target.id, {}).items() if k in grid.columns}
            if row.record is None and not any(str(v).strip() for v in typed.values()):
                continue  # an empty row of someone not yet entered
            if row.record is not None and all(_same(form, k, row.record.values.get(k), v) for k, v in typed.items()):
                continue
            changed.append((row, typed))
        if not changed:
            return loaded
        with self.records.db.write() as s:
            # The existing rows again, in the write transaction and with the principal's *update* scope: one query,
            # and each update starts from it rather than reading its record once more.
            ids = [row.record.id for row, _ in changed if row.record is not None]
            current = {r.id: r for r in self.records.stored_rows(form, s.execute(
                self.records.read_query(form, principal, "update").where(Record.id.in_(ids))))} if ids else {}
            for row, typed in changed:
                if row.record is None:
                    result = self.records.create(form, principal, None, {grid.rows: row.target.id, **fixed, **typed}, session=s)
                elif row.record.id not in current:
                    row.issues, row.conflict = [Issue("not_found")], False
                    continue
                else:
                    result = self.records.update(form, principal, row.record.id, typed, revisions.get(row.target.id, -1),
                                                 session=s, current=current[row.record.id])
                row.issues = list(result.issues)
                row.conflict = result.conflict is not None
            if all(not (row.issues or row.conflict) for row, _ in changed):
                s.commit()
                return Grid(form, [], saved=len(changed))
            s.rollback()
        return loaded


def _same(form: FormSpec, key: str, stored: Any, typed: Any) -> bool:
    value, issues = form.fields[key].kind.clean(typed)
    return not issues and value == stored
