"""Serving: one process, or on PostgreSQL a parent that forks worker processes, each on a listening socket of its own.

One Python process runs one request's Python at a time, so on a machine with several cores a single process leaves
them idle while requests queue. With `--workers N` the parent does the start-up once (migrations, indexes, the first
admin), binds the sockets, and forks N workers, each with its own database connections and the app. The parent only
supervises: it replaces a worker that dies, passes `dangan reload` (SIGHUP) on after checking the definitions
itself, and stops the workers on SIGTERM / Ctrl-C.

Each worker listens on a socket of its own, all bound to the same port with SO_REUSEPORT, so that the kernel spreads
new connections over the workers. On one shared socket, the worker that woke first took every connection waiting:
16 keep-alive connections opened at once could all land on one worker while the other idled (seen in
bench/workflows.py: 142 approvals/s instead of 340). The parent keeps every socket open, so connections that arrive
for a worker being replaced wait in its socket's queue for the new one.

What the workers share lives in the database (sessions, records, import jobs, which a worker claims with a
compare-and-set) or in web/generations.py (the counters that expire per-process caches).
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import time
from typing import Callable

import uvicorn

from web.app import create_app
from web.state import AppState

log = logging.getLogger("dangan")
RESTART_PAUSE_SECONDS = 1.0


def default_workers(dialect: str) -> int:
    """SQLite takes one writer at a time, so more processes would only queue on its lock; PostgreSQL gets up to one
    worker per core (at most 4: the database server needs cores too)."""
    if dialect != "postgresql":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def serve(state: AppState, host: str, port: int, workers: int) -> None:
    if workers <= 1:
        app = create_app(state.settings, state)
        freeze_start_up_objects()
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        return
    listeners = _bind(host, port, workers)
    state.db.dispose()  # no pooled connection may be shared by the forked workers
    Supervisor(state, listeners, workers).run()


def freeze_start_up_objects() -> None:
    """What exists before the first request (modules, the compiled definitions, the app and its routes: ~107,000
    objects) lives as long as the process, so the collector's full passes leave it out from then on (gc.freeze).
    Under load a full pass still comes every few tens of thousands of requests, and it runs on the event loop with
    every request in flight waiting: 94 ms over 144,000 objects, seen inside a 10 s approval run
    (bench/RESULTS.md, fifth session). A reload's replaced definitions are still freed by reference counting."""
    gc.collect()
    gc.freeze()


def _bind(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port, one per worker (see the module's docstring)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listeners = []
    for _ in range(count):
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port or (listeners[0].getsockname()[1] if listeners else 0)))
        listener.listen(2048)
        listener.set_inheritable(True)
        listeners.append(listener)
    return listeners


class Supervisor:
    def __init__(self, state: AppState, listeners: list[socket.socket], workers: int,
                 run_worker: Callable[[AppState, socket.socket, int], None] | None = None) -> None:
        self.state, self.listeners, self.count = state, listeners, workers
        self.run_worker = run_worker or _run_worker
        self.children: dict[int, int] = {}  # pid -> worker number
        self.stopping = False

    def run(self) -> None:
        signal.signal(signal.SIGHUP, self._reload)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for number in range(self.count):
            self._spawn(number)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            number = self.children.pop(pid, None)
            if number is None or self.stopping:
                continue
            log.error("工作进程 %s（pid %s）意外退出（状态 %s），%.0f 秒后重启", number, pid, status, RESTART_PAUSE_SECONDS)
            time.sleep(RESTART_PAUSE_SECONDS)
            if not self.stopping:
                self._spawn(number)
        for listener in self.listeners:
            listener.close()

    def _spawn(self, number: int) -> None:
        # SIGHUP is held back across the fork: a reload arriving then would otherwise kill the new worker before
        # it has installed its own handler.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the app's own reload handler is installed
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
                for other, listener in enumerate(self.listeners):
                    if other != number:
                        listener.close()  # its siblings' sockets are theirs to accept on; the parent keeps them open
                self.run_worker(self.state, self.listeners[number], self.count)
            except BaseException:  # noqa: BLE001 — a worker must never return into the parent's loop
                log.exception("工作进程 %s 出错", number)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        self.children[pid] = number

    def _reload(self, _signum: int, _frame: object) -> None:
        """Check the new definitions here once; only a valid set is passed on, so no worker is left behind on
        the old version because its own copy failed."""
        outcome = self.state.reload()
        if not outcome.ok:
            log.error("定义有错误，未加载，仍使用版本 %s：\n%s", outcome.version, "\n".join(outcome.errors))
            return
        for pid in list(self.children):
            os.kill(pid, signal.SIGHUP)

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _run_worker(parent: AppState, listener: socket.socket, workers: int) -> None:
    """One worker: its own Database (connections are never shared across a fork; the workers split the connection
    budget) and the parent's definitions."""
    from engine.storage.db import Database  # noqa: PLC0415

    state = AppState(parent.settings, parent.definitions, Database(parent.settings.database_url, processes=workers))
    config = uvicorn.Config(create_app(state.settings, state), log_level="warning", access_log=False)
    freeze_start_up_objects()
    uvicorn.Server(config).run(sockets=[listener])
    state.db.dispose()
