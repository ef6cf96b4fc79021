"""Taking, verifying and restoring a backup archive, on SQLite or PostgreSQL.

A backup is written to `<file>.part`, read back and verified (checksums, then the rows in the archived database
counted again and compared with the manifest) and only then renamed to its name. A restore verifies the archive the
same way before it touches the target, then replaces the target in one step that either completes or leaves it as
it was (sqlite.restore, postgres.restore).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import tempfile
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from engine.backup import postgres, sqlite
from engine.backup.archive import Extracted, bytes_member, file_member, read_archive, write_archive
from engine.backup.counting import code_revision
from engine.backup.manifest import DATABASE_MEMBERS, DEFINITIONS, KINDS, BackupError, Counts, Manifest
from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.storage.db import Database, sqlite_file
from engine.storage.models import BackupRun, utcnow

log = logging.getLogger("dangan")
MANUAL_PREFIX = "dangan-backup-"
BEFORE_RESTORE_PREFIX = "dangan-before-restore-"


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: Manifest
    size: int


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    replaced: Counts | None  # what the target held before, if anything
    safety_copy: Path | None  # the backup of that, taken just before it was replaced
    notes: list[str] = field(default_factory=list)


def archive_name(prefix: str, moment: dt.datetime) -> str:
    """Names sort by time (UTC, as the `Z` says)."""
    return f"{prefix}{moment:%Y%m%dT%H%M%SZ}.tar"


def database_kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def runner() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}"


# --- backup -------------------------------------------------------------------------------------------------------
def create_backup(url: str, output: Path, definitions: Path, pg_bin: Path | None = None,
                  now: dt.datetime | None = None) -> BackupResult:
    """Write one verified archive of the database at `url` and the `definitions` directory to `output`."""
    kind = database_kind(url)
    path = sqlite_file(url)
    if kind == "sqlite" and path is None:
        raise BackupError("内存中的 SQLite 数据库只存在于一个进程里，无法备份：请使用数据库文件或 PostgreSQL")
    output = output.absolute()
    if output.exists():
        raise BackupError(f"{output} 已存在，不会覆盖：请换一个文件名")
    partial = output.with_name(output.name + ".part")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        # The copy of the database is made next to the archive: the same disk must hold both anyway.
        with tempfile.TemporaryDirectory(prefix=".dangan-backup-", dir=output.parent) as work_name:
            work = Path(work_name)
            database = work / DATABASE_MEMBERS[kind]
            if path is not None:
                found, details = sqlite.snapshot(Path(path), database), {}
            else:
                found, details = postgres.snapshot(url, database, pg_bin)
            texts, version, notes = _definitions(definitions)
            members = {database.name: file_member(database), **{name: bytes_member(data) for name, data in texts.items()}}
            manifest = Manifest((now or utcnow()).replace(microsecond=0), kind, found.revision, version, found.counts,
                                members, details, notes)
            write_archive(partial, manifest, {database.name: database}, texts)
            database.unlink()
            verify_backup(partial, work / "verify", pg_bin, expected=manifest)
            os.replace(partial, output)
    except OSError as exc:
        raise BackupError(f"写备份文件失败：{exc}") from exc
    finally:
        with suppress(OSError):  # e.g. no directory to remove it from: the error above says why
            partial.unlink(missing_ok=True)
    return BackupResult(output, manifest, output.stat().st_size)


def _definitions(directory: Path) -> tuple[dict[str, bytes], str, tuple[str, ...]]:
    """The definition files (hidden ones, such as a .git folder, left out), their version, and what to note."""
    if not directory.is_dir():
        return {}, "", (f"找不到定义目录 {directory}，备份中没有定义文件",)
    files = sorted(p for p in directory.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts))
    texts = {DEFINITIONS + p.relative_to(directory).as_posix(): p.read_bytes() for p in files}
    try:
        return texts, load_definitions(directory).version, ()
    except DefinitionErrors as exc:
        return texts, "", (f"定义目录 {directory} 有 {len(exc.errors)} 处错误，清单中没有定义版本",)


def verify_backup(archive: Path, work: Path, pg_bin: Path | None = None, expected: Manifest | None = None) -> Extracted:
    """Unpack and check an archive: checksums of every member, then the archived database counted again."""
    extracted = read_archive(archive, work)
    manifest = extracted.manifest
    if manifest.database == "sqlite":
        found = sqlite.contents(extracted.database_file)
    else:
        found = postgres.dump_contents(extracted.database_file, pg_bin)
    if found.counts != manifest.counts:
        raise BackupError(f"备份中的数据库与清单不符：{differences(manifest.counts, found.counts)}")
    if found.revision != manifest.alembic_revision:
        raise BackupError(f"备份中数据库的结构版本（{found.revision}）与清单（{manifest.alembic_revision}）不符")
    if expected is not None and manifest != expected:
        raise BackupError("读回的备份清单与写入的不同")
    return extracted


def differences(expected: Counts, found: Counts) -> str:
    """"table：清单 N，实际 M" for each count that differs."""
    lines = []
    for label, want, got in (("", expected.tables, found.tables), ("表单 ", expected.records_by_form, found.records_by_form)):
        for name in sorted(set(want) | set(got)):
            if want.get(name) != got.get(name):
                lines.append(f"{label}{name}：清单 {want.get(name, '无')}，实际 {got.get(name, '无')}")
    return "；".join(lines[:6]) + ("……" if len(lines) > 6 else "")


def run_backup(db: Database, output: Path, definitions: Path, kind: str, pg_bin: Path | None = None,
               now: dt.datetime | None = None) -> BackupRun:
    """create_backup, and a row in `backups` that says how it went (a failure included, with its message)."""
    started = (now or utcnow()).replace(microsecond=0)
    row = BackupRun(kind=kind, started_at=started, file=str(output.absolute()), size=0, counts={}, verified=False,
                    message="", runner=runner())
    try:
        result = create_backup(db.url, output, definitions, pg_bin, now=started)
        row.size, row.counts, row.verified = result.size, result.manifest.counts.to_json(), True
        row.message = "；".join(result.manifest.notes)
    except BackupError as exc:
        row.message = str(exc)
    row.finished_at = utcnow()
    path = sqlite_file(db.url)
    if path is not None and not Path(path).is_file():
        return row  # no database to back up, nor to record the attempt in (connecting would create an empty file)
    try:
        with db.write() as s:
            s.add(row)
            s.commit()
    except SQLAlchemyError as exc:  # an old schema without `backups`: the archive itself is still good
        log.warning("未能把这次备份记入 backups 表：%s", exc)
    return row


# --- restore ------------------------------------------------------------------------------------------------------
def restore_backup(url: str, archive: Path, *, definitions: Path, force: bool = False, safety_dir: Path | None = None,
                   definitions_out: Path | None = None, server_pid_file: Path | None = None,
                   pg_bin: Path | None = None) -> RestoreResult:
    """Replace the database at `url` with the archive's; raises BackupError, having changed nothing, when the archive
    is damaged or does not fit (other database kind, other schema revision), or the target holds data and not
    `force`. With `force` and `safety_dir`, what the target held is backed up there first. `definitions_out` (absent
    or empty) receives the archive's definition files."""
    pid = running_server(server_pid_file) if server_pid_file else None
    if pid is not None:
        raise BackupError(f"服务正在运行（进程 {pid}）：请先停止服务，恢复完成后再启动")
    if definitions_out is not None and definitions_out.exists() and (
            not definitions_out.is_dir() or any(definitions_out.iterdir())):
        raise BackupError(f"{definitions_out} 已存在且不是空目录：请为备份中的定义指定一个新目录")
    kind = database_kind(url)
    path = sqlite_file(url)
    if kind == "sqlite" and path is None:
        raise BackupError("不能恢复到内存中的 SQLite 数据库：请在 DANGAN_DATABASE_URL 中指定数据库文件")
    database = Path(path).absolute() if path else None
    # SQLite: the archive is unpacked beside the database, on the disk that must hold the restored copy anyway.
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".dangan-restore-", dir=database.parent if database else None) as work_name:
        extracted = verify_backup(archive, Path(work_name), pg_bin)
        manifest = extracted.manifest
        _check_fits(manifest, kind)
        target = postgres.present(url) if database is None else None
        held = sqlite.present(database) if database is not None else target.counts if target else None
        replaced = held if held is not None and held.holds_data else None
        safety = None
        if replaced is not None:
            if not force:
                raise BackupError(f"目标数据库已有数据（{replaced.summary()}）。恢复会用备份整体替换这些数据；"
                                  "确认要替换，请加 --force" + ("（替换前会先把现有数据备份一份）" if safety_dir else ""))
            if safety_dir is not None:
                safety = create_backup(url, safety_dir / archive_name(BEFORE_RESTORE_PREFIX, utcnow()), definitions,
                                       pg_bin).path
        if database is not None:
            sqlite.restore(extracted.database_file, database, manifest.counts)
        elif target is not None:
            postgres.restore(url, extracted.database_file, manifest, target, pg_bin)
        if definitions_out is not None:
            for name, source in extracted.definitions().items():
                (definitions_out / name).parent.mkdir(parents=True, exist_ok=True)
                (definitions_out / name).write_bytes(source.read_bytes())
    return RestoreResult(manifest, replaced, safety, _definitions_notes(manifest, definitions))


def _check_fits(manifest: Manifest, kind: str) -> None:
    if manifest.database != kind:
        raise BackupError(f"这是 {KINDS[manifest.database]} 数据库的备份，不能恢复到 {KINDS[kind]} 数据库")
    ours = code_revision()
    if manifest.alembic_revision != ours:
        raise BackupError(f"备份的数据库结构版本为 {manifest.alembic_revision or '（无）'}，本程序为 {ours}：请用生成该备份时"
                          "的 Dangan 版本恢复（恢复后再升级 Dangan，启动时会自动迁移）")


def _definitions_notes(manifest: Manifest, definitions: Path) -> list[str]:
    try:
        current = load_definitions(definitions).version
    except DefinitionErrors:
        current = ""
    if manifest.definitions_version and current != manifest.definitions_version:
        return [f"备份时的定义版本为 {manifest.definitions_version}，当前定义目录 {definitions} 的版本为 {current or '（有错误）'}："
                "如需备份时的定义，可用 --definitions 目录 取出"]
    return []


def running_server(pid_file: Path) -> int | None:
    """The pid of a `dangan serve` that wrote `pid_file` and still runs (a stale file's pid may be reused)."""
    try:
        pid = int(pid_file.read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"dangan" in command and b"serve" in command else None
