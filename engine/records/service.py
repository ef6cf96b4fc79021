"""Record use cases: list, read, create, update, delete — permitted, scoped, validated, audited, never half-written.

Every use case takes the principal and checks it here: what the roles grant (`can`), which records the scope
reaches, which units a new record may go to, which fields the user may write. Writing is the writer's
(engine/records/writer.py), the one write path for forms, imports and workflow effects.
"""
from __future__ import annotations

import random
from types import MappingProxyType
from typing import Any, Iterator, Mapping

from sqlalchemy import BigInteger, Column, ColumnElement, Connection, any_, bindparam, false, func, literal_column, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.visitors import replacement_traverse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from engine.documents import read_values
from engine.fields.files import UploadedFile
from engine.issues import Issue
from engine.permissions import Principal, Scope, can, is_editable, policy, scope, unit_allowed, writable_keys
from engine.records.model import (
    Conflict, ListQuery, Page, PreparedUpdate, RecordWrite, SaveResult, StoredRecord,
)
from engine.records.figures import figure_values, rank_order, shown_figures, values_for
from engine.records.links import Forms, Links
from engine.records.writer import RecordWriter, Stale
from engine.refusals import NotFound, NotPermitted, UnitNotAllowed
from engine.spec import FieldSpec, FormPolicy, FormSpec
from engine.storage.db import Database, lock_rows
from engine.storage.projection import Projection, projection_of, projection_scope, rows_to_recompute, search_condition
from engine.storage.models import AuditEntry, OrgUnit, Record
from engine.storage.statements import Read
from engine.validation import CleanResult, clean_record

# Past a list's exact-count limit, its count is estimated from this many record ids (see RecordService._estimate);
# fewer than ESTIMATE_HITS matches among them say only "more than the limit".
ESTIMATE_SAMPLE = 4_000
ESTIMATE_HITS = 40
STREAM_CHUNK = 1_000  # records an export reads at a time
# SQLite list pages (RecordService._walk_sort_index): index entries a page may walk in sort order, and matches
# sorted at most instead of walking.
WALK_BUDGET = 50_000
SORT_BUDGET = 10_000


def form_is(form_key: str) -> ColumnElement:
    # A literal, not a parameter: the records indexes lead with form_key, and SQLite plans with the value.
    return Record.form_key == literal_column(f"'{form_key}'")


# What a StoredRecord is read from: plain columns, so a read builds no ORM entity.
RECORD_COLUMNS = (
    Record.id, Record.form_key, Record.unit_id, Record.data, Record.revision, Record.created_by, Record.created_at,
    Record.updated_at, Record.def_version, OrgUnit.path.label("unit_path"), OrgUnit.name.label("unit_name"),
)

