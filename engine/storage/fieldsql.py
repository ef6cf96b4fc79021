"""SQL expressions over `records.data` that match the expression indexes, on SQLite and PostgreSQL.

Keys are YAML identifiers (checked by the meta-schema), so they are written into the SQL literally:
SQLite only uses an expression index when the query spells the very same expression, not a parameter.
"""
from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import ColumnElement, Index, Integer, Numeric, Text, case, cast, func, literal, literal_column, text
from sqlalchemy.engine import Connection

from engine.spec import FieldSpec, FormSpec
from engine.storage.models import Record

# The text form of a number as `to_json` stores it (decimals are JSON strings: "93.5").
_NUMBER_TEXT = r"^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)$"


def _one(dialect: str, key: str) -> ColumnElement:
    if dialect == "postgresql":
        # ->> yields text; typed so, LIKE and = compare text rather than going through the JSON type.
        return Record.data.op("->>", return_type=Text)(literal_column(f"'{key}'"))
    return func.json_extract(Record.data, literal_column(f"'$.{key}'"))


def value_expr(dialect: str, field: FieldSpec) -> ColumnElement:
    """The stored value of a field, read under its current key or any key it was renamed from."""
    parts = [_one(dialect, key) for key in field.stored_keys]
    return parts[0] if len(parts) == 1 else func.coalesce(*parts)


def sort_expr(dialect: str, field: FieldSpec) -> ColumnElement:
    """The value as the field type's `sql_type` orders it.

    Dates ("2010-03-05"), times, booleans and text already sort right as stored; numbers do not: PostgreSQL's
    ->> gives text and a decimal is stored as a JSON string, so "100" < "87.34" < "9" < "93.5". They are cast
    to NUMERIC; on PostgreSQL only text that reads as a number, so that a value left by an older definition of
    the field sorts as empty instead of failing the whole list."""
    expr = value_expr(dialect, field)
    if not _numeric(field):
        return expr
    if dialect == "postgresql":
        return case((expr.op("~")(literal(_NUMBER_TEXT)), cast(expr, Numeric)), else_=None)
    return cast(expr, Numeric)


def _numeric(field: FieldSpec) -> bool:
    sql_type = field.kind.sql_type
    return sql_type is not None and issubclass(sql_type, (Integer, Numeric))


def sql_value(dialect: str, stored: Any) -> Any:
    """A stored JSON value as the value expression returns it (json_extract keeps types, ->> gives text)."""
    if dialect == "postgresql":
        if isinstance(stored, bool):
            return "true" if stored else "false"
        return None if stored is None else str(stored)
    if isinstance(stored, bool):
        return int(stored)
    return stored


def form_is(form_key: str) -> ColumnElement:
    return Record.form_key == literal_column(f"'{form_key}'")


def index_name(prefix: str, form: str, field: FieldSpec) -> str:
    # The expression's keys are part of the name, so a new `renamed_from` replaces the old index; so is
    # the indexes' shape ("partial-value", "partial"), which replaces the earlier whole-table ones.
    shape = hashlib.sha1(("|".join(field.stored_keys) + ("|partial-value" if prefix == "ux" else "|partial")).encode()).hexdigest()[:6]
    return f"{prefix}_{form[:24]}_{field.key[:24]}_{shape}"


def wanted_indexes(dialect: str, form: FormSpec) -> list[tuple[Index, FieldSpec]]:
    """Unique fields get a unique index of the value over the form's own rows; filters and sort keys an
    ordinary (form_key, value) one.

    A unique index covers its own form's rows only: another form may use the same field key freely
    (every 奖惩记录 of one student carries that student's 学籍号).
    """
    indexes = []
    for key, field in form.fields.items():
        if field.unique:
            own_rows = form_is(form.key)
            # PostgreSQL: the value alone. With form_key as a leading column that the WHERE makes constant,
            # it drops that condition and walks the whole index for every lookup by value. SQLite keeps
            # (form_key, value): for an IN list of a few hundred values it picks an index by form_key.
            columns = (value_expr(dialect, field),) if dialect == "postgresql" else (Record.form_key, value_expr(dialect, field))
            index = Index(index_name("ux", form.key, field), *columns, unique=True,
                          sqlite_where=own_rows, postgresql_where=own_rows)
        elif key in form.list.filters or key == form.list.default_sort.lstrip("-"):
            # Partial too: saving a record then computes only its own form's index values (each one a
            # json_extract over the whole document), not every form's.
            own_rows = form_is(form.key)
            index = Index(index_name("dx", form.key, field), Record.form_key, value_expr(dialect, field),
                          sqlite_where=own_rows, postgresql_where=own_rows)
        else:
            continue
        indexes.append((index, field))
    return indexes


class IndexConflict(Exception):
    def __init__(self, form: FormSpec, field: FieldSpec, detail: str) -> None:
        super().__init__(f"表单“{form.title}”的字段“{field.label}”设为唯一，但已有重复的值，无法建立唯一索引：{detail}")
        self.form, self.field = form, field


def sync_indexes(connection: Connection, forms: dict[str, FormSpec] | Any) -> list[str]:
    """Create missing definition-driven indexes and drop ones no definition asks for; return created names."""
    dialect = connection.dialect.name
    existing = {ix["name"] for ix in _inspect_indexes(connection)}
    wanted: dict[str, tuple[Index, FormSpec, FieldSpec]] = {}
    for form in forms.values():
        for index, field in wanted_indexes(dialect, form):
            wanted[index.name] = (index, form, field)
    for name in sorted(existing - set(wanted)):
        if name.startswith(("ux_", "dx_")):
            connection.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
    created = []
    for name, (index, form, field) in wanted.items():
        if name in existing:
            continue
        try:
            with connection.begin_nested():
                index.create(connection)
        except Exception as exc:  # noqa: BLE001 — reported as a definition problem, with the DB's words
            raise IndexConflict(form, field, str(getattr(exc, "orig", exc)).splitlines()[0]) from exc
        created.append(name)
    return created


def _inspect_indexes(connection: Connection) -> list[dict]:
    if connection.dialect.name == "postgresql":
        rows = connection.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'records' AND schemaname = current_schema()"))
    else:
        rows = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'"))
    return [{"name": row[0]} for row in rows]
