"""Database engines and schema upgrades (Alembic, run in-process at start-up)."""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Pages in the WAL before a committing connection checkpoints it itself: only the safety net, the Checkpointer below
# does that work off the event loop (why and the sizes: bench/RESULTS.md, workflows, fifth session).
AUTOCHECKPOINT_PAGES = 40_000
# WAL frames (4 KB each) at which the Checkpointer begins the WAL anew, below AUTOCHECKPOINT_PAGES so that it comes
# first; how long it waits for the write lock and readers, and how long it leaves the WAL alone after a reader made it
# give up. The WAL file keeps that size (~128 MB) once grown.
RESTART_FRAMES = 32_768
RESTART_WAIT_SECONDS = 0.1
RESTART_BACKOFF_SECONDS = 5.0
# A pooled PostgreSQL connection idle for longer than this is pinged before use; see _ping_when_idle.
PING_AFTER_IDLE_SECONDS = 5.0
STAT_ROWS = 2_000  # rows SQLite's ANALYZE reads per index (PRAGMA analysis_limit): enough for the planner, fast at a million
log = logging.getLogger("dangan")
T = TypeVar("T")


# PostgreSQL connections one process may hold: the transactions' pool (kept, plus overflow under load) and the small
# autocommit pool of single reads. Several worker processes split CONNECTION_BUDGET between them, so that all of them
# together stay well below PostgreSQL's default max_connections (100).
POOL_SIZE, POOL_OVERFLOW = 10, 20
CONNECTION_BUDGET = 70
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's answer to a NOWAIT row lock another transaction holds
_QUERY_CANCELED = "57014"  # statement_timeout
_NOWAIT = "dangan.lock_nowait"  # Session.info key read by lock_rows
# How long a SQLite writer's BEGIN IMMEDIATE waits for another connection's write transaction (SQLite's busy handler
# sleeps meanwhile). 0 inside no_lock_waits: a writer on the event loop must not sleep there.
BUSY_TIMEOUT_MS = 30_000
# False inside no_lock_waits: the write sessions opened (PostgreSQL) and the SQLite transactions begun there refuse
# to wait for a lock. A context variable, so that engine services need no parameter for it (web/writes.py sets it).
_lock_waits: ContextVar[bool] = ContextVar("dangan_lock_waits", default=True)
_BUSY_TIMEOUT = {True: f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}", False: "PRAGMA busy_timeout=0"}


@dataclass(frozen=True)
class ServerTimeouts:
    """What PostgreSQL itself ends, whoever holds the connection (set on every connection of ours; 0 = no limit).

    A client that stops talking in the middle of a transaction (a process killed, or frozen) would otherwise keep
    it open with its locks for ever, and every writer after it would queue behind. `idle_in_transaction` ends such a
    transaction; `lock` bounds how long a statement waits for a lock (as SQLite's busy timeout does); `statement`
    bounds any one statement. Settings: docs/operations.md."""

    statement_seconds: float = 300
    lock_seconds: float = BUSY_TIMEOUT_MS / 1000
    idle_in_transaction_seconds: float = 60

    def statement(self) -> str:
        ms = {"statement_timeout": self.statement_seconds, "lock_timeout": self.lock_seconds,
              "idle_in_transaction_session_timeout": self.idle_in_transaction_seconds}
        return "; ".join(f"SET {name} = {int(seconds * 1000)}" for name, seconds in ms.items())


class LockBusy(Exception):
    """Another transaction holds what this one needs (a PostgreSQL row, SQLite's write lock), and this one asked not
    to wait for it."""


@contextmanager
def no_lock_waits() -> Iterator[None]:
    """Write transactions begun inside refuse at once instead of waiting for a lock another transaction holds, and
    the refusal is raised as LockBusy, so that a caller on the event loop can redo the work where waiting blocks
    nobody (a thread). PostgreSQL: the row locks (`lock_rows`) of sessions opened by `Database.write` inside. SQLite:
    the write lock a BEGIN IMMEDIATE inside takes, which another process (an import, a command) or the checkpointer
    may hold. Engine code needs to know nothing of it: web/writes.py's WriteRunner sets it around a job."""
    token = _lock_waits.set(False)
    try:
        yield
    except OperationalError as exc:
        if _lock_refused(exc.orig):
            raise LockBusy() from exc
        raise
    finally:
        _lock_waits.reset(token)


