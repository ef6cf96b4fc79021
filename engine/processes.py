"""Helper processes die with the process that started them.

A helper forked by a server worker inherits the worker's open database connections (a forked child holds the
same sockets). Should the worker be killed (kill -9, out of memory), a helper left alive keeps those sockets open:
PostgreSQL never learns the worker is gone and keeps its transaction *idle in transaction*, with its row locks.
So the helper asks the kernel for SIGKILL when its parent dies (Linux `prctl(PR_SET_PDEATHSIG)`), and a watcher
thread covers other systems and the moment before the request took effect.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 1.0


def die_with_parent(parent_pid: int) -> None:
    """In a child: be killed when `parent_pid` (the process that started it) dies; exit now if it already has.

    The kernel sends the signal when the *thread* that forked this child ends, not only the process: the callers
    fork from the thread that also waits for the helper (engine/excel/parallel.py), which outlives it."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # died before the request above took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="dangan-parent-watch", daemon=True).start()


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_SECONDS)
    os._exit(1)
