"""Scheduled backups with retention, run from a thread of one server process, and what the admin page shows of them.

When the next backup is due is read from the `backups` table, not kept in memory: a restarted server does not take a
backup at once because it forgot the last one, and a server that was down past the time takes it soon after start.
"""
from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.backup.manifest import Counts
from engine.backup.service import archive_name, run_backup
from engine.fields.files import human_size
from engine.storage.db import Database
from engine.storage.models import BackupRun, utcnow

log = logging.getLogger("dangan")
AUTO_PREFIX = "dangan-auto-"
CHECK_SECONDS = 600.0  # how often the thread looks whether a backup is due (less when the interval is shorter)
RETRY_FAILED = dt.timedelta(hours=1)  # a failed backup is tried again this soon, not a whole interval later


@dataclass(frozen=True)
class Schedule:
    directory: Path
    every_hours: float  # 0: no scheduled backups
    keep: int  # scheduled archives kept in `directory`; older ones are deleted after a verified new one
    definitions: Path
    pg_bin: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.every_hours > 0 and self.keep > 0

    @property
    def every(self) -> dt.timedelta:
        return dt.timedelta(hours=self.every_hours)


def due(last: BackupRun | None, schedule: Schedule, now: dt.datetime) -> bool:
    if last is None:
        return True
    wait = schedule.every if last.verified else min(schedule.every, RETRY_FAILED)
    return now >= last.started_at + wait


def scheduled_backup(db: Database, schedule: Schedule, now: dt.datetime | None = None) -> BackupRun | None:
    """Take a backup if one is due; after a verified one, keep only the newest `keep` scheduled archives."""
    now = now or utcnow()
    with db.read() as s:
        last = s.scalar(select(BackupRun).where(BackupRun.kind == "scheduled")
                        .order_by(BackupRun.started_at.desc(), BackupRun.id.desc()).limit(1))
    if not due(last, schedule, now):
        return None
    _clear_leftovers(schedule.directory)
    run = run_backup(db, schedule.directory / archive_name(AUTO_PREFIX, now), schedule.definitions, "scheduled",
                     schedule.pg_bin, now)
    if run.verified:
        log.info("定时备份完成：%s（%s）", run.file, human_size(run.size))
        prune(schedule.directory, schedule.keep)
    else:
        log.error("定时备份失败：%s", run.message)
    return run


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` scheduled archives (names sort by time); other files are never touched."""
    archives = sorted(directory.glob(f"{AUTO_PREFIX}*.tar"))
    doomed = archives[:-keep] if keep > 0 else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def _clear_leftovers(directory: Path) -> None:
    """What a scheduled backup killed half-way left behind (only this thread writes scheduled archives)."""
    for partial in directory.glob(f"{AUTO_PREFIX}*.tar.part"):
        partial.unlink(missing_ok=True)
    for work in directory.glob(".dangan-backup-*"):
        shutil.rmtree(work, ignore_errors=True)


class BackupScheduler:
    """A thread that takes the scheduled backups; one process of a server runs it (web/serving.py)."""

    def __init__(self, db: Database, schedule: Schedule, pause: float | None = None) -> None:
        self.db, self.schedule = db, schedule
        self.pause = pause if pause is not None else min(CHECK_SECONDS, schedule.every_hours * 3600)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dangan-backups", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # The first look comes a pause after start, not during it.
        while not self.stopping.wait(self.pause):
            try:
                scheduled_backup(self.db, self.schedule)
            except Exception:  # noqa: BLE001 — the schedule must outlive one bad run (the database away, say)
                log.exception("定时备份出错")

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


@dataclass(frozen=True)
class BackupStatus:
    """The latest backup, the latest verified one, and whether that is recent enough."""

    last: BackupRun | None
    last_verified: BackupRun | None
    schedule: Schedule
    now: dt.datetime

    @property
    def stale_after_hours(self) -> float:
        """Two intervals of the schedule (one missed run is allowed for), or two days without one."""
        return self.schedule.every_hours * 2 if self.schedule.enabled else 48.0

    @property
    def recent(self) -> bool:
        good = self.last_verified
        return good is not None and self.now - (good.finished_at or good.started_at) <= dt.timedelta(
            hours=self.stale_after_hours)

    @property
    def summary(self) -> str:
        return Counts.from_json(self.last.counts).summary() if self.last and self.last.counts else ""

    @property
    def size(self) -> str:
        return human_size(self.last.size) if self.last else ""


def backup_status(s: Session, schedule: Schedule, now: dt.datetime | None = None) -> BackupStatus:
    newest = select(BackupRun).order_by(BackupRun.started_at.desc(), BackupRun.id.desc()).limit(1)
    return BackupStatus(s.scalar(newest), s.scalar(newest.where(BackupRun.verified.is_(True))), schedule,
                        now or utcnow())
