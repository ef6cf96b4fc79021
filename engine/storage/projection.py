"""Per-form tables of typed columns the engine keeps from the records' JSON documents ("projections"): what
lists, filters, sorts, searches, links, figures and reports read.

The document in `records.data` stays each record's truth. A form's projection table `p_<form>` has one row per
record, written in the same transaction as the record (engine/records/writer.py): the record's unit with its
ancestor at every org level (`lv_<level>`), who created it, whether it is incomplete under the current
definition, one typed column per field (`f_<key>`), and for each searchable field a tokenised text (`t_<key>`)
that the database's own full-text index reads (SQLite FTS5, PostgreSQL tsvector + GIN). Nothing here is written by
hand: `sync_projections` makes the tables and indexes match the definitions at start-up and on reload (new
columns added, renamed fields' columns renamed, changed ones rebuilt) and `refresh` recomputes, in batches,
the rows a definition change made stale (`def_version` older than the form's).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import (
    BigInteger, Boolean, Column, Date, ForeignKey, Index, Integer, MetaData, Numeric, String, Table, Text, and_,
    bindparam, func, inspect, literal_column, or_, select, text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from engine.documents import read_values
from engine.spec import Definitions, FieldSpec, FormSpec
from engine.storage.models import AuditEntry, OrgUnit, ProjectionState, Record
from engine.storage.statements import Write
from engine.validation import clean_record

log = logging.getLogger("dangan")
TABLE_PREFIX = "p_"
INDEX_PREFIXES = ("px_", "pu_")  # ordinary and unique indexes the engine owns on projection tables
REFRESH_BATCH = 2_000
BACKGROUND_BATCH = 500  # the background's batches are smaller: requests' writes wait for one at most
SEARCH_CHARS = 64
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")
_WORD = re.compile(r"[0-9A-Za-z]+")


@dataclass(frozen=True)
class FieldColumn:
    """One field's column: its SQL type and how a Python value becomes what the column holds."""

    key: str
    name: str
    type: TypeEngine
    to_sql: Callable[[Any], Any]
    search: str | None = None  # the column of its tokenised text, for a searchable text field


