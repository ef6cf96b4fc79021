"""web/turns.py: jobs run one per loop pass, first come first served, and a turn is never lost; web/writes.py: how a
SQLite write on the loop waits for the write lock."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Coroutine, TypeVar

import pytest
from sqlalchemy import text

from engine.storage.db import Database, without_lock_waits
from web.turns import Turns
from web.writes import SQLITE_RETRY_PAUSES, run_write

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


def _held_sqlite_lock(path: str, seconds: float, until: Callable[[], bool] | None = None) -> threading.Thread:
    """Another process's write (a connection of its own) holds SQLite's write lock for `seconds`, or with `until`
    until that holds (at most 10 s)."""
    holding = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        holding.set()
        time.sleep(seconds)
        deadline = time.monotonic() + 10
        while until is not None and not until() and time.monotonic() < deadline:
            time.sleep(0.005)
        other.execute("ROLLBACK")
        other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(5)
    return thread


def _database(tmp_path: Path) -> Database:
    """A SQLite file in WAL mode (as ours always are) with a table to write to."""
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.write() as s:
        s.execute(text("CREATE TABLE t (x INTEGER)"))
        s.commit()
    return db


def _counting_write(db: Database, calls: list[bool]) -> Callable[..., int]:
    def job(lock_wait: bool = True) -> int:
        calls.append(lock_wait)
        with db.write() as s, without_lock_waits(s, enabled=not lock_wait):
            s.execute(text("INSERT INTO t VALUES (1)"))
            s.commit()
            return s.execute(text("SELECT count(*) FROM t")).scalar_one()
    return job


def test_a_sqlite_write_that_finds_the_lock_briefly_taken_tries_again_on_the_loop(tmp_path: Path) -> None:
    """The other worker's write is over in milliseconds: the job tries again on the loop, which serves other requests
    in the pauses, rather than in a thread where SQLite's busy handler sleeps 1, 2, 5, 10 … ms between its tries."""
    db = _database(tmp_path)
    calls: list[bool] = []
    ticks: list[float] = []

    async def main() -> int:
        async def tick() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(tick())
        try:
            return await run_write(db, _counting_write(db, calls))
        finally:
            ticker.cancel()

    try:
        holder = _held_sqlite_lock(str(tmp_path / "x.db"), 0.03)
        assert run(main()) == 1
        holder.join()
    finally:
        db.dispose()
    assert len(calls) > 1 and not any(calls), "tried again on the loop, never waiting in a thread"
    assert len(ticks) > 3, "the loop went on meanwhile"


def test_a_sqlite_write_lock_held_for_long_is_waited_for_in_a_thread(tmp_path: Path) -> None:
    """An import's batch or a restarting checkpoint: after SQLITE_RETRY_PAUSES the job waits where it blocks nobody."""
    db = _database(tmp_path)
    calls: list[bool] = []
    try:
        # Let go only once the job waits in its thread, however slowly the loop went through its pauses.
        holder = _held_sqlite_lock(str(tmp_path / "x.db"), sum(SQLITE_RETRY_PAUSES), until=lambda: True in calls)
        assert run(run_write(db, _counting_write(db, calls))) == 1
        holder.join()
    finally:
        db.dispose()
    assert calls == [False] * (len(SQLITE_RETRY_PAUSES) + 1) + [True]
