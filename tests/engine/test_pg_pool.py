"""PostgreSQL pool: a connection that sat idle is pinged (and replaced if the server dropped it); one that was in
use a moment ago is not, which saves a round trip on every checkout under load."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

import engine.storage.db as db_module
from engine.storage.db import Database
from tests.conftest import pg_admin_url


def _backend(connection: sa.Connection) -> int:
    return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def _terminate(pid: int) -> None:
    admin = sa.create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(100):  # the backend exits asynchronously
                if not connection.execute(sa.text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).first():
                    return
                time.sleep(0.05)
    finally:
        admin.dispose()


@pytest.mark.parametrize("factory", ["single", "write"])
def test_an_idle_connection_the_server_dropped_is_replaced_before_use(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                                      factory: str) -> None:
    db = Database(pg_url)
    try:
        def backend() -> int:
            if factory == "single":
                with db.single() as connection:
                    return _backend(connection)
            with db.write() as s:
                return _backend(s.connection())

        first = backend()
        _terminate(first)  # e.g. PostgreSQL restarted overnight
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # "idle long enough"
        second = backend()
        assert second != first
    finally:
        db.dispose()


def test_a_connection_in_recent_use_is_not_pinged(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trade-off, shown: without the ping, a connection lost within the idle window fails its next statement
    once; the pool then drops its connections and the statement after works."""
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    db = Database(pg_url)
    try:
        with db.single() as connection:
            first = _backend(connection)
        _terminate(first)
        with pytest.raises(OperationalError):
            with db.single() as connection:
                _backend(connection)
        with db.single() as connection:
            assert _backend(connection) != first
    finally:
        db.dispose()


@pytest.mark.parametrize("processes", range(2, 9))
def test_worker_processes_share_a_connection_budget_below_postgresqls_default_limit(processes: int) -> None:
    kept, overflow = db_module._transaction_pool(processes)
    autocommit = 2 + 3  # make_autocommit_engine's pool
    total = processes * (kept + overflow + autocommit)
    assert total < 100  # PostgreSQL's default max_connections
    if processes <= 4:  # the most `dangan serve` starts by default
        assert total <= db_module.CONNECTION_BUDGET
    assert kept >= 3 and overflow >= 3


def test_a_worker_database_uses_its_share(pg_url: str) -> None:
    db = Database(pg_url, processes=4)
    try:
        assert (db.engine.pool.size(), db.engine.pool._max_overflow) == db_module._transaction_pool(4)  # type: ignore[attr-defined]
    finally:
        db.dispose()
