"""Planning an import batch: each row found among the stored records by its natural key, classified (new,
updated, unchanged, invalid) and turned into a RecordWrite for the record service; repeats within the file are
reported on every row they occur in. Nothing here writes."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from sqlalchemy.orm import Session as DbSession

from engine.documents import stored_value
from openpyxl.utils import get_column_letter

from engine.excel.layout import UNIT_KEY, ColumnMap, header_text
from engine.excel.limits import Limits
from engine.excel.reporting import PassResult, Reporter
from engine.excel.rows import RowInput, RowReader
from engine.excel.units import LevelCell, UnitChoices, comparable, unit_choices
from engine.excel.values import value_key
from engine.fields import LinkRef
from engine.fields.choice import ChoiceField
from engine.issues import Issue
from engine.permissions import Principal, can, policy, scope
from engine.records import RecordService, RecordWrite, StoredRecord
from engine.records.links import link_fields
from engine.spec import FormSpec, OrgLevel
from engine.storage.db import Database
from engine.storage.models import Record
from engine.validation import clean_field, clean_record


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
    # The mapping step's choices: a header as uploaded → the field key it means ("" = ignore the column).
    mapping: dict[str, str] = field(default_factory=dict)
    # org.yaml's levels: a column headed by a level above the unit's (年级) helps find the unit (engine/excel/units.py).
    org_levels: tuple[OrgLevel, ...] = ()
    # The value step's choices: field key → {text as in the file: option value} (engine/excel/values.py).
    values: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.found = policy(self.principal, self.form)
        if self.found is None:
            raise PermissionError(self.form.key)
        self.update_reach = scope(self.principal, "update", self.form)
        self.defaults = {key: spec.default for key, spec in self.form.fields.items()}
        single_key = self.form.natural_key if len(self.form.natural_key) == 1 else ()
        self.unique_checked = [k for k, f in self.form.fields.items() if f.unique and f.user_input and k not in single_key]
        with self.db.read() as s:
            self.create_units = unit_choices(s, self.principal, self.form, "create", self.org_levels) if can(self.principal, "create", self.form) else UnitChoices([])
            self.update_units = unit_choices(s, self.principal, self.form, "update", self.org_levels) if can(self.principal, "update", self.form) else UnitChoices([])

    @property
    def unit_required(self) -> bool:
        return not self.form.parent_field and self.create_units.only is None


@dataclass
class Plan:
    row: RowInput
    action: str  # one of engine.excel.reporting.OUTCOMES
    issues: list[Issue] = field(default_factory=list)
    write: RecordWrite | None = None
    existing: StoredRecord | None = None
    registered: list[tuple[str, str]] = field(default_factory=list)  # (unique name, value) seen first here

    @property
    def unit_id(self) -> int | None:
        return None if self.write is None else self.write.unit_id

    def invalidate(self, issue: Issue) -> None:
        self.action = "invalid"
        self.issues.append(issue)


class Planner:
    """Plans batches of one pass; remembers the first row of each natural key and unique value across batches."""

    def __init__(self, ctx: Context, reader: RowReader, reporter: Reporter, result: PassResult, write: bool,
                 known_duplicates: dict[str, dict[str, list[int]]] | None = None) -> None:
        self.ctx, self.form, self.reader, self.reporter, self.result = ctx, ctx.form, reader, reporter, result
        self.write = write
        self.known = known_duplicates or {}
        self.sheet = ""  # the sheet read, for messages naming cells
        self.level_cells = LevelCells(ctx.form, reader.columns, ctx.org_levels, reader.values.chosen)
        # First occurrence of each natural key / unique value: the Plan while its batch runs, then
        # (row number, outcome), so memory stays small however long the file is.
        self.seen: dict[str, dict[str, Plan | tuple[int, str]]] = {}
        self.named: dict[str, dict[str, set[int]]] = {}  # the batch's named links: field → text → ids (_resolve_links)

    def plan(self, s: DbSession, inputs: list[RowInput]) -> list[Plan]:
        """The batch's plans. A dry run also makes the record service's checks (scope, units, unique values);
        a writing pass leaves them to the service's write, which makes them in the same transaction."""
        self._resolve_links(s, inputs)
        existing = self._lookup(s, [row for row in inputs if row.key is not None])
        plans = [self._classify(row, existing.get(row.key) if row.key else None) for row in inputs]
        self._check_duplicates(plans)
        if not self.write:
            writes = [p.write for p in plans if p.action in ("new", "updated") and p.write is not None]
            self.ctx.records.check_batch(s, self.ctx.principal, self.form, writes)
            self.take_refusals(plans)
        return plans

    def take_refusals(self, plans: list[Plan]) -> None:
        """Writes the record service refused (their issues, a conflict) make their rows invalid."""
        for plan in plans:
            write = plan.write
            if plan.action not in ("new", "updated") or write is None or not write.failed:
                continue
            plan.action = "invalid"
            plan.issues += [Issue("import_conflict")] if write.conflict else write.issues

    # --- one row -----------------------------------------------------------------------------------
    def _classify(self, row: RowInput, found: StoredRecord | None) -> Plan:
        issues = list(row.issues)
        key_field = self.form.natural_key[0] if self.form.natural_key else ""
        if found is None:
            if self.ctx.mode == "update":
                code = "import_not_found" if row.key else "import_key_empty"
                if row.key or not self.reader.key_cell_filled(row):
                    issues.append(Issue(code, {"value": row.key_text}, path=key_field))
                return Plan(row, "invalid", issues + self._key_issues(row))
            return self._plan_new(row, issues)
        if not self.ctx.update_reach.contains(found.unit_path, found.created_by, self.ctx.principal.user_id, found):
            issues.append(Issue("import_read_only", {"value": row.key_text}, path=key_field))
            return Plan(row, "invalid", issues)
        plan = self._plan_update(row, found, issues)
        if self.ctx.mode == "insert" and plan.action == "updated":
            return Plan(row, "invalid", [Issue("import_exists", {"value": row.key_text}, path=key_field)])
        return plan

    def _key_issues(self, row: RowInput) -> list[Issue]:
        """Why a filled key cell could not be read, from the one validator."""
        issues = []
        for key in self.form.natural_key:
            if key in row.submitted and row.submitted[key] is not None:
                issues += clean_field(self.form.fields[key], row.submitted[key])[1]
        return issues

    def _unit(self, units: UnitChoices, row: RowInput) -> tuple[int | None, Issue | None]:
        if self.form.parent_field:  # the record service places it in its parent's unit
            return None, None
        unit_id, issue = units.resolve(row.unit_text, self.form.unit_label, self.level_cells.of(row))
        if issue is None:
            return unit_id, None
        params = dict(issue.params)
        if "within" in params:  # the message names both cells: where they are, and what was looked for
            column = self.reader.columns.unit
            params |= {"where": (f"工作表“{self.sheet}”" if self.sheet else "") + f"第 {row.number} 行",
                       "unit_column": get_column_letter(column + 1) if column is not None else ""}
        return None, Issue(issue.code, params, path=UNIT_KEY)

    def _plan_new(self, row: RowInput, issues: list[Issue]) -> Plan:
        cleaned = row.as_new or clean_record(self.form, self.reader.new_raw(row))
        unit_id, unit_issue = self._unit(self.ctx.create_units, row)
        if unit_issue is not None:
            issues.append(unit_issue)
        elif unit_id is None and not self.form.parent_field:
            only = self.ctx.create_units.only
            if only is None:
                issues.append(Issue("import_unit_required", path=UNIT_KEY))
            else:
                unit_id = only.id
        issues += _merge_issues(row, cleaned.issues)
        if issues:
            return Plan(row, "invalid", issues)
        submitted = {k: v for k, v in row.submitted.items() if v is not None}
        return Plan(row, "new", write=RecordWrite(self.form, cleaned, unit_id=unit_id, note=self.ctx.note, submitted=submitted))

    def _plan_update(self, row: RowInput, found: StoredRecord, issues: list[Issue]) -> Plan:
        submitted = self._linked(row.submitted, issues)
        raw = dict(found.values)
        raw.update(submitted)
        cleaned = clean_record(self.form, raw)
        unit_id, unit_issue = self._unit(self.ctx.update_units, row)
        if unit_issue is not None:
            issues.append(unit_issue)
        issues += _merge_issues(row, cleaned.issues)
        if issues:
            return Plan(row, "invalid", issues, existing=found)
        write = RecordWrite(self.form, cleaned, unit_id=unit_id, current=found, base_revision=found.revision,
                            note=self.ctx.note, submitted=submitted)
        changes = self.ctx.records.writer.build(write)
        if self.ctx.mode != "insert":
            held = [Issue("protected_by_review", path=k) for k in self.form.fields if k in changes and k in self.ctx.protected]
            if held:
                return Plan(row, "invalid", held, existing=found)
        changed = bool(changes) or bool(self.ctx.records.writer.to_number(write)) or write.moves
        return Plan(row, "updated" if changed else "unchanged", write=write, existing=found)

    # --- batch lookups ---------------------------------------------------------------------------
    def _lookup(self, s: DbSession, rows: list[RowInput]) -> dict[str, StoredRecord]:
        """Records the principal may read whose natural key matches, with one query per batch. A record out of
        the principal's reach is not found, as an absent one is (an import never confirms what it may not see)."""
        if not rows or not self.form.natural_key:
            return {}
        specs = [self.form.fields[k] for k in self.form.natural_key]
        parsed = [json.loads(row.key) for row in rows if row.key]
        wanted = [tuple(spec.kind.from_json(part) for spec, part in zip(specs, parts)) for parts in parsed
                  if not any(isinstance(part, dict) for part in parts)]
        holders = self.ctx.records.writer.matching(s, self.form, self.form.natural_key, wanted)
        ids = {i for found in holders.values() for i in found}
        if not ids:
            return {}
        condition = Record.id.in_(ids)
        query = self.ctx.records.read_query(self.form, self.ctx.principal, "read").where(condition)
        if self.write:
            query = query.with_for_update(of=Record)  # PostgreSQL: hold the rows until the batch commits
        found: dict[str, StoredRecord] = {}
        for record in self.ctx.records.stored_rows(self.form, s.execute(query)):
            found[_stored_key(specs, record.data)] = record
        return found

    def _resolve_links(self, s: DbSession, rows: list[RowInput]) -> None:
        """Links the file names as a school's file does (学号, 考试名称), looked up for the batch in the user's scope:
        `self.named[field][text]` = the ids found. A natural key with a link (one 成绩 per 学生 and 考试) gets the
        target's id in the row's key when the name finds one record, so that the row finds its stored record and two
        rows naming one student differently are one key; a name found nowhere or twice stays a name (the row is
        planned as new, and the save reports the link)."""
        self.named = {}
        for spec in link_fields(self.form):
            texts = {v.text for row in rows if isinstance(v := row.submitted.get(spec.key), LinkRef)}
            if texts:
                target = self.ctx.records.links.forms().get(spec.kind.form)  # type: ignore[attr-defined]
                self.named[spec.key] = self.ctx.records.links.named(s, self.ctx.principal, target, texts)
        keyed = [(i, k) for i, k in enumerate(self.form.natural_key) if k in self.named]
        for row in rows:
            if not row.key or not keyed:
                continue
            parts = json.loads(row.key)
            for i, key in keyed:
                if isinstance(parts[i], dict) and len(ids := self.named[key].get(parts[i]["ref"], set())) == 1:
                    parts[i] = next(iter(ids))
            row.key = json.dumps(parts, ensure_ascii=False)

    def _linked(self, submitted: dict[str, Any], issues: list[Issue]) -> dict[str, Any]:
        """`submitted` with each named link as its target's id (an update compares stored ids); a name that finds
        no record or several is the row's issue, as the record service words it."""
        resolved = dict(submitted)
        for key, value in submitted.items():
            if not isinstance(value, LinkRef):
                continue
            ids = self.named.get(key, {}).get(value.text, set())
            if len(ids) == 1:
                resolved[key] = next(iter(ids))
                continue
            target = self.ctx.records.links.forms().get(self.form.fields[key].kind.form)  # type: ignore[attr-defined]
            issues.append(Issue("link_ambiguous" if ids else "link_missing",
                                {"value": value.text, "target": target.title if target else key}, path=key))
        return resolved

    # --- repeats within the file -----------------------------------------------------------------
    def _check_duplicates(self, plans: list[Plan]) -> None:
        """Within the file: the natural key and each unique field; every row of a repeat is reported."""
        for plan in plans:
            for name, value, key in list(self._unique_values(plan)):
                rows = self.known.get(name, {}).get(value)
                if rows is not None:
                    plan.invalidate(self._duplicate(key, value, rows))
                    continue
                seen = self.seen.setdefault(name, {})
                plan.registered.append((name, value))
                if value not in seen:
                    seen[value] = plan
                    continue
                numbers = self.result.duplicates.setdefault(name, {}).setdefault(value, [_number(seen[value])])
                numbers.append(plan.row.number)
                issue = self._duplicate(key, value, numbers)
                plan.invalidate(issue)
                if len(numbers) == 2:
                    self._invalidate_first(name, value, key, issue)

    def settle(self, plans: list[Plan]) -> None:
        """After a batch: its first occurrences are remembered by row number and outcome only."""
        for plan in plans:
            for name, value in plan.registered:
                if self.seen[name].get(value) is plan:
                    self.seen[name][value] = (plan.row.number, plan.action)

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
                entry.invalidate(issue)
            return
        number, action = entry
        if self.write:
            return  # saved by an earlier batch; the preview reports both rows before anything is written
        if action != "invalid":
            self.result.counts[action] -= 1
            self.result.counts["invalid"] += 1
            self.seen[name][value] = (number, "invalid")
        self.reporter.late_error(number, key, issue)

    def _unique_values(self, plan: Plan) -> Iterator[tuple[str, str, str]]:
        if plan.row.key is not None and self.form.natural_key:
            yield "_key", plan.row.key, self.form.natural_key[0]
        if plan.action in ("new", "updated") and plan.write is not None:
            for key in self.ctx.unique_checked:
                value = plan.write.values.get(key)
                if value is not None:
                    yield key, json.dumps(self.form.fields[key].kind.to_json(value), ensure_ascii=False), key


