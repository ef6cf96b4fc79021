"""Where a request's write transaction runs: on the event loop, taking turns; in a thread only to wait for a lock.

A thread per write cost more than the write itself under load: handing the job over and back, and the threads and
the loop taking the GIL from each other (bench/RESULTS.md, workflows, fourth session; docs/architecture.md, "Hand-written
pieces we keep"). SQLite takes one writer at a time anyway. So writes run on the loop, one per
loop pass (web/turns.py). What must not run there is a wait, which would stop every request of this worker: on
PostgreSQL for a row another transaction holds (another worker deciding the same application, an import batch
holding the record), on SQLite for the write lock another process holds (the other worker, an import, a command, the
checkpointer's restart), where SQLite's busy handler would sleep. So the job runs inside `no_lock_waits`
(engine/storage/db.py: row locks with NOWAIT, a zero busy timeout) and gives up at once when something is held
(LockBusy). The engine's services take no parameter for it: they open `db.write()` as always.

PostgreSQL then redoes the job in a thread, where waiting blocks nobody. SQLite first tries again on the loop after
a short pause (SQLITE_RETRY_PAUSES), since the other worker's write is over within a few milliseconds: SQLite's own
busy handler, in a thread, sleeps 1, 2, 5, 10 … ms between its tries, so a writer waiting there kept missing the
lock the other worker took again meanwhile (bench/RESULTS.md, workflows, sixth session). A lock still held after
those pauses (an import's batch, a restart) is waited for in a thread.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

from anyio.to_thread import run_sync

from engine.storage.db import Database, LockBusy, no_lock_waits
from web.turns import Turns

T = TypeVar("T")
_turns = Turns()  # one per process: every runner's jobs on one event loop take turns together
# Seconds between a SQLite writer's tries on the loop: short while another worker's write (~2 ms) is the likely
# holder, then longer; 100 ms in all before the wait moves to a thread.
SQLITE_RETRY_PAUSES = (0.0002,) * 5 + (0.0005,) * 6 + (0.001,) * 20 + (0.005,) * 14


class WriteRunner:
    """Where a request's write transactions run; routes hand it the job and await the result (AppState.writes)."""

    def __init__(self, db: Database, turns: Turns = _turns) -> None:
        self.db, self.turns = db, turns

    async def run(self, job: Callable[[], T]) -> T:
        """A short write that takes its locks up front through the engine (`lock_rows`, SQLite's BEGIN IMMEDIATE):
        a workflow decision, a withdrawal. On the loop, taking turns; in a thread only to wait for a lock. `job()`
        runs one write transaction and may be called again after LockBusy (nothing of it was committed)."""
        if self.db.one_writer:
            # SQLite's lock is the whole database: the writes behind this one could not go first, and if they tried
            # on every turn while this one waited, it would wait for seconds. So it keeps its turn while it waits.
            async with self.turns.turn():
                for pause in SQLITE_RETRY_PAUSES:
                    try:
                        return _without_waiting(job)
                    except LockBusy:
                        await asyncio.sleep(pause)
                try:
                    return _without_waiting(job)
                except LockBusy:
                    return await run_sync(job)
        try:
            async with self.turns.turn():
                return _without_waiting(job)
        except LockBusy:  # one row is held: other writes of this worker need not wait for it
            return await run_sync(job)

    async def in_thread(self, job: Callable[..., T], *args: Any) -> T:
        """Any other write (a save with its checks, starting an application): in a thread, where a lock it meets on
        the way or a long validation blocks nobody (docs/architecture.md, "Hand-written pieces we keep")."""
        return await run_sync(job, *args)


def _without_waiting(job: Callable[[], T]) -> T:
    with no_lock_waits():
        return job()
