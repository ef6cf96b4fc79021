"""Heavy synchronous work on the event loop, one job per loop pass, in the order the requests asked.

Request handlers' write transactions run on the event loop instead of in threads (web/writes.py says why).
Run back to back, the jobs of one loop pass form a batch: a request whose bytes arrive just after the
loop looked at its sockets misses that batch and waits for the whole next one, about twice the usual
time — the slowest percent of approvals under load. Taking turns lets the loop look at its sockets
again after every job, so a request that arrives is parsed at once and queued behind the ones before
it, not behind a whole batch.
"""
from __future__ import annotations

import asyncio
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator
from weakref import WeakKeyDictionary


class Turns:
    """A first-come, first-served turn per event loop, handed on only after the loop's next pass.

    Per loop because a process may run several (test clients each run one in a thread of their own), and a
    loop's futures may be touched only from its own thread."""

    def __init__(self) -> None:
        self._loops: WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = WeakKeyDictionary()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        queue = self._loops.get(loop)
        if queue is None:
            queue = self._loops[loop] = _Queue()
        await queue.take(loop)
        try:
            yield
        finally:
            loop.call_soon(queue.hand_on)  # after the loop's next look at its sockets, not straight away


class _Queue:
    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._taken = False

    async def take(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._taken or self._waiting:
            ready: asyncio.Future[None] = loop.create_future()
            self._waiting.append(ready)
            try:
                await ready
            except asyncio.CancelledError:
                if ready.done() and not ready.cancelled():  # handed the turn, then cancelled: pass it on
                    loop.call_soon(self.hand_on)
                raise
        self._taken = True

    def hand_on(self) -> None:
        while self._waiting:
            ready = self._waiting.popleft()
            if not ready.done():  # a waiter whose request was cancelled meanwhile is skipped
                ready.set_result(None)
                return
        self._taken = False
