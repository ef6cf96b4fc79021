"""Database engines and schema upgrades (Alembic, run in-process at start-up)."""
from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Pages in the WAL before a committing connection checkpoints it itself. SQLite's default is 1,000 (4 MB), which puts a
# ~12 ms checkpoint into every ~40th save; the Checkpointer below does that work between requests, so this is only
# the safety net for when it falls behind or is not running.
AUTOCHECKPOINT_PAGES = 10_000
log = logging.getLogger("dangan")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # pysqlite's own transaction handling defers BEGIN; we issue it ourselves (below) so that
        # writers take the lock up front and concurrent saves serialise instead of failing late.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # type: ignore[no-untyped-def]
        write = connection.get_execution_options().get("write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine) -> None:
    """Create or upgrade the engine tables to the newest revision."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")


def sqlite_file(url: str) -> str | None:
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return path if path and path != ":memory:" else None


class Checkpointer:
    """Copies a SQLite database's write-ahead log back into the database file from a thread of its own,
    every `interval` seconds, so that no request pays for it (a PASSIVE checkpoint: it never waits for
    readers or writers, it copies what it can)."""

    def __init__(self, path: str, interval: float = 0.2) -> None:
        self.path, self.interval = path, interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dangan-sqlite-checkpoint", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        wal, copied = Path(self.path + "-wal"), None
        while not self.stopping.wait(self.interval):
            try:
                seen = wal.stat()
            except OSError:  # no WAL (yet, or the database is gone)
                continue
            # A passive checkpoint leaves the WAL file as it is; unchanged since, there is nothing to copy.
            if (seen.st_mtime_ns, seen.st_size) == copied:
                continue
            try:
                connection = sqlite3.connect(self.path, timeout=0.1)
                try:
                    _busy, frames, done = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                finally:
                    connection.close()
                if done == frames:  # all of it; otherwise try again next time
                    copied = (seen.st_mtime_ns, seen.st_size)
            except sqlite3.Error as exc:  # busy or gone: the next tick, or the connections' own autocheckpoint
                log.debug("sqlite checkpoint skipped: %s", exc)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


class Database:
    """One engine, two session factories: `read` for queries, `write` for transactions that change data.

    On SQLite a write transaction starts with BEGIN IMMEDIATE, taking the write lock before it reads,
    so read-check-write sequences (optimistic locks, sequences, workflow steps) cannot interleave.
    On PostgreSQL both are ordinary transactions and writers lock rows explicitly.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.read = sessionmaker(self.engine, expire_on_commit=False)
        self.write = sessionmaker(self.engine.execution_options(write=True), expire_on_commit=False)
        path = sqlite_file(url)
        self.checkpointer = Checkpointer(path) if path else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> None:
        upgrade(self.engine)

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer = None
        self.engine.dispose()