class RecordService:
    def __init__(self, db: Database, forms: Forms = lambda: MappingProxyType({})) -> None:
        """`forms`: the current definitions' forms (they change on reload), for what one form's records say about
        another's: links."""
        self.db = db
        self.writer = RecordWriter(db.dialect, forms)
        self.links = Links(db.dialect, forms)
        self._unscoped: dict[tuple[str, bool | str], Read] = {}
        self.org_tree: Any = None  # the app's kept org tree (engine/org.py OrgTree), when there is one

    # --- reading ---------------------------------------------------------------------------------
    def scope_clause(self, reach: Scope, principal: Principal, form: FormSpec | None = None) -> ColumnElement:
        """`reach` over the records table (`form`: whose records, for a linked scope over a child form's link)."""
        if reach.everything:
            return true()
        parts = []
        if reach.paths:
            units = select(OrgUnit.id).where(or_(*(OrgUnit.path.startswith(p, autoescape=True) for p in sorted(reach.paths))))
            parts.append(Record.unit_id.in_(units))
        if reach.own:
            parts.append(Record.created_by == principal.user_id)
        if reach.records and not reach.record_key:
            parts.append(Record.id.in_(sorted(reach.records)))
        elif reach.records:  # child records: the link to their parent is in the projection
            if form is not None and reach.record_key in form.fields:
                table = projection_of(form, self.db.dialect).table
                parts.append(Record.id.in_(select(table.c.record_id).where(table.c[f"f_{reach.record_key}"].in_(sorted(reach.records)))))
        return or_(*parts) if parts else false()

    def read_query(self, form: FormSpec, principal: Principal, action: str) -> Any:
        """The records of `form` this principal's scope for `action` reaches, as StoredRecord columns (a query to
        narrow further; `stored_rows` turns its rows into StoredRecords)."""
        return self._base(form, principal, action)

    def taken(self, principal: Principal, form: FormSpec, values: Mapping[str, Any], record_id: int | None = None,
              keys: Any = None) -> list[Issue]:
        """The typed unique values (of `keys`, default all) another record already holds, as the issues a save would
        give, for an inline check before saving. `holder` names that record's id when the principal may read it (so
        the page can link it); a record out of reach stays unnamed."""
        issues: list[Issue] = []
        wanted = [(k, spec) for k, spec in form.fields.items() if spec.unique and spec.user_input
                  and not spec.kind.has_sequence and values.get(k) is not None and (keys is None or k in keys)]
        if not wanted:
            return issues
        with self.db.read() as s:
            for key, spec in wanted:
                value = values[key]
                holders = {i for found in self.writer.holders(s, form, spec, [value]).values() for i in found} - {record_id}
                if not holders:
                    continue
                readable = [row.id for row in s.execute(self._base(form, principal, "read").where(Record.id.in_(holders)))]
                params: dict[str, Any] = {"value": spec.kind.to_text(value)}
                if readable:
                    params["holder"] = min(readable)
                issues.append(Issue("unique", params, path=key))
        return issues

    def stored_rows(self, form: FormSpec, rows: Any) -> list[StoredRecord]:
        return [_stored(form, row) for row in rows]

    def _base(self, form: FormSpec, principal: Principal, action: str) -> Any:
        return (
            select(*RECORD_COLUMNS)
            .join(OrgUnit, OrgUnit.id == Record.unit_id)
            .where(form_is(form.key), self.scope_clause(scope(principal, action, form), principal, form))
        )

    def get(self, form: FormSpec, record_id: int, principal: Principal, action: str = "read",
            session: DbSession | None = None, lock: bool = False) -> StoredRecord | None:
        """The record if it exists AND the user's scope for `action` reaches it; otherwise None (a 404).

        `lock` (in a write `session`): the record's row is locked until the transaction ends (PostgreSQL;
        SQLite's write transaction holds the database already)."""
        if session is not None:
            return self._get(form, record_id, principal, action, session.connection(), session if lock else None)
        with self.db.single() as connection:
            return self._get(form, record_id, principal, action, connection, None)

    def _get(self, form: FormSpec, record_id: int, principal: Principal, action: str, connection: Connection,
             locking: DbSession | None) -> StoredRecord | None:
        """`get` on `connection`; `locking`: the write session whose transaction locks the row (None: no lock).
        Core execution: the columns need no ORM loading."""
        if scope(principal, action, form).everything:
            reader = self._get_any(form.key, locking is not None)
            if locking is not None:
                reader = lock_rows(locking, self._get_any(form.key, "nowait"), reader)
            row = reader.first(connection, {"b_id": record_id})
        else:
            query = self._base(form, principal, action).where(Record.id == record_id)
            if locking is not None:
                query = lock_rows(locking, query.with_for_update(of=Record, nowait=True), query.with_for_update(of=Record))
            row = connection.execute(query).first()
        return _stored(form, row) if row else None

    def _get_any(self, form_key: str, lock: bool | str) -> Read:
        """`get` for a scope that reaches everywhere (the workflow's effects, admins), compiled once per form and
        `lock`: False, True (FOR UPDATE) or "nowait" (FOR UPDATE NOWAIT)."""
        reader = self._unscoped.get((form_key, lock))
        if reader is None:
            query = (select(*RECORD_COLUMNS).join(OrgUnit, OrgUnit.id == Record.unit_id)
                     .where(form_is(form_key), Record.id == bindparam("b_id")))
            if lock:
                query = query.with_for_update(of=Record, nowait=lock == "nowait")
            reader = self._unscoped[(form_key, lock)] = Read(query)
        return reader

    def list(self, form: FormSpec, principal: Principal, query: ListQuery) -> Page:
        """A page of the records the principal may read, filtered, searched and sorted on the form's projection
        (engine/storage/projection.py): typed columns with indexes of their own, never the JSON documents."""
        with self.db.read() as s:
            projection, conditions = self.conditions(s, form, principal, query)
            return self._page(s, form, policy(principal, form), projection, conditions, query)

    def conditions(self, s: DbSession, form: FormSpec, principal: Principal, query: ListQuery) -> tuple[Projection, list[Any]]:
        """The WHERE of a list over the form's projection table: the principal's read scope, then what `query`
        asks (filters, ranges, empty fields, search, incomplete, a unit's subtree). Fields the principal may not
        probe (hidden, masked) are ignored. A report's drill-down and an export select with the same."""
        found = policy(principal, form)
        projection = projection_of(form, self.db.dialect)
        table = projection.table
        conditions = [projection_scope(table, scope(principal, "read", form), principal)]
        probed = {key: form.fields[key] for key in (*query.filters, *query.ranges, *query.empty)
                  if key in form.fields and _filterable(found, form.fields[key])}
        for key, value in query.filters.items():
            if key in probed:
                conditions.append(self._compared(projection, probed[key], value, "eq"))
        for key, (low, high) in query.ranges.items():
            if key in probed:
                conditions += [self._compared(projection, probed[key], bound, op)
                               for bound, op in ((low, "ge"), (high, "lt")) if bound not in (None, "")]
        conditions += [projection.column(key).is_(None) for key in query.empty if key in probed]
        if query.search.strip():
            keys = [k for k in form.list.search if _filterable(found, form.fields[k])]
            conditions.append(search_condition(projection, self.db.dialect, keys, query.search))
        if query.incomplete:
            conditions.append(table.c.incomplete.is_(True))
        if query.unit is not None:
            path = s.scalar(select(OrgUnit.path).where(OrgUnit.id == query.unit))
            conditions.append(false() if path is None else projection_scope(table, Scope(paths=frozenset({path})), principal))
        return projection, conditions

    def matching_ids(self, form: FormSpec, principal: Principal, query: ListQuery, limit: int) -> list[int]:
        """The ids of the records a list shows, in its order, at most `limit` + 1 of them (one more than an
        export may hold says it holds too many): one query over the projection, no OFFSET pages."""
        with self.db.read() as s:
            projection, conditions = self.conditions(s, form, principal, query)
            ordered = (select(projection.table.c.record_id).where(*conditions)
                       .order_by(*self._ordering(form, policy(principal, form), projection, query.sort)).limit(limit + 1))
            return list(s.execute(ordered).scalars())

    def stream(self, form: FormSpec, ids: list[int], principal: Principal | None = None,
               chunk: int = STREAM_CHUNK) -> Iterator[StoredRecord]:
        """The records of `ids` (from matching_ids: the principal's), in that order, read `chunk` at a time, each
        chunk in its own short read: an export's memory is one chunk of documents, however many rows it has.
        With `principal`, links read as their targets' titles for that principal (`titled`)."""
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            with self.db.single() as connection:
                rows = connection.execute(select(*RECORD_COLUMNS).join(OrgUnit, OrgUnit.id == Record.unit_id)
                                          .where(Record.id.in_(part))).all()
            by_id = {row.id: row for row in rows}
            records = [_stored(form, by_id[i]) for i in part if i in by_id]
            yield from (self.titled(principal, form, records) if principal is not None else records)

    @staticmethod
    def _compared(projection: Projection, spec: FieldSpec, value: Any, op: str) -> ColumnElement:
        """The field's column compared with a value typed into a query string (read by the field's own type);
        a value the type cannot read matches nothing."""
        typed = _filter_value(spec, value)
        if typed is None:
            return false()
        column, sql_value = projection.column(spec.key), projection.fields[spec.key].to_sql(typed)
        if sql_value is None:
            return false()
        return column == sql_value if op == "eq" else column >= sql_value if op == "ge" else column < sql_value

    def _page(self, s: DbSession, form: FormSpec, found: FormPolicy | None, projection: Projection,
              conditions: list[Any], query: ListQuery) -> Page:
        table = projection.table
        matching = select(table.c.record_id).where(*conditions)
        counted = matching.limit(query.count_limit + 1) if query.count_limit else matching
        page = max(1, query.page)
        ordering = self._ordering(form, found, projection, query.sort)
        total = s.execute(select(func.count()).select_from(counted.subquery())).scalar_one()
        if self.db.dialect == "sqlite" and self._walk_sort_index(s, projection, total, page * query.per_page):
            matching = select(table.c.record_id).where(*_unindexed(table, conditions))
        ordered = matching.order_by(*ordering)
        ids = list(s.execute(ordered.limit(query.per_page).offset((page - 1) * query.per_page)).scalars())
        rows = s.connection().execute(select(*RECORD_COLUMNS).join(OrgUnit, OrgUnit.id == Record.unit_id)
                                      .where(Record.id.in_(ids))).all() if ids else []
        by_id = {row.id: row for row in rows}
        capped = bool(query.count_limit) and total > query.count_limit
        estimated = False
        if capped:
            estimate = self._estimate(s, projection, conditions)
            if estimate is not None and estimate[1]:  # the sample was the whole id range: an exact count
                total, capped = estimate[0], False
            elif estimate is not None and estimate[0] > query.count_limit:
                total, estimated = estimate[0], True
            else:
                total = query.count_limit
        return Page([_stored(form, by_id[i]) for i in ids if i in by_id], total, page, query.per_page, capped, estimated)

    @staticmethod
    def _walk_sort_index(s: DbSession, projection: Projection, matches: int, through: int) -> bool:
        """SQLite: whether a page should walk the sort column's index (checking scope and filters row by row) rather
        than take the matches through the scope's or a filter's index and sort them all. SQLite's planner takes a
        range over `unit_path` for selective even when it holds half the table (a bureau's district): 500,000 rows
        sorted to show 20. Walking the sort index reads about `through` × rows / matches entries; it is chosen when
        that is at most WALK_BUDGET, or when the matches are too many to sort cheaply (past SORT_BUDGET)."""
        if matches <= SORT_BUDGET // 10:
            return False
        table = projection.table
        low, high = s.execute(select(func.min(table.c.record_id), func.max(table.c.record_id))).one()
        width = (high - low + 1) if low is not None else 0
        return matches > SORT_BUDGET or through * width / max(matches, 1) <= WALK_BUDGET

    @staticmethod
    def _estimate(s: DbSession, projection: Projection, conditions: list[Any]) -> tuple[int, bool] | None:
        """How many rows match, from a sample of record ids: ESTIMATE_SAMPLE ids spread evenly (stratified, from a
        fixed seed, so that flipping pages shows the same figure) over the table's id range are looked up by
        primary key with the list's conditions; the share that matched times the range's width is the estimate,
        rounded to two significant figures. The same on both databases, with no reliance on the planner's
        statistics (which assume filters independent: 年级 and 入学年份 are not). Returns (count, exact): exact when
        the range is no wider than the sample (every id was looked at); None when fewer than ESTIMATE_HITS ids
        matched (too few to say more than "over the limit")."""
        table = projection.table
        low, high = s.execute(select(func.min(table.c.record_id), func.max(table.c.record_id))).one()
        if low is None:
            return 0, True
        width = high - low + 1
        if width <= ESTIMATE_SAMPLE:
            return s.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one(), True
        rng = random.Random(width)
        sample = sorted({low + int((i + rng.random()) * width / ESTIMATE_SAMPLE) for i in range(ESTIMATE_SAMPLE)})
        if s.get_bind().dialect.name == "postgresql":  # one array parameter: 4,000 placeholders cost more to plan
            sampled = table.c.record_id == any_(bindparam("b_sample", type_=ARRAY(BigInteger)))
        else:
            sampled = table.c.record_id.in_(bindparam("b_sample", expanding=True))
        hits = s.execute(select(func.count()).select_from(table).where(sampled, *conditions),
                         {"b_sample": sample}).scalar_one()
        if hits < ESTIMATE_HITS:
            return None
        estimate = hits * width / len(sample)
        digits = max(0, len(str(int(estimate))) - 2)
        return int(round(estimate, -digits)), False

    def _ordering(self, form: FormSpec, found: FormPolicy | None, projection: Projection, sort: str) -> list[ColumnElement]:
        """The chosen sort, then the record id in the same direction: a page walks the sort column's index (which
        holds the id after the value) in one direction, instead of sorting every match."""
        record_id = projection.table.c.record_id
        sort = sort or form.list.default_sort
        key = sort.lstrip("-")
        by_rank = rank_order(form, key)
        if by_rank is not None and any(f.key == key for f in shown_figures(form, found)):
            number, descending = by_rank  # rank 1 first is the highest number first
            sort = ("-" if descending != sort.startswith("-") else "") + number
            key = number
        spec = form.fields.get(key)
        if spec is None or found is None or not _filterable(found, spec):
            return [record_id.desc()]
        column = projection.column(key)
        if self.db.dialect == "postgresql":  # empty values sort as the smallest, as SQLite has them (and the index)
            return [column.desc().nulls_last(), record_id.desc()] if sort.startswith("-") else [column.asc().nulls_first(), record_id.asc()]
        return [column.desc(), record_id.desc()] if sort.startswith("-") else [column.asc(), record_id.asc()]

    def history(self, form: FormSpec, record_id: int) -> list[AuditEntry]:
        with self.db.read() as s:
            return list(s.scalars(
                select(AuditEntry).where(AuditEntry.form_key == form.key, AuditEntry.record_id == record_id)
                .order_by(AuditEntry.id.desc())
            ))

    # --- writing ---------------------------------------------------------------------------------------------
    def create(self, form: FormSpec, principal: Principal, unit_id: int | None, submitted: Mapping[str, Any],
               session: DbSession | None = None, note: str = "") -> SaveResult:
        """Validate and insert one record in `unit_id` (a child form's record goes to its parent's unit, whatever
        is given); `submitted` holds only fields this user may write."""
        if not can(principal, "create", form):
            raise NotPermitted()
        found = policy(principal, form)
        issues = _foreign_keys(form, found, submitted, new=True)
        raw = {key: spec.default for key, spec in form.fields.items()}
        raw.update(submitted)
        cleaned = clean_record(form, raw, writable=writable_keys(found, form) if found else frozenset())
        with _transaction(self.db, session) as s:
            if not form.parent_field:
                self._check_unit(s, form, principal, "create", unit_id)  # type: ignore[arg-type]
            if issues or not cleaned.ok:
                return SaveResult(cleaned=cleaned, issues=issues + cleaned.issues)
            write = RecordWrite(form, cleaned, unit_id=unit_id, submitted=submitted, note=note)
            self._verify(s, principal, form, [write])
            if form.parent_field and not write.failed:
                self._check_unit(s, form, principal, "create", write.unit_id)  # type: ignore[arg-type]
            result = self._write_one(s, principal, write, session)
            if result.ok and session is None:
                s.commit()
        return result

    def update(self, form: FormSpec, principal: Principal, record_id: int, submitted: Mapping[str, Any],
               base_revision: int, unit_id: int | None = None, session: DbSession | None = None,
               note: str = "", current: StoredRecord | None = None) -> SaveResult:
        """Validate and save changes made from `base_revision`; a newer revision means a conflict.

        `current`: the record as the caller has just read it with `get(..., "update", session=session)` for
        this principal (a workflow's effect reads and locks it first); it is not read a second time."""
        with _transaction(self.db, session) as s:
            if current is None or session is None:
                current = self.get(form, record_id, principal, "update", session=s)
            if current is None:
                raise NotFound()
            prepared = self.prepare_update(s, form, principal, current, submitted, base_revision, unit_id, note,
                                           caller_session=session)
            if isinstance(prepared, SaveResult):
                return prepared
            assert prepared is not None  # only a read-only preparation declines
            result = self.write_update(s, prepared, caller_session=session)
            if result.ok and session is None:
                s.commit()
        return result

    def prepare_update(self, s: DbSession, form: FormSpec, principal: Principal, current: StoredRecord,
                       submitted: Mapping[str, Any], base_revision: int, unit_id: int | None = None, note: str = "",
                       caller_session: DbSession | None = None, read_only: bool = False
                       ) -> PreparedUpdate | SaveResult | None:
        """An update validated, not yet written (write_update writes it); or the SaveResult that ends it here:
        issues or a conflict. `current` must have been read for this principal's "update" scope. `read_only`: `s`
        may not write (a workflow working out a decision before it takes the write lock), so an update that must
        draw a generated number or store an upload first is declined (None)."""
        if not can(principal, "update", form):
            raise NotPermitted()
        if unit_id is not None and unit_id != current.unit_id:
            self._check_unit(s, form, principal, "update", unit_id)
        issues = _foreign_keys(form, policy(principal, form), submitted)
        raw = dict(current.values)
        raw.update(submitted)
        cleaned = clean_record(form, raw)
        if current.revision != base_revision:
            return SaveResult(cleaned=cleaned, issues=issues,
                              conflict=self._conflict(s, form, current.id, base_revision, current.revision))
        if issues or not cleaned.ok:
            return SaveResult(cleaned=cleaned, issues=issues + cleaned.issues)
        write = RecordWrite(form, cleaned, unit_id=unit_id, current=current, base_revision=base_revision, note=note,
                            submitted=submitted)
        if read_only and (self.writer.to_number(write) or any(isinstance(v, UploadedFile) for v in write.values.values())):
            return None
        self._verify(s, principal, form, [write])
        if write.issues:
            _abandon(s, caller_session)
            return SaveResult(cleaned=cleaned, issues=write.issues)
        if form.parent_field and write.moves:  # linked to another parent: it goes where that parent is
            self._check_unit(s, form, principal, "update", write.unit_id)  # type: ignore[arg-type]
        return PreparedUpdate(principal, write)

    def write_update(self, s: DbSession, prepared: PreparedUpdate, caller_session: DbSession | None = None
                     ) -> SaveResult:
        """Write a prepared update with its audit entry, if the record is still at the revision it was built from
        (otherwise a conflict)."""
        return self._write_one(s, prepared.principal, prepared.write, caller_session)

    def write_batch(self, s: DbSession, principal: Principal, form: FormSpec, writes: list[RecordWrite]) -> list[RecordWrite]:
        """Many validated writes of one form in the caller's transaction (an import batch): checked as single saves
        are, then written at once. Should the database refuse the batch (a unique value or a record changed since
        the check), each write is made again on its own, in a SAVEPOINT, so that only the refused ones fail (their
        `issues` or `conflict` say why). Returns the writes written."""
        self.check_batch(s, principal, form, writes)
        pending = [w for w in writes if not w.failed]
        try:
            with s.begin_nested():
                return self.writer.write(s, principal, pending)
        except (IntegrityError, Stale):
            pass
        written = []
        for write in pending:
            write.reset()
            savepoint = s.begin_nested()
            try:
                done = self.writer.write(s, principal, [write])
            except IntegrityError as exc:
                savepoint.rollback()
                write.issues += self._taken(s, write, exc)
                continue
            except Stale:
                savepoint.rollback()
                write.conflict = True
                continue
            except BaseException:
                savepoint.rollback()
                raise
            savepoint.commit()
            written += done
        return written

    def check_batch(self, s: DbSession, principal: Principal, form: FormSpec, writes: list[RecordWrite]) -> None:
        """What write_batch checks before it writes, for a dry run too: the actions the principal's roles grant, the
        fields they may write, the scope of each updated record, the units records go to, unique values. A refusal
        of the whole batch is raised; a write's own problem becomes its issue."""
        found = policy(principal, form)
        for action in {"create" if w.is_new else "update" for w in writes}:
            if not can(principal, action, form):
                raise NotPermitted()
        keys = {key for w in writes for key in w.submitted}
        refused = {issue.path: issue for issue in _foreign_keys(form, found, dict.fromkeys(keys))}
        reach = scope(principal, "update", form)
        for w in writes:
            if w.failed:
                continue
            w.issues += [refused[k] for k in w.submitted if k in refused]
            if w.current is not None and not reach.contains(w.current.unit_path, w.current.created_by, principal.user_id, w.current):
                w.issues.append(Issue("not_found"))
        self.links.check(s, principal, form, writes)
        self._place_children(s, form, writes)
        units: dict[tuple[str, int], bool] = {}
        for w in writes:
            if w.failed:
                continue
            target = w.unit_id if w.is_new or w.moves else None
            if target is not None:
                action = "create" if w.is_new else "update"
                allowed = units.get((action, target))
                if allowed is None:
                    allowed = units[(action, target)] = self._unit_allowed(s, form, principal, action, target)
                if not allowed:
                    w.issues.append(Issue("unit_not_allowed", {"unit_label": form.unit_label}))
        for w in writes:
            if not w.failed:
                w.issues += self.writer.number_sources(w)
        self.writer.check_unique(s, form, writes)

    def _verify(self, s: DbSession, principal: Principal, form: FormSpec, writes: list[RecordWrite]) -> None:
        """What only the database can tell about validated writes: links to records that exist and that the user
        may see (named ones resolved to ids), a child record's unit (its parent's), then unique values."""
        self.links.check(s, principal, form, writes)
        self._place_children(s, form, writes)
        self.writer.check_unique(s, form, writes)

    def _place_children(self, s: DbSession, form: FormSpec, writes: list[RecordWrite]) -> None:
        """A child form's records sit in their parent record's unit: set (new) or moved (a changed parent)."""
        if not form.parent_field:
            return
        parents = {w.values.get(form.parent_field) for w in writes if not w.failed}
        places = self.links.units_of(s, form.parent_form, {p for p in parents if isinstance(p, int)})
        for w in writes:
            parent = w.values.get(form.parent_field)
            if not w.failed and parent in places:
                w.unit_id = places[parent]

    def titled(self, principal: Principal, form: FormSpec, records: list[StoredRecord]) -> list[StoredRecord]:
        """The records with each link shown as its target's title, as this principal may see it (engine/records/
        links.py); returned for chaining."""
        if any(spec.kind.name == "link" for spec in form.fields.values()):
            with self.db.read() as s:
                self.links.titled(s, principal, form, records)
        return records

    def recomputing(self, form: FormSpec) -> int:
        """Records of the form still to recompute in the background after a definition change (0: none), which its
        list tells its readers: until then their computed values, filters and sorts follow the old definition."""
        return rows_to_recompute(self.db, form.key)

    def figured(self, principal: Principal, form: FormSpec, records: list[StoredRecord]) -> list[StoredRecord]:
        """The records with the figures across records (ranks, group averages …) this principal may see
        (engine/records/figures.py); returned for chaining."""
        shown = shown_figures(form, policy(principal, form))
        if shown and records:
            with self.db.single() as connection:
                values_for(records, figure_values(connection, projection_of(form, self.db.dialect), shown,
                                                  [r.id for r in records]))
        return records

    def link_titles(self, principal: Principal, form: FormSpec, ids: set[int], display: tuple[str, ...] = ()) -> dict[int, Any]:
        """How links to these records of `form` read for this principal (a link picker's options)."""
        with self.db.read() as s:
            return self.links.titles(s, principal, form, ids, display)

    def delete(self, form: FormSpec, principal: Principal, record_id: int) -> bool:
        if not can(principal, "delete", form):
            raise NotPermitted()
        with self.db.write() as s:
            current = self.get(form, record_id, principal, "delete", session=s)
            if current is None:
                return False
            self.links.refuse_if_linked(s, form, record_id)
            self.writer.delete(s, principal, form, record_id, current.revision, current.data)
            s.commit()
        return True

    # --- helpers -------------------------------------------------------------------------------------------
    def _write_one(self, s: DbSession, principal: Principal, write: RecordWrite, caller_session: DbSession | None) -> SaveResult:
        if write.issues:
            _abandon(s, caller_session)
            return SaveResult(cleaned=write.cleaned, issues=write.issues)
        try:
            self.writer.write(s, principal, [write])
        except IntegrityError as exc:
            _abandon(s, caller_session)
            if caller_session is not None:  # its transaction is the caller's to roll back first
                return SaveResult(cleaned=write.cleaned, issues=[self.writer.unique_violation(write.form, exc, write.values)])
            issues = self._taken(s, write, exc)
            s.rollback()
            return SaveResult(cleaned=write.cleaned, issues=issues)
        except Stale:
            _abandon(s, caller_session)
            current = write.base_revision + 1
            return SaveResult(cleaned=write.cleaned,
                              conflict=self._conflict(s, write.form, write.record_id, write.base_revision, current))
        if write.issues:  # a generated number whose source is empty
            _abandon(s, caller_session)
            return SaveResult(cleaned=write.cleaned, issues=write.issues)
        return SaveResult(record_id=write.record_id, cleaned=write.cleaned)

    def _taken(self, s: DbSession, write: RecordWrite, exc: IntegrityError) -> list[Issue]:
        """What a unique index refused, as the user's issues. Once the refused statement is rolled back, every
        unique value the concurrent save took is looked up again, so that the typed field is named (身份证号), not
        only the one the database happened to check first (学籍号, made from it)."""
        issue = self.writer.unique_violation(write.form, exc, write.values)
        probe = RecordWrite(write.form, write.cleaned, unit_id=write.unit_id, current=write.current,
                            base_revision=write.base_revision)
        self.writer.check_unique(s, write.form, [probe])
        # Not seen again (the concurrent save is not visible to this read yet): a number made from unique typed
        # values (学籍号 = G + 身份证号) is taken because they are; name those, as the early check would.
        return probe.issues or self.writer.typed_sources(write.form, issue, write.values)

    def _check_unit(self, s: DbSession, form: FormSpec, principal: Principal, action: str, unit_id: int) -> None:
        if not self._unit_allowed(s, form, principal, action, unit_id):
            raise UnitNotAllowed(unit_label=form.unit_label)

    @staticmethod
    def _unit_allowed(s: DbSession, form: FormSpec, principal: Principal, action: str, unit_id: int) -> bool:
        unit = s.execute(select(OrgUnit.path, OrgUnit.level).where(OrgUnit.id == unit_id)).first()
        return unit is not None and unit_allowed(principal, form, action, unit.path, unit.level)

    def _conflict(self, s: DbSession, form: FormSpec, record_id: int, base: int, current: int) -> Conflict:
        entries = list(s.scalars(
            select(AuditEntry).where(AuditEntry.form_key == form.key, AuditEntry.record_id == record_id,
                                     AuditEntry.revision > base).order_by(AuditEntry.id)
        ))
        return Conflict(entries=entries, current_revision=current)


