"""An import's rows prepared in a forked helper process while the importing process writes.

Preparing a row — reading its cells through the field types and validating it as a new record with
`clean_record` — needs no database and is most of an import's work; looking rows up, planning and
writing them must stay in one process (one transaction per batch, duplicates within the file, the
job's progress). With a helper the two halves run on two cores: batch k+1 is prepared while batch k
is written.

Why fork: the helper needs the compiled definitions, which hold closures and cannot be pickled; a
forked child has them as they are. The helper never uses a database: the connections it inherits
are detached from its pool at once (SQLAlchemy's advice for forked processes) and left alone. Only a
batch's rows go to it, and only what `ImportPass.prepare` returns comes back. Should the helper fail
to start or die, the remaining batches are prepared in this process: the same code, the same results.
The helper dies with this process (engine/processes.py): left alive, it would keep the inherited
connections, and with them a PostgreSQL transaction and its locks, open.
"""
from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterable, Iterator

from engine.processes import die_with_parent

if TYPE_CHECKING:
    from engine.excel.importer import ImportPass, RowInput
    from engine.excel.reader import Row

Batch = list["Row"]
AHEAD = 2  # batches handed to the helper before the oldest is waited for: one in work, one queued

_adopted: "ImportPass | None" = None  # in the helper: the pass it prepares rows for


def helper_possible() -> bool:
    return (os.cpu_count() or 1) > 1 and "fork" in multiprocessing.get_all_start_methods()


@contextmanager
def prepared_batches(pass_: "ImportPass", batches: Iterable[Batch], helper: bool) -> Iterator[Iterator[tuple[Batch, list["RowInput"]]]]:
    """Each batch with what `pass_.prepare` made of it, in order."""
    if not helper:
        yield ((rows, pass_.prepare(rows)) for rows in batches)
        return
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"), initializer=_adopt, initargs=(pass_, os.getpid()))
    try:
        yield _Pipeline(pass_, pool).run(batches)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Pipeline:
    def __init__(self, pass_: "ImportPass", pool: ProcessPoolExecutor) -> None:
        self.pass_, self.pool, self.broken = pass_, pool, False

    def run(self, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list["RowInput"]]]:
        pending: deque[tuple[Batch, Future | None]] = deque()
        for rows in batches:
            pending.append((rows, self._submit(rows)))
            if len(pending) > AHEAD:
                yield self._collect(*pending.popleft())
        while pending:
            yield self._collect(*pending.popleft())

    def _submit(self, rows: Batch) -> Future | None:
        if self.broken:
            return None
        try:
            return self.pool.submit(_prepare, rows)
        except (BrokenProcessPool, OSError, RuntimeError):
            self.broken = True
            return None

    def _collect(self, rows: Batch, future: Future | None) -> tuple[Batch, list["RowInput"]]:
        if future is not None:
            try:
                return rows, future.result()
            except BrokenProcessPool:  # the helper died (killed, out of memory): carry on here
                self.broken = True
        return rows, self.pass_.prepare(rows)


def _adopt(pass_: "ImportPass", parent_pid: int) -> None:
    global _adopted
    die_with_parent(parent_pid)
    _adopted = pass_
    pass_.ctx.db.detach_after_fork()


def _prepare(rows: Batch) -> list["RowInput"]:
    assert _adopted is not None
    return _adopted.prepare(rows)