def _lock_refused(error: BaseException | None) -> bool:
    if isinstance(error, sqlite3.OperationalError):
        return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
    return getattr(error, "sqlstate", None) == _LOCK_NOT_AVAILABLE


def gave_up_waiting(error: BaseException | None) -> bool:
    """The database ended a wait (ServerTimeouts: a lock or a statement that took too long; SQLite's busy timeout)."""
    return _lock_refused(error) or getattr(error, "sqlstate", None) == _QUERY_CANCELED


def lock_rows(session: Session, nowait: T, waiting: T) -> T:
    """Which of a locking query's two forms (…FOR UPDATE NOWAIT, …FOR UPDATE) this session's transaction uses."""
    return nowait if session.info.get(_NOWAIT) else waiting


def make_engine(url: str, begin: str = "BEGIN", pool: tuple[int, int] = (POOL_SIZE, POOL_OVERFLOW),
                timeouts: ServerTimeouts = ServerTimeouts()) -> Engine:
    """`begin`: how a SQLite transaction starts on this engine's connections (BEGIN, or BEGIN IMMEDIATE for writers).
    `pool`: PostgreSQL connections kept and the overflow allowed under load."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _tune_sqlite(engine, begin)
        return engine
    engine = create_engine(url, pool_size=pool[0], max_overflow=pool[1])
    _ping_when_idle(engine)
    _bound_by_server(engine, timeouts)
    return engine


def _bound_by_server(engine: Engine, timeouts: ServerTimeouts) -> None:
    """A pool event, paid once per new connection (a connection event would run on every statement)."""
    statement = timeouts.statement()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        with dbapi_connection.cursor() as cursor:
            cursor.execute(statement)
        dbapi_connection.commit()


def make_autocommit_engine(url: str, pool: tuple[int, int] = (2, 3), timeouts: ServerTimeouts = ServerTimeouts()) -> Engine:
    """PostgreSQL connections that run each statement on its own: a single read needs no BEGIN and ROLLBACK round
    trips, and a pool of its own saves switching a shared connection's mode on every checkout and checkin."""
    engine = create_engine(url, pool_size=pool[0], max_overflow=pool[1], isolation_level="AUTOCOMMIT")
    _ping_when_idle(engine)
    _bound_by_server(engine, timeouts)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pool_pre_ping costs a round trip on every checkout, i.e. twice per request. A connection that
    was in use a moment ago is alive; only one that sat idle (the server restarted, a firewall dropped it) is
    pinged, and a dead one is replaced before the request sees it. A connection lost in the middle of a busy
    moment still fails that one statement, and the pool then replaces all its older connections."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):  # type: ignore[no-untyped-def]
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


