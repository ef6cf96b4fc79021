"""Change counters shared by every worker process of one server.

Caches kept per process (the 待办 badge, the org tree) and the compiled definitions drop their entries when a counter moves. With several worker
processes (`dangan serve --workers`), a change made in one worker must reach the others' caches at once, not after
a TTL: the counters live in shared memory created before the workers are forked, so they inherit the same memory.
"""
from __future__ import annotations

import multiprocessing


class Generation:
    """A number that only ever moves; readers compare it with the value they cached under."""

    def __init__(self) -> None:
        # lock=True: increments from two processes at the same moment must both count.
        self._value = multiprocessing.get_context("fork").Value("q", 0, lock=True)

    @property
    def value(self) -> int:
        return self._value.get_obj().value  # an aligned 8-byte read needs no lock

    def bump(self) -> None:
        with self._value.get_lock():
            self._value.value += 1


# Created at import time, i.e. in the parent process before `dangan serve` forks its workers.
workflows = Generation()
org_units = Generation()
# Moved by a reload that passed its checks (`dangan reload`, the admin page): every process re-reads the definitions
# before its next request (web/state.py:AppState.follow_reloads).
definitions = Generation()
