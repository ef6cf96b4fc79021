"""Writes run on the driver's cursor (engine/storage/statements.py) store what SQLAlchemy's own execute stores."""
from __future__ import annotations

import datetime as dt
from typing import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from engine.storage.statements import Read, Write

metadata = sa.MetaData()
things = sa.Table(
    "stmt_things", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40), nullable=False, unique=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("at", sa.DateTime),
    sa.Column("data", sa.JSON),
    sa.Column("active", sa.Boolean),
)
with_default = sa.Table(
    "stmt_defaults", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime, default=dt.datetime.now),
)
INSERT = Write(sa.insert(things))
ADVANCE = Write(
    sa.update(things).where(things.c.id == sa.bindparam("b_id"), things.c.status == "open")
    .values(status=sa.bindparam("b_status"), revision=things.c.revision + 1, at=sa.bindparam("b_at", type_=sa.DateTime))
)
MOMENT = dt.datetime(2026, 11, 25, 8, 30)  # no microseconds: SQLite's text form must still be SQLAlchemy's own


@pytest.fixture
def engine(fresh_db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(fresh_db_url)
    metadata.create_all(engine)
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


def _row(name: str, **values: object) -> dict[str, object]:
    return {"name": name, "status": "open", "revision": 1, "at": MOMENT, "data": {"姓名": "张三", "n": [1, None]},
            "active": True, **values}


def test_insert_and_update__stored_as_sqlalchemy_stores_them(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        assert INSERT.run(connection, _row("a")) == 1
        assert INSERT.run(connection, [_row("c"), _row("d", data=None)]) == 2
        connection.execute(sa.insert(things), [_row("b"), _row("e", data=None)])  # through SQLAlchemy's own execute
    with engine.connect() as connection:
        stored = {r.name: r for r in connection.execute(sa.select(things))}
        raw = {name: (at, data) for name, at, data in connection.execute(sa.text(
            "SELECT name, CAST(at AS VARCHAR(40)), CAST(data AS VARCHAR(200)) FROM stmt_things"))}
    assert raw["a"] == raw["b"] == raw["c"] and raw["d"] == raw["e"]
    assert stored["a"].at == MOMENT and stored["a"].data == {"姓名": "张三", "n": [1, None]} and stored["d"].data is None

    later = MOMENT + dt.timedelta(hours=1, microseconds=5)
    with engine.begin() as connection:
        # The statement's own value ("open") is part of it: a row no longer open is not changed again.
        assert ADVANCE.run(connection, {"b_id": stored["a"].id, "b_status": "approved", "b_at": later}) == 1
        assert ADVANCE.run(connection, {"b_id": stored["a"].id, "b_status": "rejected", "b_at": later}) == 0
    with engine.connect() as connection:
        row = connection.execute(sa.select(things).where(things.c.id == stored["a"].id)).one()
    assert (row.status, row.revision, row.at) == ("approved", 2, later)


def test_driver_error__raised_as_sqlalchemy_error_and_transaction_undone(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        INSERT.run(connection, _row("a"))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        INSERT.run(connection, _row("new"))
        INSERT.run(connection, _row("a"))
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(things)) == 1


def test_python_side_default__refused_rather_than_left_out(engine: sa.Engine) -> None:
    with engine.begin() as connection, pytest.raises(ValueError, match="Python-side defaults"):
        Write(sa.insert(with_default)).run(connection, {"id": 1})


def test_missing_value__named(engine: sa.Engine) -> None:
    with engine.begin() as connection, pytest.raises(ValueError, match="b_at"):
        ADVANCE.run(connection, {"b_id": 1, "b_status": "approved"})


def test_read__rows_as_sqlalchemy_gives_them(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        INSERT.run(connection, [_row("a"), _row("b", data=None, at=None, active=False)])
    query = sa.select(things).where(things.c.revision == sa.bindparam("b_revision"), things.c.status == "open")
    reader = Read(query.order_by(things.c.name))
    with engine.connect() as connection:
        mine = reader.all(connection, {"b_revision": 1})
        theirs = connection.execute(query.order_by(things.c.name), {"b_revision": 1}).all()
        assert reader.first(connection, {"b_revision": 2}) is None
    assert [tuple(r) for r in mine] == [tuple(r) for r in theirs]
    assert (mine[0].at, mine[0].data, mine[0].active, mine[1].active) == (MOMENT, {"姓名": "张三", "n": [1, None]}, True, False)
    assert isinstance(mine[0].active, bool)


def test_read__repeated_column_names_refused() -> None:
    with pytest.raises(ValueError, match="label"):
        Read(sa.select(things.c.id, with_default.c.id))
