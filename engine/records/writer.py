"""The one write path: every save of a record — a web form, an import batch, a workflow effect — goes through
`RecordWriter.write`, one record or many at once.

What a save does, in order: draw generated numbers (one sequence block per scope, skipping numbers already held),
build the stored document and the audit changes, store uploads as attachments, INSERT new records under ids
reserved up front and UPDATE changed ones guarded by the revision they were read at, then write the audit entries.
Many records take the same statements as one, each run once with all their rows (executemany).

The writer checks nothing about who writes: RecordService does that before it hands writes over. Should the
database refuse a write (a unique value taken meanwhile: IntegrityError; a record changed meanwhile: Stale), the
exception leaves `write` and the caller rolls back: a single save reports it, an import batch writes its rows again
one at a time, each in a SAVEPOINT of its own.
"""
from __future__ import annotations

import hashlib
import uuid
from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import bindparam, insert, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from engine.documents import stored_changes, stored_value, write_document
from engine.fields.files import UploadedFile
from engine.fields.generated import SequenceExhausted
from engine.issues import Issue
from engine.permissions import Principal
from engine.records.model import RecordWrite
from engine.spec import FieldSpec, FormSpec
from engine.storage.projection import Projection, ProjectionRows, projection_of, unit_places
from engine.storage.models import Attachment, AuditEntry, Record, utcnow
from engine.storage.statements import Write

# One UPDATE per scope reserves a block of numbers: `n` of them, the last one returned.
BLOCK_SQL = text(
    "INSERT INTO sequences (scope, last_value) VALUES (:scope, :n) "
    "ON CONFLICT (scope) DO UPDATE SET last_value = sequences.last_value + :n RETURNING last_value"
)
# A number already held (data restored or imported with its numbers) is skipped, not fought over: otherwise the
# rollback of the failed save would hand the same number to every later save. This bounds the skipping.
MAX_SEQUENCE_SKIPS = 10_000

_RECORD = Record.__table__
_INSERT_RECORDS = Write(insert(_RECORD))
# Bind names differ from column names: SQLAlchemy reserves those for the SET clause.
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
_ROWS = ProjectionRows()


def _render(w: RecordWrite, key: str, draw: Any) -> None:
    """The write's generated value of `key`, with the sequence number `draw` gives; a number past the declared
    width is the write's issue ("编号已用完"), not a longer number."""
    try:
        w.values[key] = w.form.fields[key].kind.render(w.values, draw)
    except SequenceExhausted as exc:
        w.issues.append(Issue("sequence_exhausted", {"prefix": f"“{exc.prefix}”" if exc.prefix else "",
                                                     "limit": f"{exc.limit:,}"}, path=key))


class Stale(Exception):
    """An UPDATE found its record at another revision than the one it was built from: someone saved meanwhile."""


