"""One pass over an upload: each cell through its field type's `from_cell`, each row through `clean_record`
(the one validator), then, when writing, each batch of rows in one transaction.

A batch is written with a few statements (sequence blocks, one multi-row INSERT … RETURNING, one
executemany UPDATE, one audit INSERT) inside a SAVEPOINT. Should the database refuse it (a unique
value taken meanwhile, a record changed meanwhile), the SAVEPOINT is rolled back and the batch is
written row by row through `RecordService.create/update`, each row in its own SAVEPOINT, so a row
is either saved whole (record, generated numbers, audit entry) or not at all.
"""
from __future__ import annotations

import datetime as dt
import gc
import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any, Callable, Iterable, Iterator, Protocol

from sqlalchemy import JSON, Text, bindparam, func, select, text, true, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from engine.documents import read_values, stored_changes, stored_value, write_document
from engine.excel.layout import UNIT_KEY, KeySheet, header_score, key_lookup, map_header, read_key_sheet
from engine.excel.limits import FileRejected, Limits
from engine.excel.parallel import helper_possible, prepared_batches
from engine.excel.reader import Row, Table
from engine.excel.units import UnitChoices, unit_choices
from engine.excel.workbooks import FORMULA_PREFIXES
from engine.fields.base import FieldType
from engine.fields.generated import GeneratedField
from engine.fields.normalise import integral_text
from engine.issues import FieldError, Issue
from engine.messages import render
from engine.permissions import Principal, can, policy, scope
from engine.records import RecordService
from engine.spec import FormSpec
from engine.storage.db import Database
from engine.storage.fieldsql import form_is, sql_value, value_expr
from engine.storage.jsontext import dumps as json_text
from engine.storage.models import AuditEntry, OrgUnit, Record, utcnow
from engine.validation import CleanResult, clean_field, clean_record

OUTCOMES = ("new", "updated", "unchanged", "invalid")
ERROR_MODES = ("all_or_nothing", "skip_invalid")
BLOCK_SQL = text(
    "INSERT INTO sequences (scope, last_value) VALUES (:scope, :n) "
    "ON CONFLICT (scope) DO UPDATE SET last_value = sequences.last_value + :n RETURNING last_value"
)
SAMPLES = 3


class Interrupted(Exception):
    """The worker is stopping; the job keeps its last committed row and continues when re-run."""


class _Fallback(Exception):
    """The fast batch write met a conflict; the batch is redone row by row."""


@dataclass
class Existing:
    id: int
    data: dict[str, Any]
    revision: int
    unit_id: int
    unit_path: str
    created_by: int | None


@dataclass
class RowInput:
    number: int
    cells: list[Any]
    submitted: dict[str, Any] = field(default_factory=dict)  # writable fields; None = empty cell
    key: str | None = None  # the natural key as JSON, when every part is valid
    key_text: str = ""
    unit_text: str = ""
    issues: list[Issue] = field(default_factory=list)  # cells their field type could not read
    formulas: int = 0  # text cells that look like formulas, kept as inert text
    # clean_record of the row as a new record (defaults + the row), made while rows are prepared;
    # a row that turns out to update a stored record is cleaned again with the stored values.
    as_new: CleanResult | None = None


@dataclass
class Plan:
    row: RowInput
    action: str  # one of OUTCOMES
    issues: list[Issue] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    existing: Existing | None = None
    unit_id: int | None = None
    registered: list[tuple[str, str]] = field(default_factory=list)  # (unique name, value) seen first here


@dataclass
class CellError:
    column: int | None  # index in the uploaded row; None when the field has no column in the file
    label: str
    value: str
    message: str


@dataclass
class PassResult:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    processed: int = 0  # data rows seen, empty ones included
    last_row: int = 0
    header_row: int = 0
    duplicates: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    late_errors: dict[int, list[CellError]] = field(default_factory=dict)  # first rows of duplicates
    warnings: list[Issue] = field(default_factory=list)
    normalised: dict[str, list[Any]] = field(default_factory=dict)  # field → [count, before, after]
    formula_text: int = 0
    empty_rows: int = 0


class Sink(Protocol):
    """Where a pass reports each batch: inside the batch's own transaction when it writes."""

    def batch(self, s: DbSession, plans: list[Plan], errors: dict[int, list[CellError]], result: PassResult) -> None: ...


@dataclass
class Context:
    db: Database
    records: RecordService
    form: FormSpec
    principal: Principal
    mode: str
    limits: Limits
    note: str = ""
    # Fields whose changes must pass a change-registration review (workflow `changes:`); an import may not edit them.
    protected: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.found = policy(self.principal, self.form)
        if self.found is None:
            raise PermissionError(self.form.key)
        self.update_reach = scope(self.principal, "update", self.form)
        self.defaults = {key: spec.default for key, spec in self.form.fields.items()}
        self.generated = [k for k, f in self.form.fields.items() if isinstance(f.kind, GeneratedField)]
        single_key = self.form.natural_key if len(self.form.natural_key) == 1 else ()
        self.unique_checked = [k for k, f in self.form.fields.items() if f.unique and k not in single_key]
        with self.db.read() as s:
            self.create_units = unit_choices(s, self.principal, self.form, "create") if can(self.principal, "create", self.form) else UnitChoices([])
            self.update_units = unit_choices(s, self.principal, self.form, "update") if can(self.principal, "update", self.form) else UnitChoices([])

    @property
    def unit_required(self) -> bool:
        return self.create_units.only is None


