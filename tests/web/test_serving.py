"""`dangan serve --workers N`: the parent process, its forked workers, reload, restart, stop; and what the workers
share (counters in shared memory, import-job runner names per process)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from engine.excel.jobs import runner_name
from engine.storage.db import Database
from engine.storage.models import Application, ApplicationAction, AuditEntry, Record
from tests.browser_fixtures import DANGAN, DEFINITIONS, REPO, _free_port, _wait_healthy, stop_process
from tests.conftest import _sqlite_file_url
from tests.support import PASSWORD, csrf_of, valid_id_number
from tests.workflows.support import PEOPLE, application_id, make_world, proof
from web.generations import Generation
from web.serving import default_workers, worker_database
from web.workflows import InboxCounts


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def _wait_for(condition, timeout: float = 20.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _start(env: dict[str, str], var: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    port = _free_port()
    log = var / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(DANGAN), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
                                   env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    _wait_healthy(base, process, log)
    return process, base, log


def _env(db_url: str, var: Path, definitions: Path) -> dict[str, str]:
    return {**os.environ, "DANGAN_DATABASE_URL": db_url, "DANGAN_VAR": str(var), "DANGAN_DEFINITIONS": str(definitions),
            "PYTHONUNBUFFERED": "1"}


@dataclass
class TwoWorkers:
    process: subprocess.Popen
    base: str
    log: Path
    env: dict[str, str]
    definitions: Path  # a copy the test may edit


@pytest.fixture
def two_workers(fresh_db_url: str, tmp_path: Path) -> Iterator[TwoWorkers]:
    """`dangan serve --workers 2` (a SQLite file, a PostgreSQL schema) on its own copy of the definitions; stopped at
    teardown if still running."""
    definitions = tmp_path / "definitions"
    shutil.copytree(DEFINITIONS, definitions)
    var = tmp_path / "var"
    var.mkdir()
    env = _env(fresh_db_url, var, definitions)
    process, base, log = _start(env, var, "--workers", "2")
    try:
        _wait_for(lambda: len(_children(process.pid)) == 2, what="two workers")
        yield TwoWorkers(process, base, log, env, definitions)
    finally:
        if process.poll() is None:
            stop_process(process, timeout=30)


def test_workers_share_the_socket_reload_together_restart_and_stop(two_workers: TwoWorkers) -> None:
    process, base, log = two_workers.process, two_workers.base, two_workers.log
    first = _children(process.pid)
    # Every worker answers: fresh connections land on either one.
    for _ in range(20):
        with urllib.request.urlopen(base + "/login", timeout=10) as response:
            assert response.status == 200 and "登录" in response.read().decode()

    # A field added in YAML, then `dangan reload`: the parent checks it once, both workers load it.
    student = two_workers.definitions / "forms" / "student.yaml"
    student.write_text(student.read_text(encoding="utf-8").replace(
        "      - key: name\n", "      - key: nickname\n        label: 小名\n        type: text\n      - key: name\n", 1),
        encoding="utf-8")
    assert "nickname" in student.read_text(encoding="utf-8")
    reload = subprocess.run([str(DANGAN), "reload", "--port", base.rsplit(":", 1)[1]], env=two_workers.env, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert reload.returncode == 0, reload.stderr
    assert "已重新加载定义" in reload.stdout
    # Each worker re-reads them before its next request (fresh connections are handed to the workers in turn).
    for _ in range(4):
        with urllib.request.urlopen(base + "/login", timeout=10) as response:
            assert response.status == 200
    _wait_for(lambda: len(re.findall(r"定义已重新加载", log.read_text(errors="replace"))) == 2,
              what="both workers to reload")

    # A worker that dies is replaced; the server keeps answering meanwhile.
    victim = sorted(first)[0]
    os.kill(victim, signal.SIGKILL)
    _wait_for(lambda: len(_children(process.pid)) == 2 and victim not in _children(process.pid),
              what="a replacement worker")
    _wait_healthy(base, process, log)
    assert "意外退出" in log.read_text(errors="replace")

    # SIGTERM stops the workers and then the parent, cleanly.
    workers = _children(process.pid)
    process.terminate()
    assert process.wait(timeout=30) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def test_connections_opened_at_once_are_shared_evenly_by_the_workers(two_workers: TwoWorkers) -> None:
    """Keep-alive connections opened together (a load generator, a school's browsers after a network outage, a
    proxy's upstream pool) are handed to the workers in turn. On one shared socket the first worker awake could take
    them all; with a socket per worker the kernel's hash split 16 connections 11/5 in most bench runs."""
    port = int(two_workers.base.rsplit(":", 1)[1])
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(32)]
    try:
        for client in clients:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        for client in clients:
            assert client.recv(4096).startswith(b"HTTP/1.1 200"), "every connection is served"
        # The server side of each connection: local port = the server's, inode = the accepting worker's socket.
        server_sides = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":  # 01: established
                server_sides.add(fields[9])
        held = {pid: len(_socket_inodes(pid) & server_sides) for pid in _children(two_workers.process.pid)}
    finally:
        for client in clients:
            client.close()
    assert sorted(held.values()) == [16, 16], held


def test_reload_with_errors_reaches_no_worker(two_workers: TwoWorkers) -> None:
    process, log = two_workers.process, two_workers.log
    student = two_workers.definitions / "forms" / "student.yaml"
    student.write_text(student.read_text(encoding="utf-8").replace("type: text", "type: no_such_type", 1),
                       encoding="utf-8")
    # Straight to the parent (as a deploy script might), skipping the command's own check.
    os.kill(process.pid, signal.SIGHUP)
    _wait_for(lambda: "定义有错误，未加载" in log.read_text(errors="replace"), what="the refusal in the log")
    time.sleep(0.5)
    assert "定义已重新加载" not in log.read_text(errors="replace")
    assert process.poll() is None and len(_children(process.pid)) == 2


