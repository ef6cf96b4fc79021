"""Serving: one process, or a parent that accepts the connections and forks worker processes to serve them.

One Python process runs one request's Python at a time, so on a machine with several cores a single process leaves
them idle while requests queue. With `--workers N` the parent does the start-up once (migrations, indexes, the first
admin), binds the socket, and forks N workers, each with its own database connections and the app. The parent only
supervises: it replaces a worker that dies, checks the definitions on `dangan reload` (SIGHUP) and moves the shared
reload generation the workers follow, and stops the workers on SIGTERM / Ctrl-C.

The parent accepts the connections itself and hands each to the next worker in turn over a Unix socket of that
worker's (`socket.send_fds`, as Node's cluster module does), so that connections opened together are shared evenly:
one shared listening socket (uvicorn's and gunicorn's workers) and a socket per worker (SO_REUSEPORT) both split
them unevenly (bench/RESULTS.md, workflows, fourth and fifth sessions; docs/architecture.md).
A worker being replaced loses nothing: what is handed to it meanwhile waits in its Unix socket for the new one.

What the workers share lives in the database (sessions, records, import jobs, which a worker claims with a
compare-and-set) or in web/generations.py (the counters that expire per-process caches).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable

import uvicorn

from engine.backup.schedule import BackupScheduler
from engine.spec import Definitions
from engine.storage.refresher import ProjectionRefresher
from engine.storage.db import Database, ServerTimeouts, in_memory_sqlite
from web.app import create_app
from web.state import AppState, acknowledge_reload

log = logging.getLogger("dangan")
RESTART_PAUSE_SECONDS = 1.0


def default_workers(database_url: str) -> int:
    """One worker per core, at most 4 on PostgreSQL (the database server needs cores too) and at most 2 on a SQLite
    file, which takes one writer at a time: a second process serves requests while the first writes, more would
    mostly wait for the write lock (bench/RESULTS.md, workflows, sixth session). An in-memory SQLite database exists in one process only."""
    cores = os.cpu_count() or 1
    if in_memory_sqlite(database_url):
        return 1
    return max(1, min(2 if database_url.startswith("sqlite") else 4, cores))


def serve(state: AppState, host: str, port: int, workers: int) -> None:
    if workers <= 1:
        app = create_app(state.settings, state)
        freeze_start_up_objects()
        backups, recompute = start_backups(state, 0), start_recompute(state, 0)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, **proxy_options(state))
        for thread in (backups, recompute):
            if thread is not None:
                thread.stop()
        return
    listener = _bind(host, port)
    state.db.dispose()  # no pooled connection may be shared by the forked workers
    Supervisor(state, listener, workers).run()


def proxy_options(state: AppState) -> dict[str, Any]:
    """uvicorn believes X-Forwarded-For and X-Forwarded-Proto from the trusted proxies only (web/settings.py), and
    takes the client address and the scheme (https: Secure cookies, HSTS) from them. It also bounds how long a
    request's head and body may take to arrive (h11/httptools: timeout_keep_alive; see docs/operations.md)."""
    return {"proxy_headers": True, "forwarded_allow_ips": state.settings.trusted_proxies}


def freeze_start_up_objects() -> None:
    """What exists before the first request (modules, the compiled definitions, the app and its routes: ~107,000
    objects) lives as long as the process, so the collector's full passes leave it out from then on (gc.freeze).
    Under load a full pass still comes every few tens of thousands of requests, and it runs on the event loop with
    every request in flight waiting (bench/RESULTS.md, workflows, fifth session). A reload's replaced definitions are still freed by reference counting."""
    gc.collect()
    gc.freeze()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)
    return listener


class Handover:
    """The parent's side of handing accepted connections to the workers: one Unix socket pair per worker number
    (kept across a worker's replacement), and a thread that accepts and hands out in turn."""

    def __init__(self, listener: socket.socket, workers: int) -> None:
        self.listener = listener
        self.pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(workers)]
        for ours, _theirs in self.pairs:
            ours.setblocking(False)  # a worker whose queue is full is passed over, never waited for
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dangan-handover", daemon=True)

    def start(self) -> None:
        self.listener.settimeout(0.5)  # so that the thread sees `stopping`
        self.thread.start()

    def worker_end(self, number: int) -> socket.socket:
        return self.pairs[number][1]

    def close_all_but(self, number: int) -> None:
        """In worker `number`: every socket here but its own end of its pair."""
        self.listener.close()
        for index, (ours, theirs) in enumerate(self.pairs):
            ours.close()
            if index != number:
                theirs.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()

    def _run(self) -> None:
        turn = 0
        while not self.stopping.is_set():
            try:
                connection, _address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self.stopping.is_set():
                    return
                log.warning("接受连接失败：%s", exc)
                time.sleep(0.1)  # out of file descriptors, say: give the workers time to close some
                continue
            with connection:
                turn = self._hand(connection, turn)

    def _hand(self, connection: socket.socket, turn: int) -> int:
        """Hands `connection` to worker `turn`, or the next one that takes it; returns whose turn is next."""
        for step in range(len(self.pairs)):
            number = (turn + step) % len(self.pairs)
            try:
                socket.send_fds(self.pairs[number][0], [b"c"], [connection.fileno()])
                return (number + 1) % len(self.pairs)
            except OSError:  # its queue is full (a worker stuck or starting): the next one
                continue
        log.error("没有工作进程能接收新连接，已关闭该连接")
        return turn


