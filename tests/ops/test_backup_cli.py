"""The installed `dangan backup` and `dangan restore` as subprocesses, on real database files and schemas."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.storage.models import BackupRun
from tests.engine.helpers import BACKENDS
from tests.ops.support import DANGAN, dangan_env, open_archive, table_rows, two_databases
from tests.support import REPO


def dangan(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DANGAN), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("backend", BACKENDS, ids=["sqlite", "pg"])
def test_backup_then_restore_into_an_empty_database__again_only_with_force(backend: str, tmp_path: Path) -> None:
    with two_databases(backend, tmp_path) as (source_url, target_url):
        archive = open_archive(source_url, tmp_path / "source")
        for n in range(5):
            archive.add(f"卷{n}")
        source_env = dangan_env(source_url, archive.definitions, tmp_path / "var")

        done = dangan(source_env, "backup", "--output", str(tmp_path / "cli.tar"))
        assert done.returncode == 0, done.stderr
        assert f"备份完成，已读回校验：{tmp_path / 'cli.tar'}" in done.stdout
        assert "记录 5 条（dossier 5），审计 5 条，附件 5 个，用户 2 个" in done.stdout
        assert (tmp_path / "cli.tar").stat().st_mode & 0o777 == 0o600
        default = dangan(source_env, "backup")
        assert default.returncode == 0, default.stderr
        (made,) = (tmp_path / "var" / "backups").glob("dangan-backup-*.tar")
        with archive.state.db.read() as s:
            runs = s.scalars(select(BackupRun).order_by(BackupRun.id)).all()
        assert [(r.kind, r.verified, Path(r.file)) for r in runs] == [
            ("manual", True, tmp_path / "cli.tar"), ("manual", True, made)]
        assert runs[0].counts["tables"]["attachments"] == 5
        archive.state.db.dispose()
        source = table_rows(source_url)

        target_env = dangan_env(target_url, archive.definitions, tmp_path / "var-target")
        done = dangan(target_env, "restore", str(tmp_path / "cli.tar"))
        assert done.returncode == 0, done.stderr
        assert "行数与备份清单一致" in done.stdout and "记录 5 条（dossier 5）" in done.stdout
        restored = table_rows(target_url)
        # The backup's own row is written after its snapshot; everything else is as it was.
        assert restored.pop("backups") == {} and len(source.pop("backups")) == 2
        assert restored == source

        again = dangan(target_env, "restore", str(tmp_path / "cli.tar"))
        assert again.returncode == 1
        assert "未恢复，数据库没有改变：目标数据库已有数据（记录 5 条" in again.stderr and "--force" in again.stderr

        out = tmp_path / "definitions-as-backed-up"
        forced = dangan(target_env, "restore", str(tmp_path / "cli.tar"), "--force", "--definitions", str(out))
        assert forced.returncode == 0, forced.stderr
        (safety,) = (tmp_path / "var-target" / "backups").glob("dangan-before-restore-*.tar")
        assert f"替换前的数据已备份到 {safety}" in forced.stdout
        assert (out / "forms" / "dossier.yaml").read_bytes() == (archive.definitions / "forms" / "dossier.yaml").read_bytes()
        assert table_rows(target_url) | {"backups": {}} == restored | {"backups": {}}


@pytest.mark.parametrize("backend", BACKENDS, ids=["sqlite", "pg"])
def test_a_damaged_archive_is_refused_by_the_command_and_nothing_is_written(backend: str, tmp_path: Path) -> None:
    with two_databases(backend, tmp_path) as (source_url, target_url):
        archive = open_archive(source_url, tmp_path / "source")
        archive.add("卷")
        archive.state.db.dispose()
        assert dangan(dangan_env(source_url, archive.definitions, tmp_path / "var"), "backup", "-o",
                      str(tmp_path / "good.tar")).returncode == 0
        shutil.copyfile(tmp_path / "good.tar", tmp_path / "cut.tar")
        os.truncate(tmp_path / "cut.tar", (tmp_path / "good.tar").stat().st_size * 2 // 3)

        done = dangan(dangan_env(target_url, archive.definitions, tmp_path / "var-target"), "restore", str(tmp_path / "cut.tar"))
        assert done.returncode == 1
        assert done.stderr.startswith("未恢复，数据库没有改变：备份文件不完整或已损坏")
        if backend == "sqlite":
            assert not (tmp_path / "target" / "restored.db").exists()
        else:
            assert dangan(dangan_env(target_url, archive.definitions, tmp_path / "v"), "restore",
                          str(tmp_path / "good.tar")).returncode == 0  # the target was still empty: no --force needed


def test_backup_of_a_missing_database_file_fails_without_creating_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    done = dangan(dangan_env(url, tmp_path / "definitions", tmp_path / "var"), "backup")
    assert done.returncode == 1
    assert done.stderr.startswith(f"备份失败：找不到 SQLite 数据库文件 {tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()
    assert list((tmp_path / "var" / "backups").iterdir()) == []