@dataclass(frozen=True)
class Projection:
    """The compiled shape of one form's projection table."""

    form: FormSpec
    table: Table
    fields: Mapping[str, FieldColumn]
    levels: tuple[str, ...]
    layout: Mapping[str, str]  # column name -> type tag, to see what a definition change changed
    rows_version: str  # digest of what a row is computed from; rows of an older one are stale

    @property
    def name(self) -> str:
        return self.table.name

    def names_unique(self, key: str, message: str) -> bool:
        """Whether a database's unique-violation message is about field `key`'s unique index (PostgreSQL names
        the index, SQLite the table and column)."""
        column = self.fields[key].name
        return unique_index_name(self, key) in message or f"{self.name}.{column}" in message

    def column(self, key: str) -> Column:
        return self.table.c[self.fields[key].name]

    def row(self, record_id: int, place: UnitPlace, created_by: int | None, values: Mapping[str, Any],
            incomplete: bool) -> dict[str, Any]:
        row = {"record_id": record_id, "created_by": created_by, **self.place_columns(place),
               "def_version": self.rows_version, "incomplete": incomplete}
        row.update(self.value_columns(values))
        return row

    def place_columns(self, place: UnitPlace) -> dict[str, Any]:
        columns = {"unit_id": place.unit_id, "unit_path": place.path}
        for level in self.levels:
            columns[f"lv_{level}"] = place.ancestors.get(level)
        return columns

    def value_columns(self, values: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for key, column in self.fields.items():
            value = values.get(key)
            row[column.name] = None if value is None else column.to_sql(value)
            if column.search is not None:
                row[column.search] = search_text(value)
        return row


@dataclass(frozen=True)
class UnitPlace:
    """Where a record sits: its unit, the unit's path, and the unit's ancestors (itself included) by org level."""

    unit_id: int
    path: str
    ancestors: Mapping[str, int]


# --- tokenising for full-text search ------------------------------------------------------------------------

def tokens(value: Any) -> list[str]:
    """Words of a searchable value: runs of 汉字 as single characters and overlapping pairs (bigrams, as CJK search
    engines index them), so that any part of a name can be found; letters and digits as lower-case words."""
    if value is None:
        return []
    found: list[str] = []
    content = str(value)
    for run in _CJK.findall(content):
        found += list(run)
        found += [run[i:i + 2] for i in range(len(run) - 1)]
    found += [word.lower() for word in _WORD.findall(content)]
    return found


def search_text(value: Any) -> str | None:
    words = tokens(value)
    return " ".join(words) if words else None


def query_terms(typed: str) -> list[tuple[str, ...]]:
    """What a typed search asks for, as phrases of tokens that must all occur: 汉字 runs of two or more as their
    consecutive bigrams, a single 汉字 alone, letters and digits as word prefixes (marked with a trailing "*").
    Only the first SEARCH_CHARS characters count: nobody types a longer search, and a pasted page must not become
    a query of thousands of terms."""
    typed = typed[:SEARCH_CHARS]
    terms: list[tuple[str, ...]] = []
    for run in _CJK.findall(typed):
        terms.append((run,) if len(run) == 1 else tuple(run[i:i + 2] for i in range(len(run) - 1)))
    terms += [(word.lower() + "*",) for word in _WORD.findall(typed)]
    return terms


# --- compiling a form's projection --------------------------------------------------------------------------

def table_name(form_key: str) -> str:
    name = f"{TABLE_PREFIX}{form_key}"
    if len(name) > 50:  # PostgreSQL identifiers end at 63 bytes; index names add to this
        name = f"{name[:40]}_{hashlib.sha1(form_key.encode()).hexdigest()[:8]}"
    return name


def _column_kind(spec: FieldSpec) -> tuple[str, TypeEngine, Callable[[Any], Any]]:
    """(type tag, SQL type, value → column value) of a field, from its type (engine/fields/base.py: `sql_type`,
    `to_sql`). A value that is not one scalar (a table, several choices, a file) is projected as short text that
    says what is there: enough for fill rates and "incomplete" lists."""
    sql_type = spec.kind.sql_type
    if sql_type is not None:
        return sql_type.__name__.lower(), sql_type(), spec.kind.to_sql
    return "summary", Text(), lambda value: spec.kind.to_text(value)[:200] or None


def compile_projection(form: FormSpec, levels: Iterable[str], dialect: str) -> Projection:
    metadata = MetaData()
    name = table_name(form.key)
    levels = tuple(levels)
    path_type = String(400, collation="C") if dialect == "postgresql" else String(400)
    columns: list[Any] = [
        Column("record_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey(Record.id, ondelete="CASCADE"),
               primary_key=True, autoincrement=False),
        Column("unit_id", Integer, nullable=False),
        Column("unit_path", path_type, nullable=False),
        Column("created_by", Integer),
        Column("def_version", String(40), nullable=False),
        Column("incomplete", Boolean, nullable=False),
        *(Column(f"lv_{level}", Integer) for level in levels),
    ]
    layout = {"unit_path": "path"}
    fields: dict[str, FieldColumn] = {}
    searchable = set(form.list.search)
    for key, spec in form.fields.items():
        tag, sql_type, to_sql = _column_kind(spec)
        column_name = f"f_{key}"
        search = f"t_{key}" if key in searchable and tag in ("text", "summary") else None
        columns.append(Column(column_name, sql_type))
        layout[column_name] = tag
        if search is not None:
            columns.append(Column(search, Text))
            layout[search] = "search"
        fields[key] = FieldColumn(key, column_name, sql_type, to_sql, search)
    table = Table(name, metadata, *columns)
    _indexes(form, table, levels, fields, dialect)  # an Index over a table's columns joins that table
    return Projection(form, table, MappingProxyType(fields), levels, MappingProxyType(layout), _rows_version(form))


def _indexes(form: FormSpec, table: Table, levels: tuple[str, ...], fields: Mapping[str, FieldColumn],
             dialect: str) -> list[Index]:
    """The indexes a projection table needs: where records sit (unit path, each org level, the creator), each field
    lists filter or sort by (with the record id, so that a page sorted by it walks the index in order), each unique
    field (a unique index: the database's guarantee), each natural-key part."""
    short = _short(table.name)
    wanted: list[Index] = [
        Index(f"px_{short}_unit_path", table.c.unit_path),
        Index(f"px_{short}_created_by", table.c.created_by),
        *(Index(f"px_{short}_lv_{level}"[:60], table.c[f"lv_{level}"]) for level in levels),
    ]
    indexed = set(form.list.filters) | set(form.list.columns) | set(form.natural_key) | set(form.list.search)
    if form.list.default_sort:
        indexed.add(form.list.default_sort.lstrip("-"))
    for key, column in fields.items():
        spec = form.fields[key]
        if spec.unique:
            wanted.append(Index(_unique_name(short, key), table.c[column.name], unique=True))
        elif key in indexed:
            # Empty values first in the index, as SQLite orders them: one index serves both sort directions.
            value = table.c[column.name].asc().nulls_first() if dialect == "postgresql" else table.c[column.name]
            wanted.append(Index(f"px_{short}_{key}"[:60], value, table.c.record_id))
        if column.search is not None and dialect == "postgresql":
            wanted.append(Index(f"px_{short}_t_{key}"[:60], func.to_tsvector(literal_column("'simple'"), table.c[column.search]),
                                postgresql_using="gin"))
    return wanted


def _short(name: str) -> str:
    return name[len(TABLE_PREFIX):][:20]


def _unique_name(short: str, key: str) -> str:
    return f"pu_{short}_{key}"[:60]


def unique_index_name(projection: Projection, key: str) -> str:
    return _unique_name(_short(projection.name), key)


def compile_projections(definitions: Definitions, dialect: str) -> Mapping[str, Projection]:
    levels = tuple(level.key for level in definitions.org_levels)
    return MappingProxyType({key: compile_projection(form, levels, dialect) for key, form in definitions.forms.items()})


def _rows_version(form: FormSpec) -> str:
    """What a projection row is computed from: the fields' keys, types and checks, the form's rules (they decide
    `incomplete`) and which fields are searchable (their words). Labels, help texts and the other list settings
    are not in it: changing them leaves the rows as they are."""
    parts = []
    for key, spec in form.fields.items():
        parts.append([key, repr(spec.kind), spec.required, sorted((k, repr(v)) for k, v in spec.constraints.items()),
                      spec.visible_if.source if spec.visible_if else "", spec.required_if.source if spec.required_if else "",
                      list(spec.renamed_from), spec.compute.source if spec.compute else ""])
    parts.append([[rule.key, rule.check.source, rule.when.source if rule.when else ""] for rule in form.rules])
    parts.append(sorted(form.list.search))  # a field made searchable needs its words in the rows already there
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


_cache: dict[tuple[str, str, tuple[str, ...], str], Projection] = {}


def projection_of(form: FormSpec, dialect: str) -> Projection:
    """The form's projection, compiled once per form version, org levels and database kind."""
    key = (form.key, form.version, form.levels, dialect)
    found = _cache.get(key)
    if found is None:
        if len(_cache) > 256:
            _cache.clear()
        found = _cache[key] = compile_projection(form, form.levels, dialect)
    return found


# --- where records sit ----------------------------------------------------------------------------------------

def unit_places(connection: Connection, unit_ids: Iterable[int]) -> dict[int, UnitPlace]:
    """Each unit's path and its ancestors (itself included) by org level, in two queries however many units."""
    wanted = set(unit_ids)
    if not wanted:
        return {}
    units = connection.execute(select(OrgUnit.id, OrgUnit.path).where(OrgUnit.id.in_(wanted))).all()
    ancestors = {int(part) for _id, path in units for part in path.strip("/").split("/") if part}
    levels = dict(connection.execute(select(OrgUnit.id, OrgUnit.level).where(OrgUnit.id.in_(ancestors))).all())
    places = {}
    for unit_id, path in units:
        chain = [int(part) for part in path.strip("/").split("/") if part]
        places[unit_id] = UnitPlace(unit_id, path, MappingProxyType({levels[i]: i for i in chain if i in levels}))
    return places


# --- writing rows --------------------------------------------------------------------------------------------

class ProjectionRows:
    """Writes a projection's rows with statements compiled once per table and column set (executemany)."""

    def __init__(self) -> None:
        self._statements: dict[tuple[str, str, tuple[str, ...]], Any] = {}

    def insert(self, connection: Connection, projection: Projection, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._statement(projection, "insert", tuple(rows[0])).run(connection, rows)

    def update(self, connection: Connection, projection: Projection, rows: list[dict[str, Any]]) -> int:
        """UPDATE by record_id; returns how many rows there were to update (a record written before its form had
        a projection has none yet: the caller inserts it)."""
        if not rows:
            return 0
        statement = self._statement(projection, "update", tuple(rows[0]))
        return statement.run(connection, [{f"b_{name}": value for name, value in row.items()} for row in rows])

    def _statement(self, projection: Projection, kind: str, names: tuple[str, ...]) -> Any:
        key = (projection.name, kind, names)
        statement = self._statements.get(key)
        if statement is None:
            table = projection.table
            if kind == "insert":
                statement = Write(table.insert())
            else:
                statement = Write(table.update().where(table.c.record_id == bindparam("b_record_id"))
                                  .values({name: bindparam(f"b_{name}") for name in names if name != "record_id"}))
            if len(self._statements) > 512:
                self._statements.clear()
            self._statements[key] = statement
        return statement


# --- keeping the tables in step with the definitions --------------------------------------------------------

class IndexConflict(Exception):
    def __init__(self, form: FormSpec, field: FieldSpec, detail: str) -> None:
        super().__init__(f"表单“{form.title}”的字段“{field.label}”设为唯一，但已有重复的值，无法建立唯一索引：{detail}")
        self.form, self.field = form, field


def sync_projections(connection: Connection, definitions: Definitions) -> dict[str, int]:
    """Make every form's projection table match its definition: create it, or add, rename, rebuild and drop
    columns and indexes as the definition changed. Returns, per form, how many rows are stale (to `refresh`)."""
    dialect = connection.dialect.name
    states = {row.form_key: row for row in connection.execute(select(ProjectionState.__table__))}
    stale: dict[str, int] = {}
    for form in definitions.forms.values():
        projection = projection_of(form, dialect)
        tables = set(inspect(connection).get_table_names())
        if projection.name not in tables:
            projection.table.create(connection)
            _create_search(connection, projection)
        else:
            state = states.get(form.key)
            _evolve(connection, projection, dict(state.layout) if state is not None else {})
        stale[form.key] = _count_stale(connection, projection)
        _save_state(connection, projection, stale[form.key], exists=form.key in states)
    return stale


def _evolve(connection: Connection, projection: Projection, old_layout: dict[str, str]) -> None:
    table, name = projection.table, projection.name
    inspector = inspect(connection)
    existing = {c["name"] for c in inspector.get_columns(name)}
    renames = [(f"{prefix}{old}", f"{prefix}{key}") for key, spec in projection.form.fields.items() for old in spec.renamed_from
               for prefix in ("f_", "t_")]
    renames = [(old, new) for old, new in renames if old in existing and new not in existing and new in table.c]
    search_renamed = any(new.startswith("t_") for _old, new in renames)
    if search_renamed:
        _drop_search(connection, projection)
    for key, spec in projection.form.fields.items():  # a renamed field keeps its column, under the new name
        for old in spec.renamed_from:
            for prefix in ("f_", "t_"):
                if (f"{prefix}{old}", f"{prefix}{key}") in renames:
                    connection.execute(text(f'ALTER TABLE "{name}" RENAME COLUMN "{prefix}{old}" TO "{prefix}{key}"'))
                    existing = (existing - {f"{prefix}{old}"}) | {f"{prefix}{key}"}
                    old_layout[f"{prefix}{key}"] = old_layout.pop(f"{prefix}{old}", projection.layout.get(f"{prefix}{key}", ""))
    changed = {column for column, tag in projection.layout.items() if column in existing and old_layout.get(column, tag) != tag}
    dropped = (existing - set(table.c.keys())) | changed
    search_changed = search_renamed or bool({c for c in dropped | (set(table.c.keys()) - existing) if c.startswith("t_")})
    if search_changed:
        _drop_search(connection, projection)
    wanted = {index.name: index for index in table.indexes}
    for index in inspector.get_indexes(name):
        if not index["name"] or not index["name"].startswith(INDEX_PREFIXES):
            continue
        if index["name"] not in wanted or set(index.get("column_names") or []) & dropped:
            connection.execute(text(f'DROP INDEX IF EXISTS "{index["name"]}"'))
    for column in sorted(dropped):
        connection.execute(text(f'ALTER TABLE "{name}" DROP COLUMN "{column}"'))
    for column in table.columns:
        if column.name not in existing or column.name in changed:
            column_type = column.type.compile(dialect=connection.dialect)
            connection.execute(text(f'ALTER TABLE "{name}" ADD COLUMN "{column.name}" {column_type}'))
    present = {index["name"] for index in inspect(connection).get_indexes(name)}
    for index_name, index in wanted.items():
        if index_name in present:
            continue
        try:
            with connection.begin_nested():
                index.create(connection)
        except Exception as exc:  # noqa: BLE001 — a unique index over duplicates: a definition problem, in the DB's words
            key = next((k for k, c in projection.fields.items() if c.name in {col.name for col in index.columns}), "")
            spec = projection.form.fields.get(key)
            if spec is None:
                raise
            raise IndexConflict(projection.form, spec, str(getattr(exc, "orig", exc)).splitlines()[0]) from exc
    if search_changed:
        _create_search(connection, projection)


def _count_stale(connection: Connection, projection: Projection) -> int:
    table = projection.table
    return connection.execute(
        select(func.count()).select_from(Record.__table__.outerjoin(table, table.c.record_id == Record.id))
        .where(Record.form_key == projection.form.key,
               (table.c.record_id.is_(None)) | (table.c.def_version != projection.rows_version))).scalar_one()


def _save_state(connection: Connection, projection: Projection, stale: int, exists: bool) -> None:
    values = {"table_name": projection.name, "layout": dict(projection.layout), "rows_version": projection.rows_version,
              "stale": stale, "updated_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)}
    state = ProjectionState.__table__
    if exists:
        connection.execute(state.update().where(state.c.form_key == projection.form.key).values(**values))
    else:
        connection.execute(state.insert().values(form_key=projection.form.key, **values))


def refresh(connection: Connection, projection: Projection, after: int = 0, batch: int = REFRESH_BATCH) -> int:
    """Recompute one batch of stale rows (no row, or computed from an older definition) with record id above
    `after`, in the caller's transaction; returns the last record id done (0 when there were none left). The
    records are locked (PostgreSQL) so that a save meanwhile cannot be overwritten with what was read before it."""
    return _refresh_batch(connection, projection, after, batch)[0]


def _follows(connection: Connection, projection: Projection) -> bool:
    """Whether the form's table was last made to match these definitions. A process still holding older ones (a
    worker that has not followed a reload yet) must not write rows computed by them: it would undo the newer
    definition's rows. The state row is read FOR SHARE, so a reload's sync waits for this batch to end."""
    state = ProjectionState.__table__
    stored = connection.execute(select(state.c.rows_version).where(state.c.form_key == projection.form.key)
                                .with_for_update(read=True)).scalar()
    return stored == projection.rows_version


def _refresh_batch(connection: Connection, projection: Projection, after: int, batch: int) -> tuple[int, int]:
    """refresh(), and how many records the batch recomputed."""
    if not _follows(connection, projection):
        return 0, 0
    table, form = projection.table, projection.form
    query = (select(Record.id, Record.unit_id, Record.created_by, Record.data, Record.revision)
             .select_from(Record.__table__.outerjoin(table, table.c.record_id == Record.id))
             .where(Record.form_key == form.key, Record.id > after,
                    (table.c.record_id.is_(None)) | (table.c.def_version != projection.rows_version))
             .order_by(Record.id).limit(batch).with_for_update(of=Record))
    records = connection.execute(query).all()
    if not records:  # none left: the counter says so too (saves meanwhile wrote fresh rows without counting down)
        state = ProjectionState.__table__
        connection.execute(state.update().where(state.c.form_key == form.key, state.c.stale != 0).values(stale=0))
        return 0, 0
    places = unit_places(connection, {r.unit_id for r in records})
    rows = []
    computed = [key for key, spec in form.fields.items() if spec.compute is not None]
    for record in records:
        values = read_values(form, record.data or {})
        cleaned = clean_record(form, values)
        changed = {k: cleaned.values[k] for k in computed if cleaned.values[k] != values[k]}
        if changed:  # a formula changed: the stored values follow it, audited like any save
            values.update(changed)
            _recomputed(connection, form, record, changed)
        rows.append(projection.row(record.id, places[record.unit_id], record.created_by, values,
                                   incomplete=not cleaned.ok))
    connection.execute(table.delete().where(table.c.record_id.in_([r.id for r in records])))
    _ROWS.insert(connection, projection, rows)
    state = ProjectionState.__table__
    connection.execute(state.update().where(state.c.form_key == form.key)
                       .values(stale=func.max(state.c.stale - len(records), 0) if connection.dialect.name == "sqlite"
                               else func.greatest(state.c.stale - len(records), 0)))
    return records[-1].id, len(records)


def _recomputed(connection: Connection, form: FormSpec, record: Any, changed: dict[str, Any]) -> None:
    """A record's computed values as the current formulas give them, written into its document with an audit
    entry (the system's, not a person's), so the history says why they changed."""
    data = dict(record.data or {})
    audit = {}
    for key, value in changed.items():
        stored = None if value is None else form.fields[key].kind.to_json(value)
        audit[key] = [data.get(key), stored]
        data[key] = stored
    records = Record.__table__
    connection.execute(records.update().where(records.c.id == record.id)
                       .values(data=data, revision=records.c.revision + 1, def_version=form.version))
    connection.execute(AuditEntry.__table__.insert().values(
        form_key=form.key, record_id=record.id, action="update", user_id=None, username="", revision=record.revision + 1,
        changes=audit, note="计算公式已更改，按新公式重新计算", at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)))


# --- full-text search --------------------------------------------------------------------------------------

def _search_columns(projection: Projection) -> list[str]:
    return [c.search for c in projection.fields.values() if c.search is not None]


def fts_table(projection: Projection) -> str:
    return f"{projection.name}_fts"


def _create_search(connection: Connection, projection: Projection) -> None:
    """SQLite: an FTS5 index over the tokenised columns, kept by triggers (FTS5's external-content pattern).
    PostgreSQL's are GIN indexes over to_tsvector(...), made with the table's other indexes."""
    columns = _search_columns(projection)
    if connection.dialect.name != "sqlite" or not columns:
        return
    table, fts = projection.name, fts_table(projection)
    listed = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    differs = " OR ".join(f"old.{c} IS NOT new.{c}" for c in columns)
    connection.execute(text(f"CREATE VIRTUAL TABLE {fts} USING fts5({listed}, content='{table}', content_rowid='record_id')"))
    connection.execute(text(f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
                            f"INSERT INTO {fts}(rowid, {listed}) VALUES (new.record_id, {new}); END"))
    connection.execute(text(f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN "
                            f"INSERT INTO {fts}({fts}, rowid, {listed}) VALUES ('delete', old.record_id, {old}); END"))
    connection.execute(text(f"CREATE TRIGGER {fts}_au AFTER UPDATE ON {table} WHEN {differs} BEGIN "
                            f"INSERT INTO {fts}({fts}, rowid, {listed}) VALUES ('delete', old.record_id, {old}); "
                            f"INSERT INTO {fts}(rowid, {listed}) VALUES (new.record_id, {new}); END"))
    connection.execute(text(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')"))


def _drop_search(connection: Connection, projection: Projection) -> None:
    if connection.dialect.name != "sqlite":
        return
    fts = fts_table(projection)
    for suffix in ("_ai", "_ad", "_au"):
        connection.execute(text(f"DROP TRIGGER IF EXISTS {fts}{suffix}"))
    connection.execute(text(f"DROP TABLE IF EXISTS {fts}"))


def projection_scope(table: Table, reach: Any, principal: Any) -> Any:
    """A permissions.Scope over a projection table: unit paths as ranges of `unit_path` ("/1/4/" ≤ path < "/1/40",
    which its index answers; the paths are digits and "/", and "/" sorts before "0"), own records by creator."""
    if reach.everything:
        return literal_column("1") == literal_column("1")
    parts = [and_(table.c.unit_path >= p, table.c.unit_path < p[:-1] + chr(ord(p[-1]) + 1)) for p in sorted(reach.paths)]
    if reach.own:
        parts.append(table.c.created_by == principal.user_id)
    if reach.records:
        parts.append((table.c[f"f_{reach.record_key}"] if reach.record_key else table.c.record_id).in_(sorted(reach.records)))
    return or_(*parts) if parts else literal_column("1") == literal_column("0")


def search_condition(projection: Projection, dialect: str, keys: Iterable[str], typed: str) -> Any:
    """Records whose searchable fields `keys` (those the user may probe) hold every term of `typed`: a false
    condition when there is nothing to search in or for."""
    columns = [projection.fields[k].search for k in keys if projection.fields[k].search is not None]
    terms = query_terms(typed)
    if not columns or not terms:
        return literal_column("1") == literal_column("0")
    if dialect == "sqlite":
        phrases = " AND ".join(_fts5_phrase(term) for term in terms)
        fts = fts_table(projection)
        matching = text(f"SELECT rowid FROM {fts} WHERE {fts} MATCH :fts_query").bindparams(
            fts_query="{" + " ".join(columns) + "} : (" + phrases + ")")
        return projection.table.c.record_id.in_(matching.columns(literal_column("rowid")))
    conditions = []
    for term in terms:
        query = func.to_tsquery(literal_column("'simple'"), _tsquery(term))
        conditions.append(or_(*(func.to_tsvector(literal_column("'simple'"), projection.table.c[c]).op("@@")(query) for c in columns)))
    return and_(*conditions)


def _fts5_phrase(term: tuple[str, ...]) -> str:
    if len(term) == 1 and term[0].endswith("*"):
        return f'"{term[0][:-1]}" *'
    return '"' + " ".join(term) + '"'


def _tsquery(term: tuple[str, ...]) -> str:
    if len(term) == 1 and term[0].endswith("*"):
        return f"'{term[0][:-1]}':*"
    return " <-> ".join(f"'{token}'" for token in term)


_ROWS = ProjectionRows()


@dataclass(frozen=True)
class Prepared:
    """What start-up or a reload did to the projections: per form, the records recomputed at once, and those left
    to the background (`refresh_pending`, run by a server's ProjectionRefresher) because there were too many."""

    recomputed: Mapping[str, int]
    pending: Mapping[str, int]


def prepare_projections(db: Any, definitions: Definitions, inline_rows: int | None = None) -> Prepared:
    """Start-up and reload: tables and indexes made to match the definitions, then the stale rows recomputed, a
    batch per transaction (writers wait at most one batch). A form with more than `inline_rows` stale rows is left
    to the background (None: none is); until its rows are done, lists read what the old definition computed."""
    with db.engine.begin() as connection:
        stale = sync_projections(connection, definitions)
    done: dict[str, int] = {}
    pending: dict[str, int] = {}
    for key, count in stale.items():
        if not count:
            continue
        if inline_rows is not None and count > inline_rows:
            log.warning("表单 %s：%d 条记录将在后台按新定义重新计算", key, count)
            pending[key] = count
            continue
        log.warning("表单 %s：按当前定义重建 %d 条记录的索引数据", key, count)
        done[key] = _refresh_form(db, projection_of(definitions.forms[key], db.dialect), lambda: False, REFRESH_BATCH)
    if done:
        from engine.storage.db import gather_statistics  # noqa: PLC0415 — db imports nothing of this module's

        gather_statistics(db, stale_only=True)
    return Prepared(MappingProxyType(done), MappingProxyType(pending))


def _refresh_form(db: Any, projection: Projection, should_stop: Callable[[], bool], batch: int) -> int:
    """Every stale row of one form, a batch per write transaction; how many records were recomputed."""
    after = total = 0
    while not should_stop():
        with db.write() as s:
            last, count = _refresh_batch(s.connection(), projection, after, batch)
            s.commit()
        if not last:
            break
        after, total = last, total + count
    return total


def pending_refreshes(db: Any) -> dict[str, int]:
    """Forms with rows still to recompute after a definition change, and how many: the background's progress."""
    state = ProjectionState.__table__
    with db.read() as s:
        return {row.form_key: row.stale for row in s.execute(select(state.c.form_key, state.c.stale).where(state.c.stale > 0))}


def rows_to_recompute(db: Any, form_key: str) -> int:
    """One form's rows still to recompute (0 when none): its list says so while the background works."""
    state = ProjectionState.__table__
    with db.read() as s:
        return s.scalar(select(state.c.stale).where(state.c.form_key == form_key)) or 0


def refresh_pending(db: Any, definitions: Definitions, should_stop: Callable[[], bool] = lambda: False,
                    batch: int = BACKGROUND_BATCH) -> dict[str, int]:
    """The background's work: every form's stale rows recomputed with these definitions, in small batches (a
    writer waits at most one), until none is left or `should_stop`. Forms whose tables follow other definitions
    are left alone (see `_follows`). Returns how many records each form recomputed."""
    done: dict[str, int] = {}
    for key in pending_refreshes(db):
        form = definitions.forms.get(key)
        if form is None or should_stop():
            continue
        count = _refresh_form(db, projection_of(form, db.dialect), should_stop, batch)
        if count:
            done[key] = count
            log.warning("表单 %s：后台按新定义重新计算了 %d 条记录", key, count)
    if done:
        from engine.storage.db import gather_statistics  # noqa: PLC0415

        gather_statistics(db, stale_only=True)
    return done


def reproject(connection: Connection, projection: Projection, record_ids: Iterable[int]) -> None:
    """Recompute the rows of these records from their documents now (their document was changed other than
    through the writer: restored from an archive, repaired by hand)."""
    table = projection.table
    connection.execute(table.update().where(table.c.record_id.in_(list(record_ids))).values(def_version=""))
    refresh(connection, projection)
