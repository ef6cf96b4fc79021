"""Writes compiled once per dialect and run on the driver's own cursor: for the few statements of a hot path.

SQLAlchemy's `Connection.execute` does much for each statement that these writes never need: the compiled-cache
lookup, an execution context, a result object, events. On PostgreSQL (psycopg) a one-row UPDATE through it took
about three times the wall time and CPU of the same compiled SQL sent on the driver's cursor (five of a workflow
decision's writes: 1.0 ms and 0.5 ms of CPU against 0.3 and 0.16, bench/RESULTS.md, seventh session). A decision
writes five or six rows, on SQLite while it holds the database's only write lock. What stays SQLAlchemy's: the SQL
and its bind types (compiled from the same Core statement, values converted by the same bind processors), the
transaction (these run on the connection it holds), and its exceptions (a driver's error is raised as SQLAlchemy's
IntegrityError, OperationalError …, so callers catch what they always caught).

Not for statements that return rows, and not for anything an event listener must see.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import Connection
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
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if len(values) == 1:
                cursor.execute(compiled.sql, values[0])
            else:
                cursor.executemany(compiled.sql, values)
            return cursor.rowcount
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor):
                connection.invalidate(exc)
            raise DBAPIError.instance(compiled.sql, values, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
        finally:
            cursor.close()

    def _for(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        key = (dialect.name, keys)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _compile(self.statement, dialect, keys)
        return compiled


def _compile(statement: UpdateBase, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
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
