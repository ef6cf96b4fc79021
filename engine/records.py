"""Record use cases: list, read, create, update, delete — validated, scoped, audited, never half-written."""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from sqlalchemy import ColumnElement, Connection, bindparam, false, func, insert, or_, select, text, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from engine.documents import read_values, stored_changes, stored_value, write_document
from engine.fields.files import UploadedFile
from engine.issues import Issue
from engine.permissions import Principal, Scope, is_editable, policy, scope
from engine.spec import FieldSpec, FormPolicy, FormSpec
from engine.storage.db import Database, lock_rows
from engine.storage.fieldsql import form_is, index_name, sort_expr, sql_value, value_expr
from engine.storage.models import Attachment, AuditEntry, OrgUnit, Record, utcnow
from engine.storage.statements import Read, Write
from engine.validation import CleanResult, clean_record

PER_PAGE = 20
MAX_SEQUENCE_SKIPS = 10_000
SEQUENCE_SQL = text(
    "INSERT INTO sequences (scope, last_value) VALUES (:scope, 1) "
    "ON CONFLICT (scope) DO UPDATE SET last_value = sequences.last_value + 1 RETURNING last_value"
)
# What a StoredRecord is read from: plain columns, so a read builds no ORM entity.
RECORD_COLUMNS = (
    Record.id, Record.form_key, Record.unit_id, Record.data, Record.revision, Record.created_by, Record.created_at,
    Record.updated_at, Record.def_version, OrgUnit.path.label("unit_path"), OrgUnit.name.label("unit_name"),
)
# The write path's statements, compiled once and run on the driver's cursor (engine/storage/statements.py): building
# and executing them through SQLAlchemy cost more than running them. Bind names differ from column names: SQLAlchemy
# reserves those for the SET clause.
_RECORD = Record.__table__
_UPDATE_RECORD = Write(
    update(_RECORD)
    .where(_RECORD.c.id == bindparam("b_id"), _RECORD.c.revision == bindparam("b_revision"))
    .values(data=bindparam("b_data", type_=_RECORD.c.data.type), revision=_RECORD.c.revision + 1,
            def_version=bindparam("b_version"), updated_by=bindparam("b_user"),
            updated_at=bindparam("b_now", type_=_RECORD.c.updated_at.type))
)
# Only a move names unit_id: SQLite rewrites the entries of every index over a column the SET names.
_MOVE_RECORD = Write(_UPDATE_RECORD.statement.values(unit_id=bindparam("b_unit")))
_INSERT_AUDIT = Write(insert(AuditEntry.__table__))


@dataclass
class StoredRecord:
    id: int
    form_key: str
    unit_id: int
    unit_path: str
    unit_name: str
    data: dict[str, Any]
    values: dict[str, Any]
    revision: int
    created_by: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    def_version: str


@dataclass
class Conflict:
    """What others saved since the revision the user started editing from."""

    entries: list[AuditEntry]
    current_revision: int


@dataclass
class SaveResult:
    record_id: int | None = None
    cleaned: CleanResult | None = None
    issues: list[Issue] = field(default_factory=list)
    conflict: Conflict | None = None

    @property
    def ok(self) -> bool:
        return self.record_id is not None and not self.issues and self.conflict is None


@dataclass(frozen=True)
class PreparedUpdate:
    """An update validated and built from the record at `base_revision`, for RecordService.write_update."""

    form: FormSpec
    principal: Principal
    record_id: int
    base_revision: int
    document: dict[str, Any]
    changes: dict[str, Any]  # what the audit entry records
    unit_id: int | None  # the unit the record moves to, if it moves
    note: str
    cleaned: CleanResult


@dataclass
class Page:
    records: list[StoredRecord]
    total: int
    page: int
    per_page: int
    capped: bool = False  # more than `total` records match; the exact number was not counted

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages or (self.capped and len(self.records) == self.per_page)