def test_an_in_memory_sqlite_database_refuses_more_than_one_worker(tmp_path: Path) -> None:
    """Each process would have a database of its own."""
    env = _env("sqlite:///:memory:", tmp_path / "var", DEFINITIONS)
    done = subprocess.run([str(DANGAN), "serve", "--port", str(_free_port()), "--workers", "2"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "内存中的 SQLite" in done.stderr and "PostgreSQL" in done.stderr


def test_sqlite_serves_with_a_worker_per_core_up_to_two() -> None:
    cores = os.cpu_count() or 1
    assert default_workers("sqlite:////srv/dangan/dangan.db") == min(2, cores)
    assert default_workers("sqlite:///:memory:") == default_workers("sqlite://") == 1
    assert default_workers("postgresql+psycopg://dangan@db/dangan") == min(4, cores)


def test_only_the_first_worker_copies_a_sqlite_files_wal(tmp_path: Path) -> None:
    url = _sqlite_file_url(tmp_path / "dangan.db")
    databases = [worker_database(url, 2, number) for number in (0, 1)]
    try:
        assert [db.checkpointer is not None for db in databases] == [True, False]
    finally:
        for db in databases:
            db.dispose()


def test_two_sqlite_workers_approve_at_once__each_decision_counts_once(tmp_path: Path) -> None:
    """Sixteen connections approve 48 applications, handed to two worker processes in turn, so that both write to
    the one SQLite file at the same moments: a writer that finds the lock taken tries again (web/writes.py), and
    every approval counts once with its effect applied once."""
    w = make_world(_sqlite_file_url(tmp_path / "dangan.db"), tmp_path, {u: PEOPLE[u] for u in ("reg", "bureau")})
    reg = w.login("reg")
    data = {"reason": "因病", "reason_detail": "住院治疗", "start_date": "2026-03-01", "end_date": "2026-09-01"}
    students, tasks = [], []
    for serial in range(48):
        students.append(w.student(f"学生{'甲乙丙丁戊己庚辛'[serial % 8]}{'一二三四五六'[serial // 8]}", valid_id_number(f"11010520080512{serial:02d}1")))
        app = application_id(reg.start("suspend", students[-1], data, proof()))
        tasks.append((app, w.open_tasks(app)[0].id))
    url = w.state.db.url
    w.state.db.dispose()
    var = tmp_path / "var"
    var.mkdir()
    process, base, _log = _start(_env(url, var, DEFINITIONS), var, "--workers", "2")
    try:
        _wait_for(lambda: len(_children(process.pid)) == 2, what="two workers")
        with httpx.Client(base_url=base) as client:
            csrf = csrf_of(client.get("/login").text)
            client.post("/login", data={"_csrf": csrf, "username": "bureau", "password": PASSWORD, "next": "/"})
            csrf, cookies = csrf_of(client.get("/wf/todo").text), dict(client.cookies)
        queue = iter(tasks)
        statuses: list[int] = []

        def approve_some() -> None:
            with httpx.Client(base_url=base, cookies=cookies, timeout=60) as client:
                for app, task in queue:  # the iterator is shared: each application is approved by one thread
                    statuses.append(client.post(f"/wf/a/{app}/decide", data={
                        "_csrf": csrf, "task": str(task), "decision": "approve", "comment": ""}).status_code)

        threads = [threading.Thread(target=approve_some) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        stop_process(process, timeout=30)
    assert sorted(statuses) == [303] * 48, statuses
    db = Database(url)
    try:
        with db.read() as s:
            assert s.scalar(select(func.count()).select_from(ApplicationAction).where(
                ApplicationAction.action == "approve")) == 48
            assert set(s.scalars(select(Application.status))) == {"approved"}
            assert {r.data["status"] for r in s.scalars(select(Record).where(Record.id.in_(students)))} == {"休学"}
            # One update per record: the effect was applied once.
            updates = s.execute(select(AuditEntry.record_id, func.count()).where(AuditEntry.action == "update")
                                .group_by(AuditEntry.record_id)).all()
            assert sorted(updates) == sorted((student, 1) for student in students)
    finally:
        db.dispose()


def _in_child(action) -> int:  # type: ignore[no-untyped-def]
    """Run `action` in a forked child; its exit status is what it returns (0..255)."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = int(action())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_generation_bumped_in_a_forked_worker_is_seen_by_its_siblings() -> None:
    generation = Generation()
    counts = InboxCounts(ttl=3600, generation=generation)
    computed: list[int] = []
    key = ("db", 1)

    def compute() -> int:
        computed.append(1)
        return len(computed)

    assert counts.get(key, compute) == 1
    assert counts.get(key, compute) == 1  # cached
    assert _in_child(lambda: generation.bump() or 0) == 0  # another worker approves something
    assert generation.value == 1
    assert counts.get(key, compute) == 2  # counted afresh here, long before the TTL


def test_concurrent_bumps_from_two_processes_all_count() -> None:
    generation = Generation()

    def many() -> int:
        for _ in range(2000):
            generation.bump()
        return 0

    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            os._exit(many())
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    assert generation.value == 4000


def test_each_forked_worker_claims_import_jobs_under_its_own_name() -> None:
    mine = runner_name()
    assert mine.endswith(f":{os.getpid()}")
    read, write = os.pipe()

    def report() -> int:
        os.write(write, runner_name().encode())
        return 0

    assert _in_child(report) == 0
    os.close(write)
    theirs = os.read(read, 200).decode()
    os.close(read)
    assert theirs != mine and theirs.rpartition(":")[0] == mine.rpartition(":")[0]