class RecordWriter:
    def __init__(self, dialect: str, forms: Callable[[], Mapping[str, FormSpec]] = lambda: {}) -> None:
        """`forms`: the current forms, for the child forms whose records follow a record that moves."""
        self.dialect, self.forms = dialect, forms

    # --- before writing: checks a dry run makes too --------------------------------------------------------
    def check_unique(self, s: DbSession, form: FormSpec, writes: Iterable[RecordWrite]) -> None:
        """Typed unique values against other records: one lookup per field for all `writes`; a value taken adds an
        issue to its write. A friendly early check: the unique index stays the guarantee under concurrency. A value
        the record already holds is not looked up (the index keeps every other record from holding it)."""
        pending = [w for w in writes if not w.failed]
        for key, spec in form.fields.items():
            if not spec.unique or spec.kind.has_sequence:
                continue
            wanted: list[tuple[RecordWrite, Any]] = []
            sources = set(spec.kind.referenced_fields())
            for w in pending:
                value = w.values.get(key) or _rendered(spec, w.values)
                if value is None or any(i.code == "unique" and i.path in sources for i in w.issues):
                    continue  # a number made from a taken value (G + 身份证号): the taken value says it already
                if w.current is not None and spec.kind.to_json(value) == stored_value(spec, w.current.data):
                    continue
                wanted.append((w, value))
            if not wanted:
                continue
            holders = self.holders(s, form, spec, [value for _w, value in wanted])
            column = projection_of(form, self.dialect).fields[key]
            for w, value in wanted:
                if holders.get(column.to_sql(value), set()) - {w.record_id}:
                    w.issues.append(Issue("unique", {"value": spec.kind.to_text(value)}, path=key))
        for w in pending:  # each field is looked up in its own statement: a save committed in between is seen by some
            w.issues[:] = _typed_sources(form, w.issues, w.values)

    @staticmethod
    def typed_sources(form: FormSpec, issue: Issue, values: Mapping[str, Any]) -> list[Issue]:
        """A unique number made from unique typed values (学籍号 = G + 身份证号) is taken because they are: the
        issues naming those typed values, which the user can correct; `[issue]` itself otherwise."""
        return _typed_sources(form, [issue], values)

    def holders(self, s: DbSession, form: FormSpec, spec: FieldSpec, values: Iterable[Any]) -> dict[Any, set[int]]:
        """Ids of this form's records holding each of `values` (Python values) in the field `spec`, keyed by the
        value as its projection column holds it; one query, answered from the column's index."""
        return {key[0]: ids for key, ids in self.matching(s, form, (spec.key,), [(v,) for v in values]).items()}

    def matching(self, s: DbSession, form: FormSpec, keys: tuple[str, ...], wanted: Iterable[tuple[Any, ...]]
                 ) -> dict[tuple[Any, ...], set[int]]:
        """Ids of this form's records whose fields `keys` hold each tuple of `wanted` (Python values), keyed by
        the tuple as the projection's columns hold it."""
        projection = projection_of(form, self.dialect)
        columns = [projection.fields[k] for k in keys]
        values = {tuple(c.to_sql(v) for c, v in zip(columns, row)) for row in wanted if all(v is not None for v in row)}
        found: dict[tuple[Any, ...], set[int]] = {}
        if not values:
            return found
        selected = [projection.table.c[c.name] for c in columns]
        condition = selected[0].in_([v[0] for v in values]) if len(selected) == 1 else tuple_(*selected).in_(list(values))
        for row in s.execute(select(*selected, projection.table.c.record_id).where(condition)):
            found.setdefault(tuple(row[:-1]), set()).add(row[-1])
        return found

    # --- writing -------------------------------------------------------------------------------------------
    def write(self, s: DbSession, principal: Principal, writes: list[RecordWrite]) -> list[RecordWrite]:
        """Write every write without issues in `s`'s transaction and return the ones written (an update that
        changes nothing writes nothing and is not returned). Writes that cannot be made (a generated number whose
        source is empty) get an issue and are left out. Raises IntegrityError or Stale for the caller to roll
        back."""
        todo = [w for w in writes if not w.failed]
        if not todo:
            return []
        form = todo[0].form
        assert all(w.form is form for w in todo), "one form per write call"
        numbered = self._number(s, form, todo)
        todo = [w for w in todo if not w.failed]
        for w in todo:
            if w.document is None or w in numbered:
                self.build(w)
        todo = [w for w in todo if w.is_new or w.changes or w.uploads]
        if not todo:
            return []
        new = [w for w in todo if w.is_new]
        for w, record_id in zip(new, self._reserve_ids(s, len(new))):
            w.record_id = record_id
        self._store_uploads(s, form, principal, todo)
        now = utcnow()
        connection = s.connection()
        if new:
            _INSERT_RECORDS.run(connection, [
                {"id": w.record_id, "form_key": form.key, "unit_id": w.unit_id, "data": w.document,
                 "def_version": form.version, "revision": 1, "created_by": principal.user_id,
                 "updated_by": principal.user_id, "created_at": now, "updated_at": now} for w in new])
        self._update(connection, form, principal, [w for w in todo if not w.is_new], now)
        self._project(connection, form, principal, todo)
        self._move_children(connection, principal, form, [w for w in todo if w.moves], now)
        _INSERT_AUDIT.run(connection, [
            {"form_key": form.key, "record_id": w.record_id, "action": "create" if w.is_new else "update",
             "user_id": principal.user_id, "username": principal.username,
             "revision": 1 if w.is_new else w.base_revision + 1, "changes": w.changes, "note": w.note, "at": now}
            for w in todo])
        return todo

    @staticmethod
    def build(w: RecordWrite) -> dict[str, Any]:
        """The stored document of `w` and its audit changes (kept on `w`); returns the changes."""
        previous = None if w.current is None else w.current.data
        w.uploads = {k: v for k, v in w.values.items() if isinstance(v, UploadedFile)}
        w.document = write_document(w.form, {k: v for k, v in w.values.items() if k not in w.uploads}, previous)
        w.changes = stored_changes(w.form, previous or {}, w.document)
        if w.moves:
            assert w.current is not None
            w.changes["_unit"] = [w.current.unit_id, w.unit_id]
        return w.changes

    def _update(self, connection: Any, form: FormSpec, principal: Principal, writes: list[RecordWrite], now: Any) -> None:
        for statement, group in ((_UPDATE_RECORD, [w for w in writes if not w.moves]), (_MOVE_RECORD, [w for w in writes if w.moves])):
            if not group:
                continue
            params = [{"b_id": w.record_id, "b_revision": w.base_revision, "b_data": w.document,
                       "b_version": form.version, "b_user": principal.user_id, "b_now": now,
                       **({"b_unit": w.unit_id} if w.moves else {})} for w in group]
            if statement.run(connection, params) != len(group):
                raise Stale()

    def _project(self, connection: Any, form: FormSpec, principal: Principal, writes: list[RecordWrite]) -> None:
        """The written records' projection rows, in the same transaction: whatever the form's lists, searches,
        links and figures read (engine/storage/projection.py). A saved record is complete: the validator let it
        through."""
        projection = projection_of(form, self.dialect)
        placed = [w for w in writes if w.is_new or w.moves]
        places = unit_places(connection, {w.unit_id for w in placed if w.unit_id is not None})
        new = [w for w in writes if w.is_new]
        _ROWS.insert(connection, projection, [
            projection.row(w.record_id, places[w.unit_id], principal.user_id, w.values, incomplete=False)  # type: ignore[arg-type,index]
            for w in new])
        updated = [w for w in writes if not w.is_new]
        rows = []
        for w in updated:
            row = {"record_id": w.record_id, "def_version": projection.rows_version, "incomplete": False,
                   **projection.value_columns(w.values)}
            if w.moves:
                row.update(projection.place_columns(places[w.unit_id]))  # type: ignore[index]
            rows.append(row)
        for group in (r for r in (_same_keys(rows, True), _same_keys(rows, False)) if r):
            if _ROWS.update(connection, projection, group) != len(group):
                self._project_missing(connection, projection, [w for w in updated if w.record_id in {r["record_id"] for r in group}])

    def _move_children(self, connection: Any, principal: Principal, form: FormSpec, moved: list[RecordWrite], now: Any) -> None:
        """Records of child forms (belongs_to) go where their parent goes (a transferred student's grades go to the
        new school), each with an audit entry that says why."""
        children = [c for c in self.forms().values() if c.parent_field and c.parent_form == form.key]
        if not moved or not children:
            return
        places = unit_places(connection, {w.unit_id for w in moved if w.unit_id is not None})
        records = Record.__table__
        for child in children:
            projection = projection_of(child, self.dialect)
            table = projection.table
            for w in moved:
                assert w.unit_id is not None and w.current is not None
                owned = select(table.c.record_id).where(projection.column(child.parent_field) == w.record_id)
                rows = connection.execute(select(records.c.id, records.c.revision).where(records.c.id.in_(owned))).all()
                if not rows:
                    continue
                ids = [row.id for row in rows]
                connection.execute(records.update().where(records.c.id.in_(ids))
                                   .values(unit_id=w.unit_id, revision=records.c.revision + 1, updated_at=now))
                connection.execute(table.update().where(table.c.record_id.in_(ids)).values(**projection.place_columns(places[w.unit_id])))
                _INSERT_AUDIT.run(connection, [
                    {"form_key": child.key, "record_id": row.id, "action": "update", "user_id": principal.user_id,
                     "username": principal.username, "revision": row.revision + 1,
                     "changes": {"_unit": [w.current.unit_id, w.unit_id]}, "note": f"随{form.title} #{w.record_id} 转移", "at": now}
                    for row in rows])

    def _project_missing(self, connection: Any, projection: Projection, writes: list[RecordWrite]) -> None:
        """Updated records that had no projection row yet (saved before their form's table was refreshed): insert
        theirs."""
        ids = [w.record_id for w in writes]
        present = set(connection.execute(select(projection.table.c.record_id).where(projection.table.c.record_id.in_(ids))).scalars())
        missing = [w for w in writes if w.record_id not in present]
        places = unit_places(connection, {w.unit_id if w.moves else w.current.unit_id for w in missing})  # type: ignore[union-attr]
        _ROWS.insert(connection, projection, [
            projection.row(w.record_id, places[w.unit_id if w.moves else w.current.unit_id], w.current.created_by,  # type: ignore[arg-type,index,union-attr]
                           w.values, incomplete=False) for w in missing])

    def delete(self, s: DbSession, principal: Principal, form: FormSpec, record_id: int, revision: int,
               data: Mapping[str, Any]) -> None:
        s.execute(_RECORD.delete().where(_RECORD.c.id == record_id))
        # The audit entry keeps the whole document: a deleted archive can be reconstructed.
        _INSERT_AUDIT.run(s.connection(), {
            "form_key": form.key, "record_id": record_id, "action": "delete", "user_id": principal.user_id,
            "username": principal.username, "revision": revision + 1,
            "changes": {k: [v, None] for k, v in data.items() if v is not None}, "note": "", "at": utcnow()})

    def unique_violation(self, form: FormSpec, exc: IntegrityError, values: Mapping[str, Any]) -> Issue:
        """The unique field a refused INSERT or UPDATE collided on, as the issue a user reads; other integrity
        errors are not the user's to fix and are raised again."""
        message = str(exc.orig)
        projection = projection_of(form, self.dialect)
        for key, spec in form.fields.items():
            if spec.unique and projection.names_unique(key, message):
                return Issue("unique", {"value": spec.kind.to_text(values.get(key))}, path=key)
        raise exc

    @staticmethod
    def number_sources(write: RecordWrite) -> list[Issue]:
        """A generated value that cannot be made (a field it is made from is empty) is the record's problem."""
        issues = []
        for key in RecordWriter.to_number(write):
            kind = write.form.fields[key].kind
            missing = [name for name in kind.referenced_fields() if write.values.get(name) is None]
            if missing:
                issues.append(Issue("generated_source", {"source": write.form.fields[missing[0]].label}, path=key))
        return issues

    @staticmethod
    def to_number(write: RecordWrite) -> list[str]:
        """The generated fields of `write` that still need a number (write draws one for each)."""
        return [key for key, spec in write.form.fields.items() if not spec.kind.user_input and not write.values.get(key)]

    # --- numbers ---------------------------------------------------------------------------------------------
    def _number(self, s: DbSession, form: FormSpec, writes: list[RecordWrite]) -> set[RecordWrite]:
        """Fill generated values that are still empty; an existing number is never recomputed or reused. Numbers
        with a sequence are drawn as one block per scope (the text before the sequence, e.g. the year). Returns
        the writes that got a number."""
        numbered: set[RecordWrite] = set()
        for key, spec in form.fields.items():
            if spec.kind.user_input:
                continue
            kind: Any = spec.kind
            blocks: dict[str, list[RecordWrite]] = {}
            for w in writes:
                if w.failed or w.values.get(key):
                    continue
                missing = [name for name in kind.referenced_fields() if w.values.get(name) is None]
                if missing:
                    w.issues.append(Issue("generated_source", {"source": form.fields[missing[0]].label}, path=key))
                elif kind.has_sequence:
                    blocks.setdefault(kind.scope_key(w.values), []).append(w)
                    numbered.add(w)
                else:
                    w.values[key] = kind.render(w.values)
                    numbered.add(w)
            scope_of = f"{form.key}:{key}:{{}}"
            for prefix, members in blocks.items():
                last = s.execute(BLOCK_SQL, {"scope": scope_of.format(prefix), "n": len(members)}).scalar_one()
                for number, w in enumerate(members, start=last - len(members) + 1):
                    _render(w, key, lambda _prefix, n=number: n)
            drawn = [w for group in blocks.values() for w in group if not w.failed]
            if spec.unique and drawn:
                self._skip_taken(s, form, spec, drawn,
                                 lambda prefix: s.execute(BLOCK_SQL, {"scope": scope_of.format(prefix), "n": 1}).scalar_one())
        return {w for w in numbered if not w.failed}

    def _skip_taken(self, s: DbSession, form: FormSpec, spec: FieldSpec, writes: list[RecordWrite], draw: Any) -> None:
        kind: Any = spec.kind
        column = projection_of(form, self.dialect).fields[spec.key]
        for _ in range(MAX_SEQUENCE_SKIPS):
            holders = self.holders(s, form, spec, [w.values[spec.key] for w in writes])
            writes = [w for w in writes if column.to_sql(w.values[spec.key]) in holders]
            if not writes:
                return
            for w in writes:
                _render(w, spec.key, draw)
            writes = [w for w in writes if not w.failed]

    def _reserve_ids(self, s: DbSession, count: int) -> list[int]:
        """Record ids for new records up front, so that rows go in at once (no RETURNING per row) and uploads can
        name their record before it is written.

        SQLite: the write transaction holds the database's write lock (BEGIN IMMEDIATE), so the block stays ours;
        it starts above the AUTOINCREMENT high-water mark, so a deleted record's id is never handed out again.
        PostgreSQL: the column's own sequence hands out the block."""
        if not count:
            return []
        if self.dialect == "postgresql":
            return list(s.execute(text("SELECT nextval(pg_get_serial_sequence('records', 'id')) FROM generate_series(1, :n)"),
                                  {"n": count}).scalars())
        used = s.execute(text("SELECT coalesce(max(id), 0) FROM records")).scalar_one()
        if s.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
            used = max(used, s.execute(text("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'records'")).scalar_one())
        return list(range(used + 1, used + 1 + count))

    def _store_uploads(self, s: DbSession, form: FormSpec, principal: Principal, writes: list[RecordWrite]) -> None:
        for w in writes:
            for key, upload in w.uploads.items():
                ref = store_attachment(s, form.key, w.record_id, key, upload, principal.user_id)
                w.values[key] = ref
                assert w.document is not None and w.changes is not None
                before = None if w.current is None else stored_value(form.fields[key], w.current.data)
                w.document[key] = ref
                w.changes[key] = [before, ref]


