"""Statements compiled once per dialect and run on the driver's own cursor: for the few statements of a hot path.

SQLAlchemy's `Connection.execute` does much for each statement that these writes never need: the compiled-cache
lookup, an execution context, a result object, events: on a one-row UPDATE, about three times the work of the
statement itself (bench/RESULTS.md, workflows, seventh session; `bench/decide_cost.py` counts it). A decision
writes five or six rows, on SQLite while it holds the database's only write lock. What stays SQLAlchemy's: the SQL
and its bind types (compiled from the same Core statement, values converted by the same bind processors), the
transaction (these run on the connection it holds), and its exceptions (a driver's error is raised as SQLAlchemy's
IntegrityError, OperationalError …, so callers catch what they always caught).

`Write` gives a rowcount; `Read` gives rows as named tuples, converted by the columns' own result processors (a
DateTime from SQLite's text, JSON). Not for anything an event listener must see.
"""
from __future__ import annotations

from collections import namedtuple
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bind parameters, in the positional order when the driver's style is positional
    positional: bool
    fixed: Mapping[str, Any]  # values the statement carries itself (`status == "open"`)
    processors: Mapping[str, Callable[[Any], Any]]

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        converted = {}
        for name in self.names:
            value = params[name] if name in params else self.fixed[name]
            process = self.processors.get(name)
            converted[name] = value if process is None else process(value)
        return tuple(converted[name] for name in self.names) if self.positional else converted


class Write:
    """An INSERT, UPDATE or DELETE that returns no rows; `run` gives its rowcount.

    An INSERT is compiled for one set of columns, the keys of the rows it is given (each call's rows have the same
    keys); a column left out gets the database's default, never a Python-side default."""

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def run(self, connection: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
        """One row of `params`, or many (one executemany)."""
        rows = [params] if isinstance(params, Mapping) else list(params)
        if not rows:
            return 0
        dialect = connection.dialect
        compiled = self._for(dialect, tuple(sorted(rows[0])))
        values = [compiled.values(row) for row in rows]
        with _cursor(connection, compiled.sql, values) as cursor:
            if len(values) == 1:
                cursor.execute(compiled.sql, values[0])
            else:
                cursor.executemany(compiled.sql, values)
            return cursor.rowcount

    def _for(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        key = (dialect.name, keys)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _compile(self.statement, dialect, keys)
        return compiled


class Read:
    """A SELECT; `all`/`first` give its rows as named tuples, each column's value as SQLAlchemy would give it."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        names = [column.key for column in statement.selected_columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{statement!s:.80}: selected column names repeat; label them")
        self._row = namedtuple("Row", names)  # type: ignore[misc]
        self._compiled: dict[str, _Compiled] = {}
        self._results: dict[str, list[Callable[[Any], Any] | None]] = {}

    def all(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        dialect = connection.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = _compile(self.statement, dialect, tuple(sorted(params)))
        values = compiled.values(params)
        with _cursor(connection, compiled.sql, values) as cursor:
            cursor.execute(compiled.sql, values)
            fetched = cursor.fetchall()
            processors = self._results.get(dialect.name)
            if processors is None:  # from the first answer's column types, which some processors look at
                processors = self._results[dialect.name] = [
                    column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                    for column, described in zip(self.statement.selected_columns, cursor.description)]
        make = self._row._make
        if not any(processors):
            return [make(row) for row in fetched]
        return [make([value if process is None or value is None else process(value)
                      for process, value in zip(processors, row)]) for row in fetched]

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any | None:
        rows = self.all(connection, params)
        return rows[0] if rows else None


@contextmanager
def _cursor(connection: Connection, sql: str, values: Any) -> Iterator[Any]:
    """The driver's cursor on the connection's transaction; a driver error raised as SQLAlchemy's."""
    dialect = connection.dialect
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor)
        if lost:  # as SQLAlchemy does: the pool must not hand this connection out again
            connection.invalidate(exc)
        raise DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost,
                                  dialect=dialect) from exc
    finally:
        cursor.close()


def _compile(statement: UpdateBase | Select[Any], dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if compiled.escaped_bind_names:  # a bind name the driver cannot take as it is; ours are plain words
        raise ValueError(f"bind names need escaping: {sorted(compiled.escaped_bind_names)}")
    prefetch = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
    if prefetch:  # a default SQLAlchemy computes in Python before it executes; these rows must carry it themselves
        raise ValueError(f"{statement!s:.80} needs values for {prefetch} (Python-side defaults)")
    binds = {name: bind for bind, name in compiled.bind_names.items()}  # as rendered in the SQL
    positional = bool(compiled.positional)
    names = tuple(compiled.positiontup or ()) if positional else tuple(binds)
    fixed = {name: bind.value for name, bind in binds.items() if not bind.required and name not in keys}
    missing = [name for name in names if name not in keys and name not in fixed]
    if missing:
        raise ValueError(f"{statement!s:.80} needs values for {missing}")
    processors = {}
    for name, bind in binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[name] = process
    return _Compiled(compiled.string, names, positional, fixed, processors)