@dataclass(frozen=True)
class ListQuery:
    filters: Mapping[str, Any] = field(default_factory=dict)  # field -> stored (JSON) value
    search: str = ""
    sort: str = ""  # field key or "-key"; "" = form default, then newest first
    page: int = 1
    per_page: int = PER_PAGE
    incomplete: bool = False
    # Count at most this many matches (0 = exact): counting every JSON document of a large school
    # costs more than the page itself, and "1000+ 条" tells a person as much.
    count_limit: int = 0


class RecordService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._unscoped: dict[tuple[str, bool | str], Read] = {}

    # --- reading ---------------------------------------------------------------------------------
    def scope_clause(self, reach: Scope, principal: Principal) -> ColumnElement:
        if reach.everything:
            return true()
        parts = []
        if reach.paths:
            units = select(OrgUnit.id).where(or_(*(OrgUnit.path.startswith(p, autoescape=True) for p in sorted(reach.paths))))
            parts.append(Record.unit_id.in_(units))
        if reach.own:
            parts.append(Record.created_by == principal.user_id)
        return or_(*parts) if parts else false()

    def _base(self, form: FormSpec, principal: Principal, action: str) -> Any:
        return (
            select(*RECORD_COLUMNS)
            .join(OrgUnit, OrgUnit.id == Record.unit_id)
            .where(form_is(form.key), self.scope_clause(scope(principal, action, form), principal))
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
        found = policy(principal, form)
        dialect = self.db.dialect
        stmt = self._base(form, principal, "read")
        for key, value in query.filters.items():
            spec = form.fields.get(key)
            if spec is not None and _filterable(found, spec):
                stored = _filter_value(spec, value)
                stmt = stmt.where(false() if stored is None else value_expr(dialect, spec) == sql_value(dialect, stored))
        if query.search.strip():
            term = f"%{query.search.strip()}%"
            searchable = [form.fields[k] for k in form.list.search if _filterable(found, form.fields[k])]
            stmt = stmt.where(or_(*(value_expr(dialect, f).like(term) for f in searchable)) if searchable else false())
        if query.incomplete:
            stmt = stmt.where(self._incomplete_clause(form))
        counted = stmt.with_only_columns(Record.id)
        if query.count_limit:
            counted = counted.limit(query.count_limit + 1)
        total_stmt = select(func.count()).select_from(counted.subquery())
        stmt = stmt.order_by(*self._ordering(form, found, query.sort))
        page = max(1, query.page)
        stmt = stmt.limit(query.per_page).offset((page - 1) * query.per_page)
        with self.db.read() as s:
            total = s.execute(total_stmt).scalar_one()
            rows = s.connection().execute(stmt).all()
        capped = bool(query.count_limit) and total > query.count_limit
        return Page([_stored(form, row) for row in rows], min(total, query.count_limit) if capped else total,
                    page, query.per_page, capped)

    def _ordering(self, form: FormSpec, found: FormPolicy | None, sort: str) -> list[ColumnElement]:
        sort = sort or form.list.default_sort
        key = sort.lstrip("-")
        spec = form.fields.get(key)
        if spec is None or found is None or not _filterable(found, spec):
            return [Record.id.desc()]
        expr = sort_expr(self.db.dialect, spec)
        return [expr.desc() if sort.startswith("-") else expr.asc(), Record.id.desc()]

    def _incomplete_clause(self, form: FormSpec) -> ColumnElement:
        # Unconditionally required fields only: required_if depends on values SQL cannot evaluate.
        checks = []
        for spec in form.fields.values():
            if spec.required and spec.kind.user_input and spec.visible_if is None:
                expr = value_expr(self.db.dialect, spec)
                checks.append(or_(expr.is_(None), expr == ""))
        return or_(*checks) if checks else false()

    def history(self, form: FormSpec, record_id: int) -> list[AuditEntry]:
        with self.db.read() as s:
            return list(s.scalars(
                select(AuditEntry).where(AuditEntry.form_key == form.key, AuditEntry.record_id == record_id)
                .order_by(AuditEntry.id.desc())
            ))

    # --- writing ---------------------------------------------------------------------------------
    def create(self, form: FormSpec, principal: Principal, unit_id: int, submitted: Mapping[str, Any],
               session: DbSession | None = None) -> SaveResult:
        """Validate and insert one record; `submitted` holds only fields this user may write."""
        found = policy(principal, form)
        issues = _foreign_keys(form, found, submitted)
        raw = {key: spec.default for key, spec in form.fields.items()}
        raw.update(submitted)
        cleaned = clean_record(form, raw)
        if issues or not cleaned.ok:
            return SaveResult(cleaned=cleaned, issues=issues + cleaned.issues)
        with _transaction(self.db, session) as s:
            try:
                values = dict(cleaned.values)
                unique = self._generate(s, form, values) + self._unique_issues(s, form, values, None)
                if unique:
                    _abandon(s, session)
                    return SaveResult(cleaned=cleaned, issues=unique)
                # Uploads become attachment references once the record has an id (_store_files, below).
                document = write_document(form, {k: v for k, v in values.items() if not isinstance(v, UploadedFile)}, None)
                record_id = s.execute(insert(Record).values(
                    form_key=form.key, unit_id=unit_id, data=document, def_version=form.version, revision=1,
                    created_by=principal.user_id, updated_by=principal.user_id,
                ).returning(Record.id)).scalar_one()
                document = self._store_files(s, form, record_id, principal, values, document)
                self._audit(s, form, record_id, "create", principal, 1, stored_changes(form, {}, document))
                s.flush()
            except IntegrityError as exc:
                _abandon(s, session)
                return SaveResult(cleaned=cleaned, issues=self._unique_violation(form, exc, cleaned.values))
            if session is None:
                s.commit()
        return SaveResult(record_id=record_id, cleaned=cleaned)

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
                raise LookupError(record_id)
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
        """An update validated and built, not yet written (write_update writes it); or the SaveResult that ends it
        here: issues, a conflict, or nothing to change. `read_only`: `s` may not write (a workflow working out a
        decision before it takes the write lock), so an update that must draw a generated number or store an
        upload first is declined (None)."""
        found = policy(principal, form)
        issues = _foreign_keys(form, found, submitted)
        raw = dict(current.values)
        raw.update(submitted)
        cleaned = clean_record(form, raw)
        if current.revision != base_revision:
            return SaveResult(cleaned=cleaned, issues=issues,
                              conflict=self._conflict(s, form, current.id, base_revision, current.revision))
        if issues or not cleaned.ok:
            return SaveResult(cleaned=cleaned, issues=issues + cleaned.issues)
        values = dict(cleaned.values)
        if read_only and (_to_generate(form, values) or any(isinstance(v, UploadedFile) for v in values.values())):
            return None
        try:
            unique = self._generate(s, form, values) + self._unique_issues(s, form, values, current.id, current.data)
            if unique:
                _abandon(s, caller_session)
                return SaveResult(cleaned=cleaned, issues=unique)
            document = write_document(form, values, current.data)
            document = self._store_files(s, form, current.id, principal, values, document)
        except IntegrityError as exc:
            _abandon(s, caller_session)
            return SaveResult(cleaned=cleaned, issues=self._unique_violation(form, exc, cleaned.values))
        changes = stored_changes(form, current.data, document)
        moved = unit_id is not None and unit_id != current.unit_id
        if moved:
            changes["_unit"] = [current.unit_id, unit_id]
        if not changes:
            return SaveResult(record_id=current.id, cleaned=cleaned)
        return PreparedUpdate(form, principal, current.id, base_revision, document, changes,
                              unit_id if moved else None, note, cleaned)

    def write_update(self, s: DbSession, prepared: PreparedUpdate, caller_session: DbSession | None = None
                     ) -> SaveResult:
        """Write a prepared update with its audit entry, if the record is still at the revision it was built from
        (otherwise a conflict)."""
        form, record_id, base = prepared.form, prepared.record_id, prepared.base_revision
        params = {"b_id": record_id, "b_revision": base, "b_data": prepared.document, "b_version": form.version,
                  "b_user": prepared.principal.user_id, "b_now": utcnow()}
        if prepared.unit_id is not None:
            params["b_unit"] = prepared.unit_id
        try:
            updated = (_UPDATE_RECORD if prepared.unit_id is None else _MOVE_RECORD).run(s.connection(), params)
            if updated != 1:
                _abandon(s, caller_session)
                return SaveResult(cleaned=prepared.cleaned, conflict=self._conflict(s, form, record_id, base, base + 1))
            self._audit(s, form, record_id, "update", prepared.principal, base + 1, prepared.changes, prepared.note)
            s.flush()
        except IntegrityError as exc:
            _abandon(s, caller_session)
            return SaveResult(cleaned=prepared.cleaned, issues=self._unique_violation(form, exc, prepared.cleaned.values))
        return SaveResult(record_id=record_id, cleaned=prepared.cleaned)

    def delete(self, form: FormSpec, principal: Principal, record_id: int) -> bool:
        with self.db.write() as s:
            current = self.get(form, record_id, principal, "delete", session=s)
            if current is None:
                return False
            s.execute(Record.__table__.delete().where(Record.id == record_id))
            # The audit entry keeps the whole document: a deleted archive can be reconstructed.
            self._audit(s, form, record_id, "delete", principal, current.revision + 1,
                        {k: [v, None] for k, v in current.data.items() if v is not None})
            s.commit()
        return True

    # --- helpers ---------------------------------------------------------------------------------
    def _generate(self, s: DbSession, form: FormSpec, values: dict[str, Any]) -> list[Issue]:
        """Fill generated numbers once; an existing number is never recomputed or reused."""
        issues = []
        for key, spec in _to_generate(form, values):
            missing = [name for name in spec.kind.referenced_fields() if values.get(name) is None]
            if missing:
                issues.append(Issue("generated_source", {"source": form.fields[missing[0]].label}, path=key))
                continue
            counter = lambda prefix, k=key: s.execute(SEQUENCE_SQL, {"scope": f"{form.key}:{k}:{prefix}"}).scalar_one()  # noqa: E731
            values[key] = spec.kind.render(values, counter)
            # A number already held (data restored or imported with its numbers) is skipped, not fought over:
            # otherwise the rollback of the failed save would hand the same number to every later save.
            for _ in range(MAX_SEQUENCE_SKIPS):
                if not (spec.unique and spec.kind.has_sequence and self._taken(s, form, spec, values[key])):
                    break
                values[key] = spec.kind.render(values, counter)
        return issues

    def _taken(self, s: DbSession, form: FormSpec, spec: FieldSpec, value: Any) -> bool:
        dialect = self.db.dialect
        stmt = select(Record.id).where(form_is(form.key), value_expr(dialect, spec) == sql_value(dialect, spec.kind.to_json(value)))
        return s.execute(stmt.limit(1)).first() is not None

    def _unique_issues(self, s: DbSession, form: FormSpec, values: Mapping[str, Any], exclude: int | None,
                       previous: Mapping[str, Any] | None = None) -> list[Issue]:
        """A friendly early check; the unique index remains the guarantee under concurrency.

        A value the record (`exclude`, stored as `previous`) already holds is not looked up: the unique index
        already keeps every other record from holding it."""
        issues = []
        dialect = self.db.dialect
        for key, spec in form.fields.items():
            if not spec.unique or values.get(key) is None:
                continue
            stored = spec.kind.to_json(values[key])
            if previous is not None and stored == stored_value(spec, previous):
                continue
            stmt = select(Record.id).where(form_is(form.key), value_expr(dialect, spec) == sql_value(dialect, stored))
            if exclude is not None:
                stmt = stmt.where(Record.id != exclude)
            if s.execute(stmt.limit(1)).first():
                issues.append(Issue("unique", {"value": spec.kind.to_text(values[key])}, path=key))
        return issues

    def _unique_violation(self, form: FormSpec, exc: IntegrityError, values: Mapping[str, Any]) -> list[Issue]:
        message = str(exc.orig)
        for key, spec in form.fields.items():
            if spec.unique and index_name("ux", form.key, spec) in message:
                return [Issue("unique", {"value": spec.kind.to_text(values.get(key))}, path=key)]
        raise exc

    def _store_files(self, s: DbSession, form: FormSpec, record_id: int, principal: Principal,
                     values: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
        changed = False
        for key, value in values.items():
            if isinstance(value, UploadedFile):
                ref = store_attachment(s, form.key, record_id, key, value, principal.user_id)
                values[key] = ref
                document[key] = ref
                changed = True
        if changed:
            s.execute(update(Record).where(Record.id == record_id).values(data=document))
        return document

    def _audit(self, s: DbSession, form: FormSpec, record_id: int, action: str, principal: Principal,
               revision: int, changes: dict[str, Any], note: str = "") -> None:
        _INSERT_AUDIT.run(s.connection(), {
            "form_key": form.key, "record_id": record_id, "action": action, "user_id": principal.user_id,
            "username": principal.username, "revision": revision, "changes": changes, "note": note, "at": utcnow()})

    def _conflict(self, s: DbSession, form: FormSpec, record_id: int, base: int, current: int) -> Conflict:
        entries = list(s.scalars(
            select(AuditEntry).where(AuditEntry.form_key == form.key, AuditEntry.record_id == record_id,
                                     AuditEntry.revision > base).order_by(AuditEntry.id)
        ))
        return Conflict(entries=entries, current_revision=current)


def store_attachment(s: DbSession, form_key: str, record_id: int | None, field_key: str,
                     upload: UploadedFile, user_id: int | None) -> dict[str, Any]:
    attachment_id = uuid.uuid4().hex
    s.add(Attachment(id=attachment_id, form_key=form_key, record_id=record_id, field_key=field_key,
                     filename=upload.filename, content_type=upload.content_type or "application/octet-stream",
                     size=len(upload.data), sha256=hashlib.sha256(upload.data).hexdigest(), content=upload.data,
                     created_by=user_id))
    return {"id": attachment_id, "name": upload.filename, "size": len(upload.data), "type": upload.content_type}


def _to_generate(form: FormSpec, values: Mapping[str, Any]) -> list[tuple[str, FieldSpec]]:
    """Generated fields that have no number yet (RecordService._generate draws one for each)."""
    return [(key, spec) for key, spec in form.fields.items() if not spec.kind.user_input and not values.get(key)]


def _filterable(found: FormPolicy | None, spec: FieldSpec) -> bool:
    """Hidden or masked values must not be probed through filters, search or sort order."""
    if found is None or spec.key in found.hidden:
        return False
    return not (spec.key in found.masked or (spec.sensitive and not found.reveal_sensitive))


def _filter_value(spec: FieldSpec, value: Any) -> Any:
    """Text typed into a filter (a query string) as the stored value: "2021" is 2021 and "true" is true in JSON;
    text the field cannot read matches nothing."""
    if not isinstance(value, str):
        return value
    cleaned, issues = spec.kind.clean(value)
    return None if issues or cleaned is None else spec.kind.to_json(cleaned)


def _foreign_keys(form: FormSpec, found: FormPolicy | None, submitted: Mapping[str, Any]) -> list[Issue]:
    """Submitted keys the form lacks, or that this user may not write, are refused, not ignored."""
    issues = []
    for key in submitted:
        spec = form.fields.get(key)
        if spec is None:
            issues.append(Issue("unknown_field", {"name": key}, path=key))
        elif found is None or not is_editable(found, spec):
            issues.append(Issue("readonly", path=key))
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
