"""Scheduled backups: when they are due, retention, failures, worker 0 of a real server; the admin overview's panel."""
from __future__ import annotations

import datetime as dt
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import select, update

from engine.backup.schedule import Schedule, scheduled_backup
from engine.backup.service import run_backup, verify_backup
from engine.storage.models import BackupRun, utcnow
from tests.browser_fixtures import stop_process
from tests.engine.helpers import BACKENDS, add_member, sign_in
from tests.ops.support import DANGAN, dangan_env, dossier_definitions, open_archive, two_databases
from tests.support import REPO, build


@pytest.mark.parametrize("backend", BACKENDS, ids=["sqlite", "pg"])
def test_a_backup_is_taken_when_due_and_only_the_newest_n_are_kept(backend: str, tmp_path: Path) -> None:
    with two_databases(backend, tmp_path) as (url, _unused):
        archive = open_archive(url, tmp_path)
        directory = tmp_path / "auto"
        directory.mkdir()
        (directory / "dangan-backup-20250101T000000Z.tar").write_bytes(b"a manual backup: never pruned")
        (directory / "readme.txt").write_text("not ours")
        schedule = Schedule(directory, every_hours=6, keep=3, definitions=archive.definitions)
        start, files = utcnow(), []
        for n in range(6):
            archive.add(f"第{n}次备份前")
            now = start + dt.timedelta(hours=6 * n)
            run = scheduled_backup(archive.state.db, schedule, now)
            assert run is not None and run.verified, run and run.message
            files.append(Path(run.file))
            assert scheduled_backup(archive.state.db, schedule, now + dt.timedelta(hours=5, minutes=59)) is None

        assert sorted(directory.glob("dangan-auto-*.tar")) == files[-3:]
        assert sorted(p.name for p in directory.iterdir() if not p.name.startswith("dangan-auto-")) == [
            "dangan-backup-20250101T000000Z.tar", "readme.txt"]
        newest = verify_backup(files[-1], tmp_path / "check").manifest
        assert newest.counts.records_by_form == {"dossier": 6}
        with archive.state.db.read() as s:
            assert s.scalars(select(BackupRun.kind).where(BackupRun.verified.is_(True))).all() == ["scheduled"] * 6
        archive.state.db.dispose()


def test_a_failed_scheduled_backup_is_recorded_and_tried_again_within_the_hour(tmp_path: Path) -> None:
    archive = open_archive(f"sqlite:///{tmp_path / 'dangan.db'}", tmp_path)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the backup directory should be")
    schedule = Schedule(blocked, every_hours=24, keep=3, definitions=archive.definitions)
    now = utcnow()

    failed = scheduled_backup(archive.state.db, schedule, now)
    assert failed is not None and not failed.verified
    assert failed.message.startswith("写备份文件失败")
    assert scheduled_backup(archive.state.db, schedule, now + dt.timedelta(minutes=59)) is None
    assert scheduled_backup(archive.state.db, schedule, now + dt.timedelta(minutes=61)) is not None
    archive.state.db.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.mark.parametrize("backend", BACKENDS, ids=["sqlite", "pg"])
def test_worker_0_of_a_running_server_takes_the_scheduled_backups_and_keeps_n(backend: str, tmp_path: Path) -> None:
    """`dangan serve --workers 2`, a backup due every 3.6 s: one process takes them all, a worker, and two stay."""
    with two_databases(backend, tmp_path) as (url, _unused):
        definitions = dossier_definitions(tmp_path / "definitions")
        var = tmp_path / "var"
        var.mkdir()
        env = dangan_env(url, definitions, var, DANGAN_BACKUP_EVERY_HOURS="0.001", DANGAN_BACKUP_KEEP="2")
        with (var / "server.log").open("wb") as log:
            server = subprocess.Popen([str(DANGAN), "serve", "--port", str(_free_port()), "--workers", "2"], env=env,
                                      cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            _app, state = build(url, definitions=definitions, tmp=tmp_path)  # the test's own view of the database
            deadline = time.monotonic() + 120
            runs: list[BackupRun] = []
            while len(runs) < 3 and time.monotonic() < deadline and server.poll() is None:
                time.sleep(0.5)
                with state.db.read() as s:
                    runs = list(s.scalars(select(BackupRun).order_by(BackupRun.id)))
            workers = _children(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            stop_process(server)
        state.db.dispose()
    assert len(runs) >= 3, (var / "server.log").read_text(errors="replace")
    assert all(r.kind == "scheduled" and r.verified for r in runs), [r.message for r in runs]
    (runner,) = {r.runner for r in runs}
    assert int(runner.rsplit(":", 1)[1]) in workers and len(workers) == 2
    kept = sorted((var / "backups").glob("dangan-auto-*.tar"))
    assert len(kept) == 2 and kept[-1] == Path(max(runs, key=lambda r: r.started_at).file)


def test_the_admin_overview_shows_the_last_backup_and_warns_when_none_is_recent(tmp_path: Path) -> None:
    definitions = dossier_definitions(tmp_path / "definitions")
    app, state = build(f"sqlite:///{tmp_path / 'dangan.db'}", definitions=definitions, tmp=tmp_path)
    add_member(state, "boss", "clerk", "区")
    with TestClient(app=app, base_url="http://testserver.local") as client:
        sign_in(client, state, "boss")
        page = client.get("/admin/").text
        assert 'id="backup-warning"' in page and "还没有校验通过的备份" in page
        assert "每 24 小时一次，保留最近 7 份" in page

        run = run_backup(state.db, tmp_path / "b.tar", definitions, "manual")
        page = client.get("/admin/").text
        assert 'id="backup-warning"' not in page
        assert "（手动）：" in page and "<strong>已读回校验</strong>" in page
        assert str(tmp_path / "b.tar") in page and "记录 0 条，审计 0 条，附件 0 个，用户 2 个" in page

        with state.db.write() as s:
            s.execute(update(BackupRun).where(BackupRun.id == run.id).values(
                started_at=utcnow() - dt.timedelta(days=3), finished_at=utcnow() - dt.timedelta(days=3)))
            s.add(BackupRun(kind="scheduled", started_at=utcnow(), finished_at=utcnow(), file="", size=0, counts={},
                            verified=False, message="写备份文件失败：磁盘已满", runner="h:1"))
            s.commit()
        page = client.get("/admin/").text
        assert 'id="backup-warning"' in page and "已超过 48 小时" in page
        assert "（定时）：" in page and "<strong class=\"error\">失败</strong>：写备份文件失败：磁盘已满" in page
    state.db.dispose()
