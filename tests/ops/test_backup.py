"""Backups and restores on SQLite and PostgreSQL: a snapshot taken while records are written restores exactly what its
manifest counted; a damaged or mismatched archive is refused with nothing written; a target with data needs --force."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from engine.backup.counting import code_revision
from engine.backup import postgres
from engine.backup.manifest import MANIFEST, BackupError, Counts
from engine.backup.service import create_backup, restore_backup, verify_backup
from tests.conftest import pg_admin_url
from tests.engine.helpers import BACKENDS, id_number
from tests.ops.support import Writers, open_archive, table_rows, two_databases
from tests.support import DEFINITIONS
from tests.workflows.support import PEOPLE, application_id, make_world, proof


def _restore_schemas() -> set[str]:
    """Schemas a PostgreSQL restore moves aside in its transaction: none may outlive it."""
    engine = create_engine(pg_admin_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return set(connection.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dangan_restore_%'")).scalars())
    finally:
        engine.dispose()


def _tables(url: str) -> list[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if url.startswith("sqlite"):
                return list(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
            return list(connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).scalars())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS, ids=["sqlite", "pg"])
def test_a_backup_taken_while_records_are_written__restores_the_snapshot_its_manifest_counted(backend: str, tmp_path: Path) -> None:
    with two_databases(backend, tmp_path) as (source_url, target_url):
        archive = open_archive(source_url, tmp_path / "source", clerks=3)
        for n in range(20):
            archive.add(f"之前{n}")
        writers = Writers(archive, threads=2)
        writers.start()
        writers.wait_for(30)
        before = len(writers.made)
        result = create_backup(source_url, tmp_path / "backups" / "b.tar", archive.definitions)
        after = len(writers.made)
        writers.wait_for(after + 10)  # the writers never paused: they go on after the snapshot too
        writers.stop()
        assert before >= 30 and len(writers.made) >= after + 10
        source = table_rows(source_url)

        restore_backup(target_url, result.path, definitions=archive.definitions)
        restored = table_rows(target_url)
        assert table_rows(source_url) == source  # on PostgreSQL the live source schema was moved aside and back
        archive.state.db.dispose()

    manifest = result.manifest
    assert {name: len(rows) for name, rows in restored.items()} == {n: c for n, c in manifest.counts.tables.items() if n in restored}
    assert manifest.counts.records_by_form == {"dossier": len(restored["records"])}
    # The form's projection (engine/storage/projection.py) is in the snapshot too, one row per record.
    assert manifest.counts.tables["p_dossier"] == len(restored["records"])
    # A snapshot, not a copy of a moving target: later records are missing, earlier ones all there.
    assert 20 + before <= len(restored["records"]) < len(source["records"])
    for name, rows in restored.items():
        for key, row in rows.items():
            assert source[name][key] == row, (name, key)
    # Consistent: every record restored with its audit entry and its scan, and nothing of a record that is not.
    record_ids = {key[0] for key in restored["records"]}
    assert {row["record_id"] for row in restored["audit_log"].values()} == record_ids
    attachments = restored["attachments"].values()
    assert {row["record_id"] for row in attachments} == record_ids
    assert all(hashlib.sha256(row["content"]).hexdigest() == row["sha256"] for row in attachments)
    assert len(restored["users"]) == len(source["users"]) == 4  # the first admin and three clerks


# --- damaged and mismatched archives ----------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=BACKENDS, ids=["sqlite", "pg"])
def good_archive(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(backend, a verified archive of a few dossiers)."""
    tmp = tmp_path_factory.mktemp("good")
    with two_databases(request.param, tmp) as (source_url, _unused):
        archive = open_archive(source_url, tmp)
        for n in range(3):
            archive.add(f"卷{n}")
        path = create_backup(source_url, tmp / "good.tar", archive.definitions).path
        archive.state.db.dispose()
        yield request.param, path