class LevelCells:
    """A row's cells of the levels above the unit (年级 “七年级”) as units.LevelCell: each with the names it stands for —
    the text, and the option of the choice field in its column (or labelled as the level) it is a value, label or
    alias of (七年级 → 初一)."""

    def __init__(self, form: FormSpec, columns: ColumnMap, levels: tuple[OrgLevel, ...],
                 chosen: Mapping[str, Mapping[str, str]]) -> None:
        labels = {level.key: level.label for level in levels}
        self.columns = {key: (labels.get(key, key), index, get_column_letter(index + 1)) for key, index in columns.levels.items()}
        # Per level: the choice fields read from its column, each with the value step's choices for it.
        self.choices: dict[str, list[tuple[ChoiceField, Mapping[str, str]]]] = {}
        for key, (label, index, _letter) in self.columns.items():
            self.choices[key] = [(spec.kind, chosen.get(k, {})) for k, spec in form.fields.items()
                                 if isinstance(spec.kind, ChoiceField)
                                 and (columns.fields.get(k) == index or header_text(spec.label) == header_text(label))]
        self._memo: dict[tuple[str, str], LevelCell] = {}

    def of(self, row: RowInput) -> tuple[LevelCell, ...]:
        return tuple(self._cell(level, text) for level, text in row.unit_within.items() if level in self.columns)

    def _cell(self, level: str, text: str) -> LevelCell:
        found = self._memo.get((level, text))
        if found is None:
            label, _index, letter = self.columns[level]
            names = {comparable(text)}
            for kind, chosen in self.choices[level]:
                value = chosen.get(value_key(text)) or kind.resolve(text)
                for option in kind.options if value is not None else ():
                    if option.value == value:
                        names |= {comparable(option.value), comparable(option.label), *map(comparable, option.aliases)}
            if len(self._memo) > 1_000:
                self._memo.clear()
            found = self._memo[(level, text)] = LevelCell(level, label, text, frozenset(names), letter)
        return found


def _merge_issues(row: RowInput, found: list[Issue]) -> list[Issue]:
    """A cell its type could not read reports that, not a follow-on "required"."""
    unread = {i.path for i in row.issues}
    return [i for i in found if i.path.split(".")[0] not in unread]


def _number(entry: Plan | tuple[int, str]) -> int:
    return entry.row.number if isinstance(entry, Plan) else entry[0]


def _stored_key(specs: list[Any], data: dict[str, Any]) -> str:
    """The natural key of a stored document, in the same JSON form as a row's (renamed keys read through)."""
    parts = []
    for spec in specs:
        stored = stored_value(spec, data)
        parts.append(None if stored is None else spec.kind.to_json(spec.kind.from_json(stored)))
    return json.dumps(parts, ensure_ascii=False)
