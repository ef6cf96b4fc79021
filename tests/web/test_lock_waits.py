"""No request waits for a database lock on the event loop, and PostgreSQL bounds what a stuck transaction holds
(issue 14, item 2).

A transaction that another process left open (an import killed mid-batch, a frozen client) holds a record. A save
of that record waits for it, in a thread: the worker's other requests are answered meanwhile. On PostgreSQL the
server ends the stuck transaction after `idle_in_transaction_session_timeout`, and a wait that lasts longer than
`lock_timeout` is a clear 503, not a 500 or a hang."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from engine.storage.db import Database, ServerTimeouts, sqlite_file
from tests.engine.helpers import add_member, principal_of, sign_in, student_values
from tests.support import SCHOOL, CLASS_1, build, unit_id

RELEASE_AFTER = 20.0  # seconds: only reached when a request was stuck behind the lock (the failure being tested)


class Holder:
    """Another connection's open write transaction holding the record (PostgreSQL: its row; SQLite: the write lock)."""

    def __init__(self, url: str, record_id: int) -> None:
        self.released = threading.Event()
        if url.startswith("sqlite"):
            self.connection: Any = sqlite3.connect(sqlite_file(url), isolation_level=None, check_same_thread=False)
            self.connection.execute("BEGIN IMMEDIATE")
        else:
            self.engine = sa.create_engine(url, poolclass=sa.NullPool)
            self.connection = self.engine.connect()
            self.connection.execute(sa.text("SELECT id FROM records WHERE id = :id FOR UPDATE"), {"id": record_id})
        self.timer = threading.Timer(RELEASE_AFTER, self.release)
        self.timer.start()

    def release(self) -> None:
        if self.released.is_set():
            return
        self.released.set()
        self.timer.cancel()
        if isinstance(self.connection, sqlite3.Connection):
            self.connection.execute("ROLLBACK")
            self.connection.close()
        else:
            self.connection.rollback()
            self.connection.close()
            self.engine.dispose()


@pytest.fixture
def world(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[Any, Any, int]]:
    app, state = build(fresh_db_url, tmp=tmp_path)
    add_member(state, "reg", "registrar", SCHOOL)
    form = state.definitions.forms["student"]
    created = state.records.create(form, principal_of(state, "reg"), unit_id(state, CLASS_1), student_values(7))
    assert created.ok, created.issues
    yield app, state, created.record_id
    state.db.dispose()


def test_a_save_waiting_for_a_held_record_does_not_stop_the_other_requests(world: tuple[Any, Any, int]) -> None:
    app, state, record_id = world
    with TestClient(app=app, base_url="http://testserver.local") as client:
        csrf = sign_in(client, state, "reg")
        page = client.get(f"/f/student/{record_id}/edit")
        assert page.status_code == 200
        revision = page.text.split('name="_revision" value="', 1)[1].split('"', 1)[0]
        holder = Holder(state.db.url, record_id)
        saved: dict[str, Any] = {}

        def save() -> None:
            response = client.post(f"/f/student/{record_id}/edit", follow_redirects=False,
                                   data={**student_values(7, name="李四"), "_csrf": csrf, "_revision": revision})
            saved["status"] = response.status_code

        saving = threading.Thread(target=save)
        try:
            saving.start()
            saving.join(0.5)  # the save is now waiting for the lock
            assert "status" not in saved
            assert client.get("/healthz").status_code == 200
            answered_while_held = not holder.released.is_set()
        finally:
            holder.release()
            saving.join(30)
        assert answered_while_held, "another request waited until the held lock was released"
        assert saved["status"] == 303


def test_pg_a_stuck_transaction_is_ended_by_the_server(pg_url: str) -> None:
    db = Database(pg_url, timeouts=ServerTimeouts(statement_seconds=60, lock_seconds=30, idle_in_transaction_seconds=0.5))
    other = Database(pg_url, timeouts=ServerTimeouts(lock_seconds=20))
    try:
        with other.write() as s:
            s.execute(sa.text("CREATE TABLE IF NOT EXISTS stuck (id INTEGER PRIMARY KEY, n INTEGER)"))
            s.execute(sa.text("INSERT INTO stuck VALUES (1, 0) ON CONFLICT DO NOTHING"))
            s.commit()
        stuck = db.write()
        stuck.execute(sa.text("UPDATE stuck SET n = n + 1 WHERE id = 1"))  # and then nothing: a frozen client
        with other.write() as s:  # waits for the lock until the server ends the stuck transaction
            s.execute(sa.text("UPDATE stuck SET n = n + 10 WHERE id = 1"))
            s.commit()
            assert s.scalar(sa.text("SELECT n FROM stuck WHERE id = 1")) == 10  # the stuck update was rolled back
        with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction timeout"):
            stuck.commit()
        stuck.close()
    finally:
        db.dispose()
        other.dispose()


@pytest.mark.parametrize("factory", ["read", "write", "single"])
def test_pg_every_connection_carries_the_settings_bounds(pg_url: str, factory: str) -> None:
    db = Database(pg_url, timeouts=ServerTimeouts(statement_seconds=301, lock_seconds=31, idle_in_transaction_seconds=61))
    try:
        if factory == "single":
            with db.single() as connection:
                shown = [connection.exec_driver_sql(f"SHOW {name}").scalar_one() for name in
                         ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")]
        else:
            with getattr(db, factory)() as s:
                shown = [s.execute(sa.text(f"SHOW {name}")).scalar_one() for name in
                         ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")]
        assert shown == ["301s", "31s", "61s"]
    finally:
        db.dispose()


def test_pg_a_save_that_waits_past_the_lock_timeout_is_a_clear_503(pg_url: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DANGAN_PG_LOCK_TIMEOUT_SECONDS", "0.5")
    app, state = build(pg_url, tmp=tmp_path)
    add_member(state, "reg2", "registrar", SCHOOL)
    form = state.definitions.forms["student"]
    created = state.records.create(form, principal_of(state, "reg2"), unit_id(state, CLASS_1), student_values(8))
    assert created.ok, created.issues
    with TestClient(app=app, base_url="http://testserver.local") as client:
        csrf = sign_in(client, state, "reg2")
        page = client.get(f"/f/student/{created.record_id}/edit")
        revision = page.text.split('name="_revision" value="', 1)[1].split('"', 1)[0]
        holder = Holder(pg_url, created.record_id)
        try:
            response = client.post(f"/f/student/{created.record_id}/edit", follow_redirects=False,
                                   data={**student_values(8, name="王五"), "_csrf": csrf, "_revision": revision})
        finally:
            holder.release()
    state.db.dispose()
    assert response.status_code == 503
    assert "数据正被其他操作占用，请稍后重试" in response.text
    assert response.headers["retry-after"] == "10"