def find_header(form: FormSpec, rows: Iterator[Row], keys: KeySheet, limit: int) -> tuple[Row, list[Row]]:
    """The header is the row among the first `limit` that names the most fields (a title row may sit above)."""
    names = key_lookup(form)
    scanned: list[Row] = []
    best: tuple[int, int] = (0, -1)
    for row in rows:
        scanned.append(row)
        score = header_score(row[1], names, keys)
        if score > best[0]:
            best = (score, len(scanned) - 1)
        if len(scanned) >= limit:
            break
    if best[1] < 0:
        if not any(_filled(cells) for _n, cells in scanned):
            raise FileRejected("import_no_rows")
        example = "、".join(f.label for f in list(form.fields.values())[:3])
        raise FileRejected("import_no_header", rows=limit, example=example)
    return scanned[best[1]], scanned[best[1] + 1:]


def _filled(cells: list[Any]) -> bool:
    return any(not _blank(cell) for cell in cells)


_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_FORMULA_STARTS = FORMULA_PREFIXES[:4]  # "=", "+", "-", "@"; tab and CR are stripped away before the test


def _cell_reader(kind: Any) -> Callable[[Any], Any] | None:
    """The type's `from_cell`, or None where it is the base one, which returns the cell unchanged."""
    return None if type(kind).from_cell is FieldType.from_cell else kind.from_cell


def _blank(cell: Any) -> bool:
    # str.strip() already removes NBSP and the ideographic space; the reader gives "" for empty cells.
    return cell is None or cell == "" or (isinstance(cell, str) and not cell.strip().strip(_ZERO_WIDTH).strip())


def cell_text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float):
        return integral_text(cell) or repr(cell)
    if isinstance(cell, (dt.date, dt.datetime)):
        return cell.isoformat()
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    return str(cell)


