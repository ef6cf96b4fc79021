"""SQLite transactions: a writer takes the write lock when it begins (BEGIN IMMEDIATE), before it reads, so
read-check-write sequences cannot interleave; a reader does not block writers."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.storage.db import Database


def _other_writer_can_start(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    with database.write() as s:
        s.execute(text("CREATE TABLE t (v INTEGER)"))
        s.commit()
    yield database
    database.dispose()


def test_a_write_session_holds_the_write_lock_from_its_first_read(db: Database, tmp_path: Path) -> None:
    with db.write() as s:
        s.execute(text("SELECT count(*) FROM t")).scalar_one()  # only a read so far
        assert not _other_writer_can_start(tmp_path / "t.db")
        s.commit()
    assert _other_writer_can_start(tmp_path / "t.db")


def test_a_read_session_leaves_writers_free(db: Database, tmp_path: Path) -> None:
    with db.read() as s:
        s.execute(text("SELECT count(*) FROM t")).scalar_one()
        assert s.in_transaction()
        assert _other_writer_can_start(tmp_path / "t.db")


def test_engine_begin_is_one_transaction(db: Database) -> None:
    """Start-up and reload run DDL through `engine.begin()`: it must be one transaction, not autocommitted statements."""
    with pytest.raises(RuntimeError):
        with db.engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("fails half way")
    with db.read() as s:
        assert s.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
