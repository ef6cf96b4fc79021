"""SQLite's write-ahead log is copied into the database file by a background thread, not by a request."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import text

from engine.storage.db import AUTOCHECKPOINT_PAGES, Database


def _in_main_file(path: Path, value: str) -> bool:
    """Read the database file alone, ignoring the WAL: what a checkpoint has copied there."""
    connection = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return connection.execute("SELECT count(*) FROM t WHERE v = ?", (value,)).fetchone()[0] == 1
    except sqlite3.OperationalError:  # not even the table yet
        return False
    finally:
        connection.close()


def test_committed_rows__reach_the_database_file_without_a_request_checkpointing(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = Database(f"sqlite:///{path}")
    try:
        with db.write() as s:
            s.execute(text("CREATE TABLE t (v TEXT)"))
            s.commit()
        with db.write() as s:
            # A few pages only: far below the connections' own threshold, so only the thread can copy it.
            assert s.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == AUTOCHECKPOINT_PAGES
            s.execute(text("INSERT INTO t VALUES ('x')"))
            s.commit()
        deadline = time.monotonic() + 5
        while not (path.exists() and _in_main_file(path, "x")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _in_main_file(path, "x")
    finally:
        db.dispose()
    assert db.checkpointer is None


def test_postgresql_url__no_checkpointer() -> None:
    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert db.checkpointer is None
    db.dispose()