def _member_offset(path: Path, name: str) -> tuple[int, int]:
    with tarfile.open(path) as tar:
        info = tar.getmember(name)
        return info.offset_data, info.size


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _rewrite(path: Path, change: Callable[[dict], None], drop: str = "") -> None:
    """A well-formed archive whose manifest says something else (its checksum made to match), or lacks a member."""
    with tarfile.open(path) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar.getmembers()]  # type: ignore[union-attr]
    manifest = json.loads(members[0][1])
    change(manifest)
    raw = json.dumps(manifest).encode()
    members[0] = (members[0][0], raw)
    members[1] = (members[1][0], (hashlib.sha256(raw).hexdigest() + "\n").encode())
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if info.name != drop:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _database_member(path: Path) -> str:
    with tarfile.open(path) as tar:
        return next(name for name in tar.getnames() if name.startswith("database."))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "flipped byte in the database": (
        lambda p: _flip(p, sum(_member_offset(p, _database_member(p))) - 1000), "的校验和不符"),
    "flipped byte in the manifest": (lambda p: _flip(p, _member_offset(p, MANIFEST)[0] + 40), f"{MANIFEST} 的校验和不符"),
    "flipped byte in a tar header": (lambda p: _flip(p, _member_offset(p, _database_member(p))[0] - 512 + 20), "已损坏"),
    "cut in half": (lambda p: os.truncate(p, p.stat().st_size // 2), "不完整或已损坏"),
    "cut inside the manifest": (lambda p: os.truncate(p, 900), "不完整或已损坏"),
    "empty file": (lambda p: os.truncate(p, 0), "不是 Dangan 备份文件"),
    "not a tar": (lambda p: p.write_bytes(b"PK\x03\x04 a zip, say" * 100), "不是 Dangan 备份文件"),
    "a definition file missing": (
        lambda p: _rewrite(p, lambda m: None, drop="definitions/forms/dossier.yaml"), "缺少 definitions/forms/dossier.yaml"),
    "a revision the database does not have": (
        lambda p: _rewrite(p, lambda m: m.update(alembic_revision="0001")), "与清单（0001）不符"),
    "an unknown format version": (lambda p: _rewrite(p, lambda m: m.update(format_version=2)), "未知的备份格式版本 2"),
    "counts that the database does not hold": (
        lambda p: _rewrite(p, lambda m: m["counts"]["tables"].update(records=99)), "records：清单 99，实际 3"),
    "a member outside the definitions": (
        lambda p: _rewrite(p, lambda m: m["members"].update({"../../etc/passwd": {"sha256": "0" * 64, "size": 1}})),
        "不该有的文件“../../etc/passwd”"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_or_mismatched_archive_is_refused_and_nothing_is_written(good_archive: tuple[str, Path], damage: str,
                                                                           tmp_path: Path) -> None:
    backend, good = good_archive
    broken = tmp_path / "broken.tar"
    shutil.copyfile(good, broken)
    harm, expected = DAMAGE[damage]
    harm(broken)
    with two_databases(backend, tmp_path) as (_source, target_url):
        with pytest.raises(BackupError) as refused:
            restore_backup(target_url, broken, definitions=tmp_path / "none")
        assert expected in str(refused.value)
        if backend == "sqlite":
            assert not (tmp_path / "target" / "restored.db").exists()
            assert list((tmp_path / "target").iterdir()) == []  # the unpacked archive is gone too
        else:
            assert _tables(target_url) == []
            assert _restore_schemas() == set()


def test_a_sqlite_archive_is_not_restored_into_postgresql(good_archive: tuple[str, Path], tmp_path: Path) -> None:
    backend, good = good_archive
    other = "postgresql" if backend == "sqlite" else "sqlite"
    with two_databases(other, tmp_path) as (_source, target_url):
        with pytest.raises(BackupError, match="数据库的备份，不能恢复到"):
            restore_backup(target_url, good, definitions=tmp_path / "none")
        if other == "postgresql":
            assert _tables(target_url) == []
        else:
            assert not (tmp_path / "target" / "restored.db").exists()


@pytest.mark.parametrize("backend", BACKENDS, ids=["sqlite", "pg"])
def test_an_archive_of_another_schema_revision_is_refused(backend: str, tmp_path: Path) -> None:
    """A database that an older Dangan wrote (its alembic_version says so) backs up fine, but this code does not
    restore it: the tables it would create are not the ones that archive holds."""
    with two_databases(backend, tmp_path) as (source_url, target_url):
        archive = open_archive(source_url, tmp_path)
        archive.add("旧版本的记录")
        with archive.state.db.write() as s:
            s.execute(text("UPDATE alembic_version SET version_num = '0001' WHERE version_num <> '0002'"))
            s.commit()
        backup = create_backup(source_url, tmp_path / "old.tar", archive.definitions)
        archive.state.db.dispose()
        assert backup.manifest.alembic_revision == "0001,0002"
        with pytest.raises(BackupError, match=rf"备份的数据库结构版本为 0001,0002，本程序为 {code_revision()}"):
            restore_backup(target_url, backup.path, definitions=archive.definitions)
        if backend == "postgresql":
            assert _tables(target_url) == []
        else:
            assert not (tmp_path / "target" / "restored.db").exists()


# --- a target that holds data -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS, ids=["sqlite", "pg"])
def test_a_target_with_data_is_refused_without_force__with_force_it_is_saved_first_and_replaced(backend: str, tmp_path: Path) -> None:
    with two_databases(backend, tmp_path) as (url, _unused):
        archive = open_archive(url, tmp_path)
        first = [archive.add(f"旧{n}") for n in range(3)]
        backup = create_backup(url, tmp_path / "b.tar", archive.definitions)
        snapshot = table_rows(url)
        later = archive.add("备份之后")
        current = table_rows(url)

        with pytest.raises(BackupError, match=r"目标数据库已有数据（记录 4 条.*请加 --force"):
            restore_backup(url, backup.path, definitions=archive.definitions, safety_dir=tmp_path / "safety")
        assert table_rows(url) == current
        assert not (tmp_path / "safety").exists()

        result = restore_backup(url, backup.path, definitions=archive.definitions, force=True, safety_dir=tmp_path / "safety")
        archive.state.db.dispose()
        assert table_rows(url) == snapshot
        assert sorted(key[0] for key in table_rows(url)["records"]) == first
        assert result.replaced is not None and result.replaced.tables["records"] == 4
        assert result.safety_copy is not None and result.safety_copy.parent == tmp_path / "safety"
        saved = verify_backup(result.safety_copy, tmp_path / "check").manifest
        assert saved.counts.tables["records"] == 4 and later not in first


@pytest.mark.pg
def test_postgres_restore_whose_counts_differ_rolls_back_in_its_transaction(tmp_path: Path) -> None:
    """The DO block after pg_restore's script compares every count before COMMIT; a difference leaves the target, the
    source schema and the schema names as they were."""
    with two_databases("postgresql", tmp_path) as (source_url, target_url):
        archive = open_archive(source_url, tmp_path)
        archive.add("一")
        backup = create_backup(source_url, tmp_path / "b.tar", archive.definitions)
        target = open_archive(target_url, tmp_path / "t")
        target.add("目标的记录")
        archive.state.db.dispose()
        target.state.db.dispose()
        before_source, before_target = table_rows(source_url), table_rows(target_url)

        extracted = verify_backup(backup.path, tmp_path / "x")
        wrong = Counts({**extracted.manifest.counts.tables, "audit_log": 7}, extracted.manifest.counts.records_by_form)
        manifest = replace(extracted.manifest, counts=wrong)
        with pytest.raises(BackupError, match="恢复出的行数与备份清单不符"):
            postgres.restore(target_url, extracted.database_file, manifest, postgres.present(target_url), None)
        assert table_rows(target_url) == before_target
        assert table_rows(source_url) == before_source
        assert _restore_schemas() == set()


@pytest.mark.pg
def test_pg_dump_older_than_the_server_is_refused_by_name(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    (tools / "pg_dump").chmod(0o755)
    for name in ("pg_restore", "psql"):
        (tools / name).symlink_to(shutil.which(name))  # type: ignore[arg-type]
    with two_databases("postgresql", tmp_path) as (url, _unused):
        archive = open_archive(url, tmp_path)
        with pytest.raises(BackupError, match=r"pg_dump 的版本（9）低于数据库服务器（1\d）.*DANGAN_PG_BIN"):
            create_backup(url, tmp_path / "b.tar", archive.definitions, pg_bin=tools)
        archive.state.db.dispose()
    assert not (tmp_path / "b.tar").exists() and not (tmp_path / "b.tar.part").exists()
    with pytest.raises(BackupError, match="找不到 pg_dump"):
        postgres.tools(tmp_path / "empty")


def test_copy_data_is_counted_per_table_and_form_with_escapes() -> None:
    script = [
        b'COPY "odd ""name""".records (id, form_key, data) FROM stdin;\n',
        b'1\tstudent\t{"a": "x\\ty"}\n', b'2\tstudent\t{}\n', b'3\taward\t{"b": "\\\\"}\n', b'\\.\n',
        b"SELECT pg_catalog.setval('s.records_id_seq', 3, true);\n",
        b"COPY s.alembic_version (version_num) FROM stdin;\n", b"0002\n", b"0008\n", b"\\.\n",
        b"COPY s.users (id) FROM stdin;\n", b"\\.\n",
    ]
    tables, watched = postgres.count_copy_data(script)
    assert tables == {"records": 3, "alembic_version": 2, "users": 0}
    assert watched == {"records": ["student", "student", "award"], "alembic_version": ["0002", "0008"]}


@pytest.mark.parametrize("backend", BACKENDS, ids=["sqlite", "pg"])
def test_a_backup_taken_while_approvals_are_decided_holds_each_decision_whole_or_not_at_all(backend: str, tmp_path: Path) -> None:
    """An approval changes the application, its task, its timeline and (its effect) the student's record in one
    transaction; in the restored snapshot each application is either decided with all of that, or still pending with
    none of it."""
    with two_databases(backend, tmp_path) as (source_url, target_url):
        w = make_world(source_url, tmp_path, {u: PEOPLE[u] for u in ("reg", "bureau")})
        reg, bureau = w.login("reg"), w.login("bureau")
        withdraw = {"reason": "出国", "leave_date": "2026-09-01"}
        students = [w.student(f"学生{name}", id_number(dt.date(2008, 5, 12), 2 * n + 1))  # odd: 男, as valid_student
                    for n, name in enumerate(a + b for a in "甲乙丙丁戊己庚辛壬癸" for b in "一二")]
        applications = [application_id(reg.start("withdraw", student, withdraw, proof())) for student in students]
        decided: list[int] = []

        def approve_all() -> None:
            for app in applications:
                assert bureau.decide(app, "approve", comment="同意").status_code == 303
                decided.append(app)

        thread = threading.Thread(target=approve_all)
        thread.start()
        while len(decided) < 3 and thread.is_alive():
            time.sleep(0.01)
        backup = create_backup(source_url, tmp_path / "b.tar", DEFINITIONS)
        thread.join(timeout=120)
        assert len(decided) == len(applications)
        w.state.db.dispose()
        restore_backup(target_url, backup.path, definitions=DEFINITIONS)
        restored = table_rows(target_url)

    assert {name: len(rows) for name, rows in restored.items()} == {n: c for n, c in backup.manifest.counts.tables.items() if n in restored}
    status = {row["id"]: row["status"] for row in restored["wf_applications"].values()}
    assert set(status) == set(applications)
    approved = {app for app, state in status.items() if state == "approved"}
    assert 3 <= len(approved) < len(applications)  # the decisions went on after the snapshot
    assert set(status.values()) == {"approved", "pending"}
    actions = {(row["application_id"], row["action"]) for row in restored["wf_actions"].values()}
    tasks = {row["application_id"]: row["status"] for row in restored["wf_tasks"].values()}
    records = {row["id"]: row["data"] for row in restored["records"].values()}
    for application in restored["wf_applications"].values():
        app, decided_here = application["id"], application["id"] in approved
        assert ((app, "approve") in actions) == decided_here
        assert tasks[app] == ("approved" if decided_here else "open")
        assert (records[application["record_id"]]["status"] == "退学") == decided_here


def test_restore_refuses_while_the_server_in_the_pid_file_runs__a_stale_pid_file_is_ignored(
        good_archive: tuple[str, Path], tmp_path: Path) -> None:
    backend, good = good_archive
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "dangan", "serve"])
    pid_file = tmp_path / "dangan.pid"
    pid_file.write_text(str(stand_in.pid))
    try:
        with two_databases(backend, tmp_path) as (_source, target_url):
            with pytest.raises(BackupError, match=f"服务正在运行（进程 {stand_in.pid}）：请先停止服务"):
                restore_backup(target_url, good, definitions=tmp_path / "none", server_pid_file=pid_file)
            stand_in.kill()
            stand_in.wait()
            restore_backup(target_url, good, definitions=tmp_path / "none", server_pid_file=pid_file)
            assert table_rows(target_url)["records"]
    finally:
        stand_in.kill()
        stand_in.wait()