def store_attachment(s: DbSession, form_key: str, record_id: int | None, field_key: str,
                     upload: UploadedFile, user_id: int | None) -> dict[str, Any]:
    attachment_id = uuid.uuid4().hex
    s.add(Attachment(id=attachment_id, form_key=form_key, record_id=record_id, field_key=field_key,
                     filename=upload.filename, content_type=upload.content_type or "application/octet-stream",
                     size=len(upload.data), sha256=hashlib.sha256(upload.data).hexdigest(), content=upload.data,
                     created_by=user_id))
    return {"id": attachment_id, "name": upload.filename, "size": len(upload.data), "type": upload.content_type}


def _typed_sources(form: FormSpec, issues: list[Issue], values: Mapping[str, Any]) -> list[Issue]:
    """`issues` with each unique issue on a generated field replaced by the unique typed fields it is made from
    (named once), so that the user is told what to correct whichever of them the database saw first."""
    out: list[Issue] = []
    for issue in issues:
        spec = form.fields.get(issue.path) if issue.code == "unique" else None
        sources = [] if spec is None or spec.kind.user_input else [
            form.fields[k] for k in spec.kind.referenced_fields()
            if k in form.fields and form.fields[k].unique and values.get(k) is not None]
        if not sources:
            out.append(issue)
        for f in sources:
            named = Issue("unique", {"value": f.kind.to_text(values[f.key])}, path=f.key)
            if named not in out and named not in issues:
                out.append(named)
    return out


def _rendered(spec: FieldSpec, values: Mapping[str, Any]) -> Any:
    """A generated value made from other fields alone (no sequence), as it will be made; None if it cannot be."""
    if spec.kind.user_input:
        return None
    try:
        return spec.kind.render(values)  # type: ignore[attr-defined]
    except ValueError:
        return None


def _same_keys(rows: list[dict[str, Any]], moved: bool) -> list[dict[str, Any]]:
    """Rows of one shape (with or without the unit's columns), for one executemany each."""
    return [row for row in rows if ("unit_id" in row) == moved]