def _tune_sqlite(engine: Engine, begin: str) -> None:
    """SQLAlchemy's recipe for pysqlite transactions: we issue BEGIN (or BEGIN IMMEDIATE) ourselves."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        tune_sqlite_connection(dbapi_connection)

    writer = begin != "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # type: ignore[no-untyped-def]
        raw = connection.connection.driver_connection
        try:
            if writer:  # waiting for the write lock as long as this transaction may (no_lock_waits)
                raw.execute(_BUSY_TIMEOUT[_lock_waits.get()])
            raw.execute(begin)
        except sqlite3.Error as exc:  # raised as SQLAlchemy's own (OperationalError …), as from any statement
            raise DBAPIError.instance(begin, None, exc, sqlite3.Error) from exc


def tune_sqlite_connection(dbapi_connection: sqlite3.Connection) -> None:
    """What every SQLite connection of ours is set to (also used by bench/excel_import.py's bare write)."""
    # pysqlite's own transaction handling defers BEGIN; we issue it ourselves (_tune_sqlite) so that
    # writers take the lock up front and concurrent saves serialise instead of failing late.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    cursor.close()


UPGRADE_LOCK = 0x64616E67616E  # the advisory lock key PostgreSQL upgrades take turns on ("dangan")


# The migrations' heads (engine/migrations/versions/: imports branched off the core tables early, so two). A database
# already there is not handed to alembic: loading alembic and every migration script was a fifth of a `dangan
# import`'s start. tests/test_infra_db.py checks these are alembic's heads, so a new migration cannot be forgotten.
HEAD_REVISIONS = frozenset({"0002", "0030"})


def alembic_config() -> Any:
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def at_head(engine: Engine) -> bool:
    """Whether the tables are at HEAD_REVISIONS already (a read; a new or older database says no)."""
    with engine.connect() as connection:
        try:
            versions = {row[0] for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")}
        except DBAPIError:
            return False
    return versions == HEAD_REVISIONS


def upgrade(engine: Engine) -> None:
    """Create or upgrade the engine tables to the newest revision."""
    if at_head(engine):
        return
    from alembic import command  # noqa: PLC0415

    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # an index built over many rows may take longer than a request
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            connection.exec_driver_sql("SET LOCAL lock_timeout = 0")
            # Processes starting on one new database at once (a server and a command) take turns: the second finds
            # the tables made instead of failing on "alembic_version already exists". (SQLite: BEGIN IMMEDIATE.)
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({UPGRADE_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for PostgreSQL and for an in-memory database (`sqlite://`)."""
    if not url.startswith("sqlite"):
        return None
    path = make_url(url).database
    return path if path and path != ":memory:" else None


def in_memory_sqlite(url: str) -> bool:
    """A SQLite database that exists in one process only (`sqlite://`, `sqlite:///:memory:`)."""
    return url.startswith("sqlite") and sqlite_file(url) is None


class Checkpointer:
    """Copies a SQLite database's write-ahead log back into the database file from a thread of its own,
    every `interval` seconds, so that no request pays for it (a PASSIVE checkpoint: it never waits for
    readers or writers, it copies what it can).

    Under a steady stream of writes a passive checkpoint never catches up with the last frame, so no writer begins the
    WAL anew and commits would end up checkpointing themselves, fsyncs on the event loop (bench/RESULTS.md, workflows,
    fifth session). Once the WAL holds `restart_frames`, this thread takes a RESTART checkpoint instead: it holds the
    write lock while it copies the last frames, so the next writer begins the WAL anew. Writers on the event loop do
    not wait for it (LockBusy)."""

    def __init__(self, path: str, interval: float = 0.2, restart_frames: int = RESTART_FRAMES) -> None:
        self.path, self.interval, self.restart_frames = path, interval, restart_frames
        self.restart_after = 0.0  # time.monotonic() before which no RESTART is tried
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
                frames, done = self._checkpoint()
                if done == frames:  # all of it; otherwise try again next time
                    copied = (seen.st_mtime_ns, seen.st_size)
            except sqlite3.Error as exc:  # busy or gone: the next tick, or the connections' own autocheckpoint
                log.debug("sqlite checkpoint skipped: %s", exc)

    def _checkpoint(self) -> tuple[int, int]:
        """One checkpoint: (frames in the WAL, frames copied into the database file)."""
        connection = sqlite3.connect(self.path, timeout=RESTART_WAIT_SECONDS)  # PASSIVE never waits
        try:
            _busy, frames, done = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames < self.restart_frames or time.monotonic() < self.restart_after:
                return frames, done
            # A RESTART holds the write lock while it waits for readers. One that a long reader (an export, say)
            # kept from finishing is not tried again for a while, so that writers are held up at most
            # RESTART_WAIT_SECONDS every RESTART_BACKOFF_SECONDS; the autocheckpoint covers the meantime.
            self.restart_after = time.monotonic() + RESTART_BACKOFF_SECONDS
            busy, frames, done = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            if not busy:
                self.restart_after = 0.0
            return frames, done
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


def _transaction_pool(processes: int) -> tuple[int, int]:
    """One process keeps POOL_SIZE (+ POOL_OVERFLOW); several split the budget, minus each one's autocommit pool (5)."""
    if processes <= 1:
        return POOL_SIZE, POOL_OVERFLOW
    most = max(6, CONNECTION_BUDGET // processes - 5)
    return most // 2, most - most // 2


class Database:
    """One engine, two session factories: `read` for queries, `write` for transactions that change data.

    On SQLite a write transaction starts with BEGIN IMMEDIATE, taking the write lock before it reads,
    so read-check-write sequences (optimistic locks, sequences, workflow steps) cannot interleave.
    On PostgreSQL both are ordinary transactions and writers lock rows explicitly.
    """

    def __init__(self, url: str, processes: int = 1, checkpoint: bool = True,
                 timeouts: ServerTimeouts = ServerTimeouts()) -> None:
        """`processes`: how many processes of one server open this database (PostgreSQL pools are sized to share).
        `checkpoint`: run the Checkpointer for a SQLite file (one process of a server does).
        `timeouts`: what PostgreSQL ends by itself (ServerTimeouts)."""
        self.url = url
        self.engine = make_engine(url, pool=_transaction_pool(processes), timeouts=timeouts)
        self.read = sessionmaker(self.engine, expire_on_commit=False)
        path = sqlite_file(url)
        # SQLite writers start with BEGIN IMMEDIATE, so they get an engine (and a pool of connections) of their own.
        # An in-memory database exists once per connection pool, so it keeps one engine.
        self._write_engine = make_engine(url, begin="BEGIN IMMEDIATE") if path else None
        self._write = sessionmaker(self._write_engine or self.engine, expire_on_commit=False)
        self._autocommit = make_autocommit_engine(url, timeouts=timeouts) if self.dialect == "postgresql" else None
        self.checkpointer = Checkpointer(path) if path and checkpoint else None

    def write(self) -> Session:
        """A session for a transaction that changes data. Opened inside `no_lock_waits`, its locks refuse to wait."""
        session = self._write()
        if not _lock_waits.get():
            session.info[_NOWAIT] = True
        return session

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def one_writer(self) -> bool:
        """A write transaction holds the whole database (SQLite's write lock), not rows: every other writer of every
        process waits while one writes, so work that needs no lock is best done before the write transaction."""
        return self.dialect == "sqlite"

    def upgrade(self) -> None:
        # SQLite: on the writers' engine (BEGIN IMMEDIATE), so that a second process waits for the first one's tables.
        upgrade(self._write_engine or self.engine)

    @contextmanager
    def single(self) -> Iterator[Connection]:
        """A connection for one statement that needs no transaction around it (the per-request session lookup)."""
        with (self._autocommit or self.engine).connect() as connection:
            yield connection

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer = None
        for engine in self.engines:
            engine.dispose()

    def detach_after_fork(self) -> None:
        """In a forked child that never uses the database: forget the parent's pooled connections without closing
        them (closing would end the parent's sessions; SQLAlchemy's advice for forked processes)."""
        for engine in self.engines:
            engine.dispose(close=False)

    @property
    def engines(self) -> list[Engine]:
        """Every engine this database uses (SQLite: readers and writers; PostgreSQL: transactions and single reads)."""
        return [e for e in (self.engine, self._write_engine, self._autocommit) if e is not None]


def gather_statistics(db: Database, stale_only: bool = False) -> list[str]:
    """Planner statistics after a bulk load (an import, a projection rebuild) and at start-up (`stale_only`): the
    engine does not rely on autovacuum, which some PostgreSQL servers run without, and SQLite never gathers them by
    itself (a class's 47-row list then walks the wrong index: 91 ms instead of 2 ms at a million students).
    PostgreSQL: ANALYZE — with `stale_only`, only the tables never analysed or changed by more than a tenth since.
    SQLite: ANALYZE (at most STAT_ROWS rows read per index) when never done, else `PRAGMA optimize`, which
    re-analyses what changed much. Returns what was analysed ("*" for all)."""
    with db.write() as s:
        if db.dialect == "postgresql":
            if not stale_only:
                s.execute(text("ANALYZE"))
                s.commit()
                return ["*"]
            tables = list(s.execute(text(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND n_live_tup + n_mod_since_analyze > 0 "
                "AND (coalesce(last_analyze, last_autoanalyze) IS NULL OR n_mod_since_analyze > 1000 + n_live_tup / 10)")).scalars())
            for table in tables:
                s.execute(text(f'ANALYZE "{table}"'))
            s.commit()
            return tables
        s.execute(text(f"PRAGMA analysis_limit={STAT_ROWS}"))
        if not stale_only:
            s.execute(text("ANALYZE"))
            s.commit()
            return ["*"]
        tables = _sqlite_stale(s)
        for table in tables:
            s.execute(text(f'ANALYZE "{table}"'))
        s.commit()
        return tables


def _sqlite_stale(s: Session) -> list[str]:
    """SQLite tables whose statistics are missing or more than a tenth (and 1,000 rows) off their row count."""
    known: dict[str, int] = {}
    if s.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
        for table, stat in s.execute(text("SELECT tbl, stat FROM sqlite_stat1")):
            known[table] = max(known.get(table, 0), int(str(stat).split()[0]) if stat else 0)
    names = s.execute(text("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                           "AND sql NOT LIKE 'CREATE VIRTUAL%' AND name NOT LIKE '%\\_fts\\_%' ESCAPE '\\'")).scalars()
    stale = []
    for table in names:
        rows = s.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
        if (table not in known and rows) or abs(rows - known.get(table, 0)) > 1000 + rows // 10:
            stale.append(table)
    return stale
