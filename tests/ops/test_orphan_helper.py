"""kill -9 of a process during an import: its forked helper dies with it, and on PostgreSQL the killed process's
transaction and its locks go with them (issue 14, item 2).

The importing process here is a real one: it opens the database, takes a row lock in a write transaction (as an
import batch does) and starts the helper through engine/excel/parallel.py, exactly as an import does; the test
then kills it with SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

SCRIPT = r'''
import os, sys, time
from types import SimpleNamespace
import sqlalchemy as sa
from engine.excel.parallel import prepared_batches
from engine.storage.db import Database

db = Database(sys.argv[1])
pass_ = SimpleNamespace(ctx=SimpleNamespace(db=db), prepare=lambda rows: [os.getpid()])
with db.write() as s:
    s.execute(sa.text("UPDATE held SET n = n + 1 WHERE id = 1"))  # a row lock, held until the transaction ends
    with prepared_batches(pass_, ([i] for i in range(3)), helper=True) as batches:
        _rows, (helper,) = next(batches)
        print(helper, flush=True)
        time.sleep(3600)  # the helper now waits on its pipe for the next batch
'''


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not reaped
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def held_table(fresh_db_url: str) -> str:
    engine = sa.create_engine(fresh_db_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE held (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        connection.execute(sa.text("INSERT INTO held VALUES (1, 0)"))
    engine.dispose()
    return fresh_db_url


def test_kill_9_during_an_import__the_helper_dies_and_its_locks_are_freed(held_table: str, tmp_path: Path) -> None:
    script = tmp_path / "importing.py"
    script.write_text(SCRIPT, encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script), held_table], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    helper = 0
    try:
        line = parent.stdout.readline()  # type: ignore[union-attr]
        helper = int(line)
        assert helper != parent.pid and _alive(helper)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert _wait_gone(helper), "the import helper outlived its killed parent"
        # The row the killed import held is free again (PostgreSQL: the server saw its connection close).
        engine = sa.create_engine(held_table, connect_args={"timeout": 10} if held_table.startswith("sqlite") else {})
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
            connection.execute(sa.text("UPDATE held SET n = n + 1 WHERE id = 1"))
        engine.dispose()
    finally:
        for pid in (parent.pid, helper):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