class HandedServer(uvicorn.Server):
    """A worker's uvicorn server: it listens on nothing and serves the connections the parent hands it."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self.handing: set[asyncio.Task[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._take, loop)

    def _take(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                message, fds, _flags, _address = socket.recv_fds(self.channel, 1, 16)
            except BlockingIOError:
                return
            if not message and not fds:  # the parent is gone
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                connection = socket.socket(fileno=fd)
                connection.setblocking(False)
                task = loop.create_task(loop.connect_accepted_socket(self._protocol, connection))
                self.handing.add(task)  # the loop keeps only a weak reference to a task
                task.add_done_callback(self.handing.discard)

    def _protocol(self) -> asyncio.Protocol:
        # What uvicorn's own startup passes to the protocol of a connection its listening socket accepted.
        return self.config.http_protocol_class(config=self.config, server_state=self.server_state,  # type: ignore[call-arg]
                                               app_state=self.lifespan.state)


class Supervisor:
    def __init__(self, state: AppState, listener: socket.socket, workers: int,
                 run_worker: Callable[[AppState, socket.socket, int, int], None] | None = None) -> None:
        self.state, self.count = state, workers
        self.handover = Handover(listener, workers)
        self.run_worker = run_worker or _run_worker
        self.children: dict[int, int] = {}  # pid -> worker number
        self.stopping = False

    def run(self) -> None:
        signal.signal(signal.SIGHUP, self._reload)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for number in range(self.count):
            self._spawn(number)
        self.handover.start()
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
        self.handover.stop()

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
                channel = self.handover.worker_end(number)
                self.handover.close_all_but(number)
                self.run_worker(self.state, channel, self.count, number)
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
        """Check the new definitions here once; only a valid set moves the shared generation, which every worker
        follows before its next request (AppState.follow_reloads), so none answers with the old roles after
        `dangan reload` has been told the outcome."""
        outcome = self.state.reload()
        if not outcome.ok:
            log.error("定义有错误，未加载，仍使用版本 %s：\n%s", outcome.version, "\n".join(outcome.errors))
        acknowledge_reload(self.state.settings, outcome)

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def worker_database(url: str, workers: int, number: int, timeouts: ServerTimeouts = ServerTimeouts()) -> Database:
    """Worker `number`'s Database. Only worker 0 runs a SQLite file's checkpointer: one thread copying the WAL is
    enough, and with one per worker both could take a RESTART, holding every writer off, one after the other. A
    replaced worker 0 starts it again; the writers' autocheckpoint covers the pause."""
    return Database(url, processes=workers, checkpoint=number == 0, timeouts=timeouts)


def _run_worker(parent: AppState, channel: socket.socket, workers: int, number: int) -> None:
    """One worker: its own Database (connections are never shared across a fork; the workers split the connection
    budget) and the parent's definitions."""
    state = AppState(parent.settings, parent.definitions, worker_database(parent.settings.database_url, workers, number,
                                                                    parent.settings.database_timeouts()),
                     secret=parent.accounts.secret)  # a challenge one worker drew, another checks
    config = uvicorn.Config(create_app(state.settings, state), log_level="warning", access_log=False, **proxy_options(state))
    freeze_start_up_objects()
    backups, recompute = start_backups(state, number), start_recompute(state, number)
    HandedServer(config, channel).run()
    for thread in (backups, recompute):
        if thread is not None:
            thread.stop()
    state.db.dispose()


def start_recompute(state: AppState, number: int) -> ProjectionRefresher | None:
    """The background recompute after a definition change (engine/storage/refresher.py) runs in worker 0, as the
    scheduled backups do. It follows reloads itself: a worker with no request since a reload still holds the old
    definitions, and rows computed by those would be refused (engine/storage/projection.py `_follows`)."""
    if number != 0:
        return None

    def definitions() -> Definitions:
        state.follow_reloads()
        return state.definitions

    return ProjectionRefresher(state.db, definitions).start()


def start_backups(state: AppState, number: int) -> BackupScheduler | None:
    """Scheduled backups (docs/operations.md) run in one process of a server, worker 0 as with the checkpointer:
    not in the parent, which only supervises and whose os.wait() for any child would reap pg_dump and pg_restore
    from under the backup. When one is due is read from the database, so a replaced worker 0 carries on where the
    last one stopped."""
    schedule = state.settings.backup_schedule()
    if number != 0 or not schedule.enabled or in_memory_sqlite(state.settings.database_url):
        return None
    return BackupScheduler(state.db, schedule)
