"""Where a request's write transaction runs: on the event loop, taking turns; in a thread only to wait for a lock.

A thread per write cost more than the write itself under load: handing the job over and back, and the threads and
the loop taking the GIL from each other (bench/RESULTS.md, workflows, fourth session; docs/architecture.md, "Hand-written
pieces we keep"). SQLite takes one writer at a time anyway. So writes run on the loop, one per
loop pass (web/turns.py). What must not run there is a wait, which would stop every request of this worker: on
PostgreSQL for a row another transaction holds (another worker deciding the same application, an import batch
holding the record), on SQLite for the write lock another process holds (the other worker, an import, a command, the
checkpointer's restart), where SQLite's busy handler would sleep. So the job asks not to wait (row locks with NOWAIT,
a zero busy timeout) and gives up at once when something is held (LockBusy).

PostgreSQL then redoes the job in a thread, where waiting blocks nobody. SQLite first tries again on the loop after
a short pause (SQLITE_RETRY_PAUSES), since the other worker's write is over within a few milliseconds: SQLite's own
busy handler, in a thread, sleeps 1, 2, 5, 10 … ms between its tries, so a writer waiting there kept missing the
lock the other worker took again meanwhile (bench/RESULTS.md, workflows, sixth session). A lock still held after
those pauses (an import's batch, a restart) is waited for in a thread.
"""
from __future__ import annotations

import asyncio
from typing import Callable, TypeVar

from anyio.to_thread import run_sync

from engine.storage.db import Database, LockBusy
from web.turns import Turns

T = TypeVar("T")
_turns = Turns()
# Seconds between a SQLite writer's tries on the loop: short while another worker's write (~2 ms) is the likely
# holder, then longer; 100 ms in all before the wait moves to a thread.
SQLITE_RETRY_PAUSES = (0.0002,) * 5 + (0.0005,) * 6 + (0.001,) * 20 + (0.005,) * 14


async def run_write(db: Database, job: Callable[..., T]) -> T:
    """`job(lock_wait=...)` runs one write transaction; it raises LockBusy when lock_wait is False and a lock is held."""
    if db.dialect == "sqlite":
        # SQLite's lock is the whole database: the writes behind this one could not go first, and if they tried
        # on every turn while this one waited, it would wait for seconds. So it keeps its turn while it waits.
        async with _turns.turn():
            for pause in SQLITE_RETRY_PAUSES:
                try:
                    return job(lock_wait=False)
                except LockBusy:
                    await asyncio.sleep(pause)
            try:
                return job(lock_wait=False)
            except LockBusy:
                return await run_sync(job)
    try:
        async with _turns.turn():
            return job(lock_wait=False)
    except LockBusy:  # one row is held: other writes of this worker need not wait for it
        return await run_sync(job)
