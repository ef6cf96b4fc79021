"""Counting what a database holds (rows per table, records per form) and which schema revision it is at."""
from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, inspect, select, table, text

from engine.backup.manifest import Counts
from engine.storage.db import alembic_config
from engine.storage.models import Record


def count_rows(connection: Connection) -> Counts:
    """Every table of the connection's schema (including ones this code does not know), in its transaction."""
    names = sorted(inspect(connection).get_table_names())
    tables = {name: connection.execute(select(func.count()).select_from(table(name))).scalar_one() for name in names}
    by_form: dict[str, int] = {}
    if "records" in names:
        by_form = {key: n for key, n in connection.execute(
            select(Record.form_key, func.count()).group_by(Record.form_key))}
    return Counts(tables, by_form)


def revision_of(connection: Connection) -> str:
    """The schema revisions recorded in the database ("" before the first migration)."""
    if "alembic_version" not in inspect(connection).get_table_names():
        return ""
    return ",".join(sorted(connection.execute(text("SELECT version_num FROM alembic_version")).scalars()))


def code_revision() -> str:
    """The revisions this code's migrations end at: what a database it serves is upgraded to."""
    return ",".join(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))
