"""web/turns.py: jobs run one per loop pass, first come first served, and a turn is never lost; web/writes.py: how a
write run by the WriteRunner waits for a lock another connection holds, without the engine being told (no
`lock_wait` parameter anywhere in engine/)."""
from __future__ import annotations

import ast
import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Coroutine, TypeVar

import pytest
from sqlalchemy import NullPool, create_engine, literal_column, select, text

from engine.storage.db import Database, lock_rows, sqlite_file
from web.turns import Turns
from web.writes import SQLITE_RETRY_PAUSES, WriteRunner

ENGINE = Path(__file__).resolve().parents[2] / "engine"

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a thread of its own: the browser tests' Playwright keeps a loop running in this one."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the test's own thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the event loop did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_jobs_take_turns_in_arrival_order_with_a_loop_pass_between() -> None:
    events: list[str] = []

    async def job(turns: Turns, name: str) -> None:
        async with turns.turn():
            events.append(name)
            # Stands for a request that arrives while this job runs: it must be seen before the next job.
            asyncio.get_running_loop().call_soon(events.append, f"after {name}")

    async def main() -> None:
        turns = Turns()
        await asyncio.gather(*(job(turns, name) for name in "abc"))

    run(main())
    assert events == ["a", "after a", "b", "after b", "c", "after c"]


def test_a_late_request_queues_behind_earlier_ones() -> None:
    order: list[str] = []

    async def main() -> None:
        turns = Turns()

        async def job(name: str) -> None:
            async with turns.turn():
                order.append(name)
                if name == "first":  # arrives while the first job runs, behind the two already waiting
                    asyncio.get_running_loop().call_soon(lambda: tasks.append(asyncio.ensure_future(job("late"))))

        tasks = [asyncio.ensure_future(job(n)) for n in ("first", "second", "third")]
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0)

    run(main())
    assert order == ["first", "second", "third", "late"]


def test_a_failing_job_hands_the_turn_on() -> None:
    done: list[str] = []

    async def job(turns: Turns, name: str) -> None:
        async with turns.turn():
            if name == "bad":
                raise ValueError(name)
            done.append(name)

    async def main() -> list[object]:
        turns = Turns()
        return await asyncio.gather(job(turns, "bad"), job(turns, "good"), return_exceptions=True)

    results = run(main())
    assert isinstance(results[0], ValueError) and done == ["good"]


@pytest.mark.parametrize("when", ["while waiting", "after being handed the turn"])
def test_a_cancelled_waiter_does_not_keep_the_turn(when: str) -> None:
    done: list[str] = []

    async def main() -> None:
        turns = Turns()
        release = asyncio.Event()

        async def holder() -> None:
            async with turns.turn():
                done.append("holder")
            await release.wait()

        async def waiter(name: str) -> None:
            async with turns.turn():
                done.append(name)

        # Started in one loop pass: the holder takes the turn, the other two queue behind it.
        first = asyncio.ensure_future(holder())
        cancelled = asyncio.ensure_future(waiter("cancelled"))
        last = asyncio.ensure_future(waiter("last"))
        await asyncio.sleep(0)
        if when == "after being handed the turn":
            await asyncio.sleep(0)  # the turn is handed to the first waiter, which has not run yet
        cancelled.cancel()
        await asyncio.wait_for(last, timeout=2)
        release.set()
        await first

    run(main())
    assert done == ["holder", "last"]


def test_each_event_loop_takes_its_own_turns() -> None:
    """Test clients run an event loop each, in threads of their own: one loop's turn never waits for another's."""
    turns = Turns()
    inside, release = threading.Event(), threading.Event()
    finished: list[str] = []

    async def hold() -> None:
        async with turns.turn():
            inside.set()
            release.wait(5)  # a job running on this loop's thread while the other loop asks for a turn
        finished.append("holder")

    async def ask() -> None:
        async with turns.turn():
            finished.append("other loop")

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    assert inside.wait(5)
    run(asyncio.wait_for(ask(), timeout=2))
    release.set()
    holder.join(5)
    assert finished == ["other loop", "holder"]


class HeldLock:
    """Another connection's open write transaction: on SQLite the write lock (another process's import, say), on
    PostgreSQL row 1 of `t` (another worker deciding the same application). Let go after `seconds`, or once
    `until()` holds (at most 10 s more)."""

    def __init__(self, db: Database, seconds: float, until: Callable[[], bool] = lambda: True) -> None:
        self.held, self.released_at = threading.Event(), 0.0
        self.thread = threading.Thread(target=self._hold, args=(db, seconds, until))
        self.thread.start()
        assert self.held.wait(5)

    def _hold(self, db: Database, seconds: float, until: Callable[[], bool]) -> None:
        path = sqlite_file(db.url)
        engine = None if path is not None else create_engine(db.url, poolclass=NullPool)
        if engine is None:
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
        else:
            other = engine.raw_connection()
            other.cursor().execute("SELECT n FROM t WHERE id = 1 FOR UPDATE")
        self.held.set()
        time.sleep(seconds)
        deadline = time.monotonic() + 10
        while not until() and time.monotonic() < deadline:
            time.sleep(0.005)
        self.released_at = time.monotonic()
        if engine is None:
            other.execute("ROLLBACK")
            other.close()
        else:
            other.rollback()
            other.close()
            engine.dispose()

    def join(self) -> None:
        self.thread.join(15)


