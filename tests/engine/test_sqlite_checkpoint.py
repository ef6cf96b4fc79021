"""SQLite's write-ahead log is copied into the database file by a background thread, not by a request."""
from __future__ import annotations

import sqlite3
import struct
import threading
import time
from pathlib import Path

from sqlalchemy import text

from engine.storage import db as db_module
from engine.storage.db import AUTOCHECKPOINT_PAGES, RESTART_FRAMES, Checkpointer, Database, tune_sqlite_connection


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


def _wal_restarts(path: Path) -> int:
    """The WAL header's checkpoint sequence number: SQLite adds one each time a writer begins the WAL anew."""
    with open(f"{path}-wal", "rb") as wal:
        return struct.unpack(">I", wal.read(16)[12:16])[0]


def test_under_writes_without_a_pause__the_wal_still_begins_anew(tmp_path: Path) -> None:
    """A passive checkpoint never catches up with a writer that does not pause, so the WAL would only grow until
    the commits checkpointed themselves; once it holds restart_frames, the checkpointer restarts it."""
    assert RESTART_FRAMES < AUTOCHECKPOINT_PAGES
    path = tmp_path / "busy.db"
    writer = sqlite3.connect(path, check_same_thread=False)
    tune_sqlite_connection(writer)  # as the app's connections: autocheckpoint far above what this test writes
    writer.execute("CREATE TABLE t (v BLOB)")
    written, stop = [0], threading.Event()

    def write() -> None:
        while not stop.is_set() and written[0] < 2_000:  # a few thousand frames in all, below the autocheckpoint
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO t VALUES (randomblob(3000))")
            writer.execute("COMMIT")
            written[0] += 1
            time.sleep(0.0002)  # as the event loop's writes leave the lock free between turns; never long enough

    checkpointer = Checkpointer(str(path), interval=0.01, restart_frames=200)
    thread = threading.Thread(target=write)
    try:
        thread.start()
        thread.join(timeout=60)
    finally:
        stop.set()
        thread.join()
        checkpointer.stop()
    assert written[0] == 2_000
    assert _wal_restarts(path) >= 5  # without the restart: 0 (a passive checkpoint never copies the last frame)
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 2_000
    writer.close()


def test_a_restart_a_reader_holds_up__is_not_tried_again_at_once(tmp_path: Path, monkeypatch) -> None:
    """A RESTART holds writers up while it waits for readers; after one a reader kept from finishing, the
    checkpointer only copies (PASSIVE) until the back-off has passed."""
    issued: list[str] = []

    class Recording(sqlite3.Connection):
        def execute(self, sql, *args):  # type: ignore[no-untyped-def, override]
            issued.append(sql)
            return super().execute(sql, *args)

    real_connect = sqlite3.connect
    monkeypatch.setattr(db_module.sqlite3, "connect", lambda *a, **k: real_connect(*a, factory=Recording, **k))
    monkeypatch.setattr(db_module, "RESTART_BACKOFF_SECONDS", 0.3)
    path = tmp_path / "r.db"
    writer = real_connect(path, isolation_level=None)
    tune_sqlite_connection(writer)
    writer.execute("CREATE TABLE t (v BLOB)")
    reader = real_connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # a read transaction on the WAL as it is now
    for _ in range(30):
        writer.execute("INSERT INTO t VALUES (randomblob(3000))")
    checkpointer = Checkpointer(str(path), interval=3600, restart_frames=10)  # its thread stays asleep
    try:
        checkpointer._checkpoint()
        assert issued == ["PRAGMA wal_checkpoint(PASSIVE)", "PRAGMA wal_checkpoint(RESTART)"]  # gave up: the reader
        issued.clear()
        checkpointer._checkpoint()
        assert issued == ["PRAGMA wal_checkpoint(PASSIVE)"]
        reader.execute("COMMIT")
        time.sleep(0.35)
        issued.clear()
        before = _wal_restarts(path)
        frames, done = checkpointer._checkpoint()
        assert issued == ["PRAGMA wal_checkpoint(PASSIVE)", "PRAGMA wal_checkpoint(RESTART)"] and frames == done
        writer.execute("INSERT INTO t VALUES (1)")
        assert _wal_restarts(path) == before + 1
    finally:
        checkpointer.stop()
        reader.close()
        writer.close()


def test_postgresql_url__no_checkpointer() -> None:
    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert db.checkpointer is None
    db.dispose()