def _unindexed(table: Any, conditions: list[Any]) -> list[Any]:
    """The conditions with the projection's columns (other than the record id) written `+column`: SQLite then uses
    no index for them, and a page sorted by a column walks that column's index instead."""
    def plain(element: Any) -> Any:
        if isinstance(element, Column) and element.table is table and element.name != "record_id":
            return literal_column(f'+"{table.name}"."{element.name}"', type_=element.type)
        return None

    return [replacement_traverse(condition, {}, plain) for condition in conditions]


def _filterable(found: FormPolicy | None, spec: FieldSpec) -> bool:
    """Hidden or masked values must not be probed through filters, search or sort order."""
    if found is None or spec.key in found.hidden:
        return False
    return not (spec.key in found.masked or (spec.sensitive and not found.reveal_sensitive))


def _filter_value(spec: FieldSpec, value: Any) -> Any:
    """Text typed into a filter (a query string) as the field's value: "2021" is 2021 and "true" is True; text the
    field cannot read matches nothing (None)."""
    if not isinstance(value, str):
        return value
    if spec.kind.name == "link":  # a link is filtered by the linked record's id (a child panel's "查看全部")
        return int(value) if value.isascii() and value.isdigit() and 0 < len(value) < 19 else None
    cleaned, issues = spec.kind.clean(value)
    return None if issues else cleaned