class ImportPass:
    """Reads a table once. `write=False` is the dry run (preview, or the all-or-nothing check)."""

    def __init__(self, ctx: Context, *, write: bool, sink: Sink, known_duplicates: dict[str, dict[str, list[int]]] | None = None,
                 start_after: int = 0, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.ctx, self.form, self.write, self.sink = ctx, ctx.form, write, sink
        self.known = known_duplicates or {}
        self.start_after = start_after
        self.should_stop = should_stop
        self.result = PassResult()
        # First occurrence of each natural key / unique value: the Plan while its batch runs, then
        # (row number, outcome), so memory stays small however long the file is.
        self.seen: dict[str, dict[str, Plan | tuple[int, str]]] = {}
        self._batch_plans: list[Plan] = []
        self.dialect = ctx.db.dialect

    # --- driving -----------------------------------------------------------------------------------
    def run(self, table: Table) -> PassResult:
        keys = read_key_sheet(table.keys)
        if keys.form_key and keys.form_key != self.form.key:
            raise FileRejected("import_wrong_form", other=keys.form_key, target=self.form.title)
        (header_row, header), rest = find_header(self.form, table.rows, keys, self.ctx.limits.header_scan_rows)
        self.columns = map_header(self.form, self.ctx.found, header, header_row, keys, self.ctx.mode, self.ctx.unit_required)
        self.result.header_row = header_row
        self.result.warnings = list(self.columns.warnings)
        self._readers = [(key, index, _cell_reader(self.form.fields[key].kind)) for key, index in self.columns.fields.items()]
        self._normal: dict[tuple[str, str], str | None] = {}
        helper = 0 < self.ctx.limits.helper_rows <= table.last_row and helper_possible()
        with fewer_collections(), prepared_batches(self, self._batches(rest, table.rows), helper) as batches:
            for rows, prepared in batches:
                self._batch(rows, prepared)
        self.result.warnings += self._closing_warnings(table)
        return self.result

    def _batches(self, first: list[Row], rest: Iterator[Row]) -> Iterator[list[Row]]:
        batch: list[Row] = []
        data_rows = 0
        for row in _chain(first, rest):
            filled = _filled(row[1])
            data_rows += filled
            if data_rows > self.ctx.limits.max_rows:
                raise FileRejected("import_file_rows", limit=self.ctx.limits.max_rows, count=f"{data_rows}+")
            if row[0] <= self.start_after:
                continue  # committed before the interruption; its progress was saved with it
            if not filled:
                self.result.empty_rows += 1
                self.result.processed += 1
                continue
            batch.append(row)
            if len(batch) >= self.ctx.limits.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def prepare(self, rows: list[Row]) -> list[RowInput]:
        """Cells read and each row validated as a new record: the part that needs no database, so it
        may run in a helper process (engine/excel/parallel.py) while this one writes. The rows come back
        without their cells, which the caller has already (a helper need not send them back)."""
        prepared = []
        for number, cells in rows:
            row = self.convert(number, cells)
            if self.ctx.mode != "update":
                row.as_new = clean_record(self.form, self._new_raw(row))
            row.cells = []
            prepared.append(row)
        return prepared

    def _batch(self, rows: list[Row], inputs: list[RowInput]) -> None:
        if self.should_stop():
            raise Interrupted()
        for row, (_number, cells) in zip(inputs, rows):
            row.cells = cells
        self.result.formula_text += sum(row.formulas for row in inputs)
        if self.write:
            with self.ctx.db.write() as s:
                plans = self.plan(s, inputs)
                self._write(s, plans)
                self._report(s, plans, rows[-1][0])
                s.commit()
        else:
            with self.ctx.db.read() as s:
                plans = self.plan(s, inputs)
            with self.ctx.db.write() as s:
                self._report(s, plans, rows[-1][0])
                s.commit()

    def _report(self, s: DbSession, plans: list[Plan], last_row: int) -> None:
        errors: dict[int, list[CellError]] = {}
        for plan in plans:
            for name, value in plan.registered:
                if self.seen[name].get(value) is plan:
                    self.seen[name][value] = (plan.row.number, plan.action)
            self.result.counts[plan.action] += 1
            if plan.action == "invalid":
                errors[plan.row.number] = self.cell_errors(plan.row, plan.issues)
            elif not self.write:
                self._count_normalised(plan)  # a note for the preview; the import itself has no page to show it
        self.result.processed += len(plans)
        self.result.last_row = last_row
        self.sink.batch(s, plans, errors, self.result)

    # --- one row -----------------------------------------------------------------------------------
    def convert(self, number: int, cells: list[Any]) -> RowInput:
        row = RowInput(number, cells)
        width = len(cells)
        submitted = row.submitted
        for key, index, from_cell in self._readers:
            cell = cells[index] if index < width else None
            if isinstance(cell, str):
                text = cell.strip()
                # The full blank test only for text that starts or ends with something strip() keeps.
                if not text or ((text[0] in _ZERO_WIDTH or text[-1] in _ZERO_WIDTH) and _blank(text)):
                    submitted[key] = None
                    continue
                if text.startswith(_FORMULA_STARTS):
                    row.formulas += 1
            elif cell is None:
                submitted[key] = None
                continue
            if from_cell is None:  # the type takes cells as they are
                submitted[key] = cell
                continue
            try:
                submitted[key] = from_cell(cell)
            except FieldError as exc:
                row.issues.append(exc.issue.at(key))
        if self.columns.unit is not None and self.columns.unit < width:
            row.unit_text = cell_text(cells[self.columns.unit]).strip()
        self._natural_key(row)
        return row

    def _natural_key(self, row: RowInput) -> None:
        parts, texts = [], []
        for key in self.form.natural_key:
            spec = self.form.fields[key]
            if key in row.submitted:
                raw = row.submitted[key]
            else:
                index = self.columns.match_only.get(key)
                cell = row.cells[index] if index is not None and index < len(row.cells) else None
                try:
                    raw = None if _blank(cell) else spec.kind.from_cell(cell)
                except FieldError:
                    return
            value, issues = clean_field(spec, raw)
            if issues or value is None:
                return
            parts.append(spec.kind.to_json(value))
            texts.append(spec.kind.to_text(value))
        if parts:
            row.key = json.dumps(parts, ensure_ascii=False)
            row.key_text = "、".join(texts)

    def plan(self, s: DbSession, inputs: list[RowInput]) -> list[Plan]:
        existing = self._lookup(s, [row for row in inputs if row.key is not None])
        plans = [self._classify(row, existing.get(row.key) if row.key else None) for row in inputs]
        self._batch_plans = plans
        self._check_duplicates(plans)
        self._check_unique(s, plans)
        return plans

    def _classify(self, row: RowInput, found: Existing | None) -> Plan:
        issues = list(row.issues)
        key_field = self.form.natural_key[0] if self.form.natural_key else ""
        if found is None:
            if self.ctx.mode == "update":
                code = "import_not_found" if row.key else "import_key_empty"
                if row.key or not self._key_cell_filled(row):
                    issues.append(Issue(code, {"value": row.key_text}, path=key_field))
                return self._finish(row, "invalid", issues + self._key_issues(row))
            return self._plan_new(row, issues)
        if not self.ctx.update_reach.contains(found.unit_path, found.created_by, self.ctx.principal.user_id):
            issues.append(Issue("import_out_of_scope", {"value": row.key_text}, path=key_field))
            return self._finish(row, "invalid", issues)
        plan = self._plan_update(row, found, issues)
        if self.ctx.mode == "insert" and plan.action == "updated":
            return self._finish(row, "invalid", [Issue("import_exists", {"value": row.key_text}, path=key_field)])
        return plan

    def _key_cell_filled(self, row: RowInput) -> bool:
        return any(row.submitted.get(k) is not None or self._match_cell(row, k) for k in self.form.natural_key)

    def _match_cell(self, row: RowInput, key: str) -> bool:
        index = self.columns.match_only.get(key)
        return index is not None and index < len(row.cells) and not _blank(row.cells[index])

    def _key_issues(self, row: RowInput) -> list[Issue]:
        """Why a filled key cell could not be read, from the one validator."""
        issues = []
        for key in self.form.natural_key:
            if key in row.submitted and row.submitted[key] is not None:
                issues += clean_field(self.form.fields[key], row.submitted[key])[1]
        return issues

    def _new_raw(self, row: RowInput) -> dict[str, Any]:
        raw = dict(self.ctx.defaults)
        raw.update({k: v for k, v in row.submitted.items() if v is not None})
        return raw

    def _plan_new(self, row: RowInput, issues: list[Issue]) -> Plan:
        cleaned = row.as_new or clean_record(self.form, self._new_raw(row))
        unit_id, unit_issue = self.ctx.create_units.resolve(row.unit_text, self.form.unit_label)
        if unit_issue is not None:
            issues.append(Issue(unit_issue.code, unit_issue.params, path=UNIT_KEY))
        elif unit_id is None:
            only = self.ctx.create_units.only
            if only is None:
                issues.append(Issue("import_unit_required", path=UNIT_KEY))
            else:
                unit_id = only.id
        issues += self._merge_issues(row, cleaned.issues)
        issues = issues or self._generated_sources(cleaned.values)
        if issues:
            return self._finish(row, "invalid", issues)
        return Plan(row, "new", values=dict(cleaned.values), unit_id=unit_id)

    def _plan_update(self, row: RowInput, found: Existing, issues: list[Issue]) -> Plan:
        raw = read_values(self.form, found.data)
        raw.update({k: v for k, v in row.submitted.items()})
        cleaned = clean_record(self.form, raw)
        unit_id, unit_issue = self.ctx.update_units.resolve(row.unit_text, self.form.unit_label)
        if unit_issue is not None:
            issues.append(Issue(unit_issue.code, unit_issue.params, path=UNIT_KEY))
        issues += self._merge_issues(row, cleaned.issues)
        issues = issues or self._generated_sources(cleaned.values)
        if issues:
            return self._finish(row, "invalid", issues, existing=found)
        values = dict(cleaned.values)
        pending = any(not values.get(k) for k in self.ctx.generated)
        document = write_document(self.form, values, found.data)
        changes = stored_changes(self.form, found.data, document)
        held = [Issue("protected_by_review", path=k) for k in self.form.fields
                if k in changes and k in self.ctx.protected and self.ctx.mode != "insert"]
        if held:
            return self._finish(row, "invalid", held, existing=found)
        changed = bool(changes) or pending
        moved = unit_id is not None and unit_id != found.unit_id
        action = "updated" if changed or moved else "unchanged"
        return Plan(row, action, values=values, existing=found, unit_id=unit_id if moved else None)

    def _merge_issues(self, row: RowInput, found: list[Issue]) -> list[Issue]:
        """A cell its type could not read reports that, not a follow-on "required"."""
        unread = {i.path for i in row.issues}
        return [i for i in found if i.path.split(".")[0] not in unread]

    def _generated_sources(self, values: dict[str, Any]) -> list[Issue]:
        """As RecordService._generate: a number that cannot be made is the row's problem, not a crash."""
        issues = []
        for key in self.ctx.generated:
            if values.get(key):
                continue
            missing = [n for n in self.form.fields[key].kind.referenced_fields() if values.get(n) is None]
            if missing:
                issues.append(Issue("generated_source", {"source": self.form.fields[missing[0]].label}, path=key))
        return issues

    def _finish(self, row: RowInput, action: str, issues: list[Issue], existing: Existing | None = None) -> Plan:
        return Plan(row, action, issues=issues, existing=existing)

    # --- batch lookups ---------------------------------------------------------------------------
    def _matching(self, s: DbSession, spec: Any, stored: Iterable[Any]) -> list[tuple[str, int]]:
        """(value as text, record id) of this form's records whose unique field (or natural key) holds one
        of `stored` (JSON values), answered from the unique expression index.

        SQLite: one IN list. PostgreSQL keeps no statistics for a partial expression index, guesses that
        `= ANY(500 values)` matches most rows and scans the table (tens of ms per batch, growing with it);
        one equality per value in a LATERAL join makes it probe the index instead."""
        expr = value_expr(self.dialect, spec)
        values = [sql_value(self.dialect, v) for v in stored]
        if not values:
            return []
        if self.dialect != "postgresql":
            return [(str(v), i) for i, v in s.execute(select(Record.id, expr).where(form_is(self.form.key), expr.in_(values)))]
        wanted = func.unnest(bindparam("wanted", values, type_=ARRAY(Text))).table_valued("x").render_derived(name="v")
        # LIMIT 1 keeps the planner from turning the LATERAL back into a merge join over the whole index.
        match = select(Record.id).where(form_is(self.form.key), expr == wanted.c.x).limit(1).lateral("m")
        return list(s.execute(select(wanted.c.x, match.c.id).select_from(wanted).join(match, true())).all())

    def _lookup(self, s: DbSession, rows: list[RowInput]) -> dict[str, Existing]:
        """Records whose natural key matches, with one IN query per batch, from every scope."""
        if not rows or not self.form.natural_key:
            return {}
        specs = [self.form.fields[k] for k in self.form.natural_key]
        wanted = {row.key: json.loads(row.key) for row in rows if row.key}
        exprs = [value_expr(self.dialect, spec) for spec in specs]
        if len(exprs) == 1:
            ids = {i for _v, i in self._matching(s, specs[0], {parts[0] for parts in wanted.values()})}
            if not ids:
                return {}
            condition = Record.id.in_(ids)
        else:
            condition = tuple_(*exprs).in_([tuple(sql_value(self.dialect, p) for p in parts) for parts in wanted.values()])
        query = (select(Record.id, Record.data, Record.revision, Record.unit_id, Record.created_by, OrgUnit.path)
                 .join(OrgUnit, OrgUnit.id == Record.unit_id).where(form_is(self.form.key), condition))
        if self.write:
            query = query.with_for_update(of=Record)  # PostgreSQL: hold the rows until the batch commits
        found: dict[str, Existing] = {}
        for rec_id, data, revision, unit_id, created_by, path in s.execute(query):
            data = dict(data or {})
            found[_stored_key(specs, data)] = Existing(rec_id, data, revision, unit_id, path, created_by)
        return found

    def _check_duplicates(self, plans: list[Plan]) -> None:
        """Within the file: the natural key and each unique field; every row of a repeat is reported."""
        for plan in plans:
            for name, value, key in list(self._unique_values(plan)):
                rows = self.known.get(name, {}).get(value)
                if rows is not None:
                    self._invalidate(plan, self._duplicate(key, value, rows))
                    continue
                seen = self.seen.setdefault(name, {})
                plan.registered.append((name, value))
                if value not in seen:
                    seen[value] = plan
                    continue
                numbers = self.result.duplicates.setdefault(name, {}).setdefault(value, [_number(seen[value])])
                numbers.append(plan.row.number)
                issue = self._duplicate(key, value, numbers)
                self._invalidate(plan, issue)
                if len(numbers) == 2:
                    self._invalidate_first(name, value, key, issue)

    def _duplicate(self, key: str, value: str, rows: list[int]) -> Issue:
        parts = json.loads(value)
        text = "、".join(str(p) for p in parts) if isinstance(parts, list) else str(parts)
        return Issue("import_duplicate", {"value": text, "rows": "、".join(str(r) for r in rows)}, path=key)

    def _invalidate_first(self, name: str, value: str, key: str, issue: Issue) -> None:
        """The first row of a repeat may sit in an earlier batch that is already reported."""
        entry = self.seen[name][value]
        if isinstance(entry, Plan):
            if entry.action == "invalid":
                entry.issues.append(issue)
            else:
                self._invalidate(entry, issue)
            return
        number, action = entry
        if self.write:
            return  # saved by an earlier batch; the preview reports both rows before anything is written
        if action != "invalid":
            self.result.counts[action] -= 1
            self.result.counts["invalid"] += 1
            self.seen[name][value] = (number, "invalid")
        column = self.columns.column_of(key)
        label = self.form.fields[key].label if key in self.form.fields else ""
        self.result.late_errors.setdefault(number, []).append(
            CellError(column, label, issue.params.get("value", ""), render(issue, label)))

    def _unique_values(self, plan: Plan) -> Iterator[tuple[str, str, str]]:
        if plan.row.key is not None and self.form.natural_key:
            yield "_key", plan.row.key, self.form.natural_key[0]
        if plan.action in ("new", "updated"):
            for key in self.ctx.unique_checked:
                spec = self.form.fields[key]
                if spec.kind.user_input and plan.values.get(key) is not None:
                    yield key, json.dumps(spec.kind.to_json(plan.values[key]), ensure_ascii=False), key

    def _invalidate(self, plan: Plan, issue: Issue) -> None:
        plan.action = "invalid"
        plan.issues.append(issue)

    def _check_unique(self, s: DbSession, plans: list[Plan]) -> None:
        """Unique fields against other records (one IN query per field and batch), as create/update do."""
        for key in self.ctx.unique_checked:
            spec = self.form.fields[key]
            if self.write and not spec.kind.user_input:
                continue  # a generated number: the unique index decides at INSERT (then row by row, same message)
            candidates = [p for p in plans if p.action in ("new", "updated") and self._unique_candidate(p, key) is not None]
            if not candidates:
                continue
            values = {spec.kind.to_json(self._unique_candidate(p, key)) for p in candidates}
            taken: dict[Any, set[int]] = {}
            for stored, rec_id in self._matching(s, spec, values):
                taken.setdefault(stored, set()).add(rec_id)
            for plan in candidates:
                value = self._unique_candidate(plan, key)
                others = taken.get(str(sql_value(self.dialect, spec.kind.to_json(value))), set()) - {plan.existing.id if plan.existing else -1}
                if others:
                    self._invalidate(plan, Issue("unique", {"value": spec.kind.to_text(value)}, path=key))

    def _unique_candidate(self, plan: Plan, key: str) -> Any:
        spec = self.form.fields[key]
        value = plan.values.get(key)
        if value is None and isinstance(spec.kind, GeneratedField) and not spec.kind.has_sequence and plan.action == "new":
            try:
                value = spec.kind.render(plan.values)
            except ValueError:
                return None
        if plan.existing is not None and value is not None:
            before = stored_value(spec, plan.existing.data)
            if before is not None and before == spec.kind.to_json(value):
                return None  # unchanged: it was unique when it was saved
        return value

    # --- writing -----------------------------------------------------------------------------------
    def _write(self, s: DbSession, plans: list[Plan]) -> None:
        todo = [p for p in plans if p.action in ("new", "updated")]
        if not todo:
            return
        try:
            with s.begin_nested():
                self._write_fast(s, todo)
        except (IntegrityError, _Fallback):
            self._write_slow(s, todo)

    def _write_fast(self, s: DbSession, plans: list[Plan]) -> None:
        form, user = self.form, self.ctx.principal
        self._generate(s, plans)
        self._check_generated(plans)
        now = utcnow()
        connection = s.connection()
        # Audit entries as (record_id, action, revision, changes); what every entry of the batch shares goes once.
        audits: list[tuple[Any, ...]] = []
        new = [p for p in plans if p.action == "new"]
        if new:
            documents = [self._new_document(p.values) for p in new]
            ids = self._allocate_ids(s, len(new))
            self._insert(connection, Record.__table__,
                         {"form_key": form.key, "def_version": form.version, "revision": 1, "created_by": user.user_id,
                          "updated_by": user.user_id, "created_at": now, "updated_at": now},
                         ("id", "unit_id", "data"), [(i, p.unit_id, d) for i, p, d in zip(ids, new, documents)])
            # stored_changes(form, {}, d) for a new record: every filled field, from nothing.
            audits += [(i, "create", 1, {k: [None, v] for k, v in d.items() if v is not None}) for i, d in zip(ids, documents)]
        updated = [p for p in plans if p.action == "updated"]
        if updated:
            params = []
            for p in updated:
                assert p.existing is not None
                document = write_document(form, p.values, p.existing.data)
                changes = stored_changes(form, p.existing.data, document)
                unit_id = p.unit_id or p.existing.unit_id
                if unit_id != p.existing.unit_id:
                    changes["_unit"] = [p.existing.unit_id, unit_id]
                params.append({"b_id": p.existing.id, "b_rev": p.existing.revision, "b_new": p.existing.revision + 1,
                               "b_data": document, "b_unit": unit_id})
                audits.append((p.existing.id, "update", p.existing.revision + 1, changes))
            table = Record.__table__
            result = connection.execute(
                table.update().where(table.c.id == bindparam("b_id"), table.c.revision == bindparam("b_rev"))
                .values(data=bindparam("b_data"), revision=bindparam("b_new"), unit_id=bindparam("b_unit"),
                        def_version=form.version, updated_by=user.user_id, updated_at=now),
                params,
            )
            if connection.dialect.supports_sane_multi_rowcount and result.rowcount != len(params):
                raise _Fallback()
        shared = {"form_key": form.key, "user_id": user.user_id, "username": user.username, "note": self.ctx.note, "at": now}
        if self.dialect == "postgresql":
            self._insert(connection, AuditEntry.__table__, shared, ("id", "record_id", "action", "revision", "changes"),
                         [(i, *a) for i, a in zip(self._next_ids(s, "audit_log", len(audits)), audits)])
        else:
            self._insert(connection, AuditEntry.__table__, shared, ("record_id", "action", "revision", "changes"), audits)

    def _new_document(self, values: dict[str, Any]) -> dict[str, Any]:
        """write_document(form, values, None), with each field's to_json looked up once per pass. A form with
        renamed fields takes write_document itself (it drops old keys as it goes)."""
        steps = self._document_steps
        if steps is None:
            return write_document(self.form, values, None)
        get = values.get
        return {key: None if (value := get(key)) is None else (value if to_json is None else to_json(value)) for key, to_json in steps}

    @cached_property
    def _document_steps(self) -> list[tuple[str, Callable[[Any], Any] | None]] | None:
        if any(spec.renamed_from for spec in self.form.fields.values()):
            return None
        return [(key, None if type(spec.kind).to_json is FieldType.to_json else spec.kind.to_json)
                for key, spec in self.form.fields.items()]

    def _insert(self, connection: Any, table: Any, shared: dict[str, Any], names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Many rows at once: `shared` values are the same in every row, `rows` hold the `names` columns.
        SQLite: executemany, one C loop. PostgreSQL: COPY — psycopg's executemany sends a statement per row,
        and a multi-row VALUES statement is costly to build and parse."""
        if not rows:
            return
        if self.dialect != "postgresql":
            self._insert_sqlite(connection, table, shared, names, rows)
            return
        columns = [*shared, *names]
        json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
        encoded = [n in json_columns for n in columns]
        head = list(shared.values())
        cursor = connection.connection.driver_connection.cursor()
        try:
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([json.dumps(v, ensure_ascii=False) if e and v is not None else v
                                    for v, e in zip([*head, *row], encoded)])
        except connection.dialect.dbapi.IntegrityError as exc:  # raw driver error: SQLAlchemy did not run this
            raise _Fallback() from exc

    @staticmethod
    def _insert_sqlite(connection: Any, table: Any, shared: dict[str, Any], names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """One prepared INSERT over tuples on the driver's cursor, in the session's transaction. Each value is
        stored as SQLAlchemy would store it: through its column type's bind processor, or, for a datetime (which
        SQLAlchemy hands to sqlite3 as it is), sqlite3's own adapter; the shared values once per batch. A JSON
        document is encoded by engine.storage.jsontext, the same text as the type's processor (json.dumps).
        SQLAlchemy's executemany spends more on per-row parameter bookkeeping than SQLite spends inserting."""
        dialect = connection.dialect
        head = tuple(_sqlite_bound(table.c[name], dialect, value) for name, value in shared.items())
        steps: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(names):
            column = table.c[name]
            process = column.type.bind_processor(dialect)
            if process is None:
                continue
            if isinstance(column.type, JSON) and dialect._json_serializer is None:  # its processor: json.dumps
                steps.append((index, partial(_json_text, process)))
            else:
                steps.append((index, process))
        if not steps:
            params = [head + row for row in rows]
        elif len(steps) == 1 and steps[0][0] == len(names) - 1:  # the usual shape: the document last
            process = steps[0][1]
            params = [head + row[:-1] + (process(row[-1]),) for row in rows]
        else:
            params = []
            for row in rows:
                values = list(row)
                for index, process in steps:
                    values[index] = process(values[index])
                params.append(head + tuple(values))
        sql = f"INSERT INTO {table.name} ({', '.join([*shared, *names])}) VALUES ({', '.join('?' * (len(shared) + len(names)))})"
        cursor = connection.connection.driver_connection.cursor()
        try:
            cursor.executemany(sql, params)
        except dialect.loaded_dbapi.IntegrityError as exc:  # raw driver error, as for COPY above
            raise _Fallback() from exc
        finally:
            cursor.close()

    def _allocate_ids(self, s: DbSession, count: int) -> list[int]:
        """Record ids for a batch up front, so the rows go in at once (no per-row RETURNING).

        SQLite: the batch holds the database's write lock (BEGIN IMMEDIATE), so the block stays ours; it
        starts above the AUTOINCREMENT high-water mark, so a deleted record's id is never handed out again.
        PostgreSQL: the column's own sequence hands out the block.
        """
        if self.dialect == "postgresql":
            return self._next_ids(s, "records", count)
        used = s.execute(text("SELECT coalesce(max(id), 0) FROM records")).scalar_one()
        if s.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
            used = max(used, s.execute(text("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'records'")).scalar_one())
        return list(range(used + 1, used + 1 + count))

    def _next_ids(self, s: DbSession, table: str, count: int) -> list[int]:
        return list(s.execute(text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, :n)"),
                              {"n": count}).scalars())

    def _generate(self, s: DbSession, plans: list[Plan]) -> None:
        """Numbers for a whole batch: one sequence UPDATE per scope reserves a block (same `sequences` rows
        and scope names as RecordService._generate, so web and import share one numbering)."""
        for key in self.ctx.generated:
            kind: GeneratedField = self.form.fields[key].kind  # type: ignore[assignment]
            blocks: dict[str, list[Plan]] = {}
            for plan in plans:
                if plan.values.get(key):
                    continue
                if kind.has_sequence:
                    blocks.setdefault(kind.scope_key(plan.values), []).append(plan)
                else:
                    plan.values[key] = kind.render(plan.values)
            for prefix, members in blocks.items():
                last = s.execute(BLOCK_SQL, {"scope": f"{self.form.key}:{key}:{prefix}", "n": len(members)}).scalar_one()
                for offset, plan in enumerate(members):
                    number = last - len(members) + 1 + offset
                    plan.values[key] = kind.render(plan.values, lambda _prefix, n=number: n)

    def _check_generated(self, plans: list[Plan]) -> None:
        for key in self.ctx.generated:
            spec = self.form.fields[key]
            if not spec.unique:
                continue
            values = [spec.kind.to_json(p.values[key]) for p in plans if p.existing is None or p.existing.data.get(key) is None]
            if not values:
                continue
            # Taken by another record: the unique index refuses the INSERT and the batch goes row by row.
            if len(set(values)) != len(values):
                raise _Fallback()

    def _write_slow(self, s: DbSession, plans: list[Plan]) -> None:
        """Row by row through the record service, each in its own SAVEPOINT."""
        for plan in plans:
            savepoint = s.begin_nested()
            try:
                if plan.action == "new":
                    submitted = {k: v for k, v in plan.row.submitted.items() if v is not None}
                    saved = self.ctx.records.create(self.form, self.ctx.principal, plan.unit_id, submitted, session=s)  # type: ignore[arg-type]
                else:
                    assert plan.existing is not None
                    saved = self.ctx.records.update(self.form, self.ctx.principal, plan.existing.id, plan.row.submitted,
                                                    plan.existing.revision, unit_id=plan.unit_id, session=s, note=self.ctx.note)
            except LookupError:
                savepoint.rollback()
                self._invalidate(plan, Issue("import_out_of_scope", {"value": plan.row.key_text}, path=self.form.natural_key[0]))
                continue
            except IntegrityError as exc:  # not a unique value (those come back as issues): e.g. a unit just deleted
                savepoint.rollback()
                self._invalidate(plan, Issue("import_row_failed", {"detail": str(exc.orig).splitlines()[0][:200]}))
                continue
            except Exception:
                savepoint.rollback()
                raise
            if saved.ok:
                savepoint.commit()
                continue
            savepoint.rollback()
            self._invalidate(plan, Issue("import_conflict") if saved.conflict else saved.issues[0])
            plan.issues.extend(saved.issues[1:])

    # --- reporting -------------------------------------------------------------------------------
    def cell_errors(self, row: RowInput, issues: Iterable[Issue]) -> list[CellError]:
        errors = []
        for issue in issues:
            head = issue.path.split(".")[0]
            if head == UNIT_KEY:
                label, overrides = self.form.unit_label, {}
            elif head in self.form.fields:
                label, overrides = self.form.fields[head].label, self.form.fields[head].messages
            else:
                label, overrides = "", {}
            column = self.columns.column_of(head) if head else None
            value = cell_text(row.cells[column]) if column is not None and column < len(row.cells) else ""
            errors.append(CellError(column, label, value, render(issue, label, overrides)))
        return errors

    def _count_normalised(self, plan: Plan) -> None:
        """Typed text the field stored differently ("２０２３" → "2023", "Y" → "是"), for the preview's notes."""
        cells, memo = plan.row.cells, self._normal
        for key, index, _read in self._readers:
            cell = cells[index] if index < len(cells) else None
            if not isinstance(cell, str) or cell == "":
                continue
            if (key, cell) in memo:
                after = memo[(key, cell)]
            else:
                value = plan.values.get(key)
                text = None if value is None else self.form.fields[key].kind.to_text(value)
                after = text if text is not None and text != cell else None
                if len(memo) > 50_000:
                    memo.clear()
                memo[(key, cell)] = after
            if after is not None:
                entry = self.result.normalised.setdefault(key, [0, cell, after])
                entry[0] += 1

    def _closing_warnings(self, table: Table) -> list[Issue]:
        warnings = []
        for key, (count, before, after) in self.result.normalised.items():
            warnings.append(Issue("import_normalised", {"label": self.form.fields[key].label, "count": count,
                                                        "before": before.replace("\u00a0", "␣"), "after": after}))
        if table.stats.get("merged"):
            warnings.append(Issue("import_merged", {"count": table.stats["merged"]}))
        if self.result.formula_text:
            warnings.append(Issue("import_formula_text", {"count": self.result.formula_text}))
        if self.result.empty_rows:
            warnings.append(Issue("import_empty_rows", {"count": self.result.empty_rows}))
        return warnings