def _database(url: str) -> Database:
    """A database (SQLite: a file in WAL mode, as ours always are) with a table `t` holding row 1 to write to."""
    db = Database(url)
    with db.write() as s:
        s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        s.execute(text("INSERT INTO t VALUES (1, 0)"))
        s.commit()
    return db


_LOCK = select(literal_column("n")).select_from(text("t")).where(literal_column("id") == 1)


class CountingWrite:
    """A write as an engine service makes one: `db.write()`, its row lock through `lock_rows`, nothing said about
    waiting. Notes the thread of every try and when it began, and whether the try that got the lock was one that
    would wait for it (`lock_rows`' choice; on SQLite also the busy timeout its transaction began with)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.tries: list[tuple[int, float]] = []
        self.waited: bool | None = None
        self.busy_timeout: int | None = None

    def __call__(self) -> int:
        self.tries.append((threading.get_ident(), time.monotonic()))
        with self.db.write() as s:
            self.waited = lock_rows(s, False, True)
            s.execute(lock_rows(s, _LOCK.with_for_update(nowait=True), _LOCK.with_for_update()))
            if self.db.dialect == "sqlite":
                self.busy_timeout = s.execute(text("PRAGMA busy_timeout")).scalar_one()
            s.execute(text("UPDATE t SET n = n + 1 WHERE id = 1"))
            s.commit()
            return s.execute(text("SELECT n FROM t WHERE id = 1")).scalar_one()

    def in_a_thread(self) -> bool:
        return len({thread for thread, _ in self.tries}) > 1


async def _ticking(ticks: list[float], work: Coroutine[Any, Any, T]) -> T:
    """`work`, with the loop noting the time every millisecond or so meanwhile (while it is free to)."""
    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.001)

    ticker = asyncio.create_task(tick())
    try:
        return await work
    finally:
        ticker.cancel()


def test_a_sqlite_write_that_finds_the_lock_briefly_taken_tries_again_on_the_loop(tmp_path: Path) -> None:
    """The other worker's write is over in milliseconds: the job tries again on the loop, which serves other requests
    in the pauses, rather than in a thread where SQLite's busy handler sleeps 1, 2, 5, 10 … ms between its tries."""
    db = _database(f"sqlite:///{tmp_path / 'x.db'}")
    job, ticks = CountingWrite(db), list[float]()
    try:
        holder = HeldLock(db, 0.0, until=lambda: len(job.tries) >= 3)  # let go once the job has tried a few times
        assert run(_ticking(ticks, WriteRunner(db).run(job))) == 1
        holder.join()
    finally:
        db.dispose()
    assert len(job.tries) > 3 and not job.in_a_thread(), "tried again on the loop, never in a thread"
    assert not job.waited and job.busy_timeout == 0, "on the loop, the transaction did not wait for the lock"
    first, last = job.tries[0][1], job.tries[-1][1]
    assert any(first < t < last for t in ticks), "the loop went on between the tries"


def test_a_sqlite_write_lock_held_for_long_is_waited_for_in_a_thread(tmp_path: Path) -> None:
    """An import's batch or a restarting checkpoint: after SQLITE_RETRY_PAUSES the job waits where it blocks nobody."""
    db = _database(f"sqlite:///{tmp_path / 'x.db'}")
    job = CountingWrite(db)
    try:
        # Let go only once the job waits in its thread, however slowly the loop went through its pauses.
        holder = HeldLock(db, sum(SQLITE_RETRY_PAUSES), until=job.in_a_thread)
        assert run(WriteRunner(db).run(job)) == 1
        holder.join()
    finally:
        db.dispose()
    loop_thread = job.tries[0][0]
    assert [thread == loop_thread for thread, _ in job.tries] == [True] * (len(SQLITE_RETRY_PAUSES) + 1) + [False]
    assert job.waited and job.busy_timeout and job.busy_timeout > 0, "in the thread, the transaction waited"


def test_a_write_waiting_for_a_held_lock_waits_in_a_thread_while_the_loop_goes_on(fresh_db_url: str) -> None:
    """A service's write run through the runner, while another connection holds what it needs: tried on the loop
    without waiting, then waited for in a thread, and the loop keeps serving until the lock is let go."""
    db = _database(fresh_db_url)
    job, ticks = CountingWrite(db), list[float]()
    try:
        holder = HeldLock(db, 0.0, until=lambda: job.in_a_thread() and time.monotonic() - job.tries[-1][1] > 0.2)
        assert run(_ticking(ticks, WriteRunner(db).run(job))) == 1
        holder.join()
    finally:
        db.dispose()
    assert job.in_a_thread() and job.waited, "the last try waited for the lock, in a thread"
    waiting_since = job.tries[-1][1]
    assert sum(waiting_since < t < holder.released_at for t in ticks) > 3, "the loop went on while the thread waited"


def test_no_engine_function_takes_a_lock_wait_parameter() -> None:
    """Where a write runs and whether it may wait is web/writes.py's business (engine/storage/db.py:no_lock_waits),
    not a parameter threaded through the engine's services."""
    found = []
    for path in sorted(ENGINE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x is not None]
                found += [f"{path.relative_to(ENGINE.parent)}:{node.lineno} {n}" for n in names if "lock_wait" in n]
    assert found == []
    assert list(ENGINE.rglob("*.py")), "the engine's sources were found"