def _foreign_keys(form: FormSpec, found: FormPolicy | None, submitted: Mapping[str, Any], new: bool = False) -> list[Issue]:
    """Submitted keys the form lacks, or that this user may not write, are refused, not ignored (on a new record
    "不能由您填写", not "不可修改": there is nothing yet to change)."""
    issues = []
    for key in submitted:
        spec = form.fields.get(key)
        if spec is None:
            issues.append(Issue("unknown_field", {"name": key}, path=key))
        elif found is None or not is_editable(found, spec):
            issues.append(Issue("not_writable" if new else "readonly", path=key))
    return issues


def _stored(form: FormSpec, row: Any) -> StoredRecord:
    """A row of RECORD_COLUMNS as a StoredRecord."""
    return StoredRecord(
        id=row.id, form_key=row.form_key, unit_id=row.unit_id, unit_path=row.unit_path, unit_name=row.unit_name,
        data=dict(row.data or {}), values=read_values(form, row.data or {}), revision=row.revision,
        created_by=row.created_by, created_at=row.created_at, updated_at=row.updated_at,
        def_version=row.def_version,
    )


def _abandon(s: DbSession, caller_session: DbSession | None) -> None:
    """Undo a failed save. In a caller's session (an import batch) the caller rolls back its own
    SAVEPOINT: Session.rollback() would discard the whole outer transaction, every earlier row included."""
    if caller_session is None:
        s.rollback()


class _transaction:
    """Use the caller's session (a larger unit of work such as an import batch) or open a write one."""

    def __init__(self, db: Database, session: DbSession | None) -> None:
        self.db, self.session, self.own = db, session, session is None

    def __enter__(self) -> DbSession:
        if self.own:
            self.session = self.db.write()
        return self.session  # type: ignore[return-value]

    def __exit__(self, *exc: Any) -> None:
        if self.own and self.session is not None:
            self.session.close()