@contextmanager
def fewer_collections() -> Iterator[None]:
    """An import allocates millions of short-lived objects and keeps few of them; with the default
    threshold (a young-generation collection every 700 allocations) about a tenth of its time goes
    to the garbage collector scanning them. Process-wide, and harmless to other requests meanwhile."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], 50_000), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _sqlite_bound(column: Any, dialect: Any, value: Any) -> Any:
    """The value sqlite3 is given for `column` when SQLAlchemy binds `value`, and what sqlite3 makes of a date or
    datetime (its registered adapter, which it would call itself)."""
    process = column.type.bind_processor(dialect)
    if process is not None:
        return process(value)
    adapt = sqlite3.adapters.get((type(value), sqlite3.PrepareProtocol)) if isinstance(value, (dt.date, dt.time)) else None
    return value if adapt is None else adapt(value)


def _json_text(process: Callable[[Any], Any], value: Any) -> Any:
    """A JSON column's bound value: a document or list as json.dumps writes it, anything else by the type's processor."""
    return json_text(value) if isinstance(value, (dict, list)) else process(value)


def _number(entry: Plan | tuple[int, str]) -> int:
    return entry.row.number if isinstance(entry, Plan) else entry[0]


def _stored_key(specs: list[Any], data: dict[str, Any]) -> str:
    """The natural key of a stored document, in the same JSON form as a row's (renamed keys read through)."""
    parts = []
    for spec in specs:
        stored = stored_value(spec, data)
        parts.append(None if stored is None else spec.kind.to_json(spec.kind.from_json(stored)))
    return json.dumps(parts, ensure_ascii=False)


def _chain(first: list[Row], rest: Iterator[Row]) -> Iterator[Row]:
    yield from first
    yield from rest
