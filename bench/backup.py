"""Backup and restore benchmark: `dangan backup`/`restore` against the databases' own tools, SQLite and PostgreSQL.

Seeds N student records (default 20,000), an audit entry each, and a 20 KB attachment on every 10th (random bytes,
as scans do not compress), straight through SQL: the bench is about copying data, not saving it. Then, per
database, in the same run:
  baseline backup    SQLite: the online backup API into a file        PostgreSQL: pg_dump -Fc of the schema
  dangan backup      engine.backup.service.create_backup: snapshot and counts, the archive, read back and recounted
  baseline restore   SQLite: the backup API from that copy to a file   PostgreSQL: pg_restore --single-transaction into a
                                                                       new database
  dangan restore     restore_backup into an empty file / schema: the archive verified, restored, recounted
It prints wall times, the ratios dangan / baseline, and the archive's size next to the database's.

    .venv/bin/python bench/backup.py [--records N] [--skip-pg]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # run as `python bench/x.py`
import sqlalchemy as sa  # noqa: E402
from harness import drop_schema, pg_schema  # noqa: E402

from engine.backup import postgres  # noqa: E402
from engine.backup.service import create_backup, restore_backup  # noqa: E402
from engine.storage.models import Attachment, AuditEntry, Record, utcnow  # noqa: E402
from web.app import prepare  # noqa: E402
from web.settings import Settings  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFINITIONS = REPO / "definitions"
SURNAMES, GIVEN = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗", "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红"


def seed(url: str, records: int) -> None:
    state, _admin = prepare(replace(Settings(), database_url=url, definitions=DEFINITIONS, var_dir=Path(tempfile.gettempdir())))
    with state.db.read() as s:
        unit = s.scalar(sa.select(sa.func.min(sa.text("id"))).select_from(sa.table("org_units")))
    rng, now = random.Random(1), utcnow()
    for start in range(0, records, 1000):
        batch = range(start, min(records, start + 1000))
        with state.db.write() as s:
            rows = [{"id": n + 1, "form_key": "student", "unit_id": unit, "def_version": "bench", "revision": 1,
                     "created_at": now, "updated_at": now, "data": {
                         "name": rng.choice(SURNAMES) + rng.choice(GIVEN), "gender": "男", "birth_date": "2008-05-12",
                         "ethnicity": "01", "id_card": f"1101052008051{n:05d}", "enrol_year": "2023", "grade": "高一",
                         "address": "示范区某某路" + str(n), "guardian_name": "家长", "guardian_phone": "13812345678",
                         "status": "在读", "student_no": f"S{n:07d}"}} for n in batch]
            s.execute(sa.insert(Record), rows)
            s.execute(sa.insert(AuditEntry), [{"form_key": "student", "record_id": r["id"], "action": "create",
                                               "at": now, "revision": 1, "changes": {"name": [None, r["data"]["name"]]},
                                               "note": "", "username": "bench"} for r in rows])
            s.execute(sa.insert(Attachment), [{"id": uuid.uuid4().hex, "form_key": "student", "record_id": r["id"],
                                               "field_key": "photo", "filename": "scan.pdf", "content_type": "application/pdf",
                                               "size": 20_000, "sha256": "0" * 64, "content": os.urandom(20_000),
                                               "created_at": now} for r in rows if r["id"] % 10 == 0])
            s.commit()
    state.db.dispose()


def timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def report(kind: str, size: int, archive: Path, times: dict[str, float]) -> None:
    print(f"\n{kind}: database {size / 1e6:.1f} MB, archive {archive.stat().st_size / 1e6:.1f} MB")
    for step in ("backup", "restore"):
        base, ours = times[f"baseline {step}"], times[f"dangan {step}"]
        print(f"  {step:8} baseline {base:6.2f} s   dangan {ours:6.2f} s   ratio {ours / base:5.2f}")


def run_sqlite(work: Path, records: int) -> None:
    source = work / "source.db"
    seed(f"sqlite:///{source}", records)
    times = {}

    def copy(from_: Path, to: Path) -> None:
        with sqlite3.connect(from_) as a, sqlite3.connect(to) as b:
            a.backup(b)

    times["baseline backup"] = timed(lambda: copy(source, work / "copy.db"))
    archive = work / "sqlite.tar"
    times["dangan backup"] = timed(lambda: create_backup(f"sqlite:///{source}", archive, DEFINITIONS))
    times["baseline restore"] = timed(lambda: copy(work / "copy.db", work / "copy-restored.db"))
    times["dangan restore"] = timed(lambda: restore_backup(f"sqlite:///{work / 'restored.db'}", archive,
                                                           definitions=DEFINITIONS))
    report("SQLite", source.stat().st_size, archive, times)


def run_postgres(work: Path, records: int, admin: str) -> None:
    source, source_schema = pg_schema(admin, "bench_backup")
    target, target_schema = pg_schema(admin, "bench_restore")
    scratch = f"bench_restore_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    try:
        seed(source, records)
        reach = postgres.libpq(source)
        programs = postgres.tools(None)
        dump = work / "baseline.pgdump"
        times = {"baseline backup": timed(lambda: subprocess.run(
            [programs.pg_dump, "-Fc", f"--schema={source_schema}", "--no-owner", f"--file={dump}",
             f"--dbname={reach.conninfo}"], env=reach.env, check=True))}
        archive = work / "pg.tar"
        times["dangan backup"] = timed(lambda: create_backup(source, archive, DEFINITIONS))
        with engine.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{scratch}"'))
        scratch_reach = postgres.libpq(str(sa.engine.make_url(admin).set(database=scratch, query={})))
        times["baseline restore"] = timed(lambda: subprocess.run(
            [programs.pg_restore, "--single-transaction", "--no-owner", f"--dbname={scratch_reach.conninfo}", str(dump)],
            env=scratch_reach.env, check=True))
        times["dangan restore"] = timed(lambda: restore_backup(target, archive, definitions=DEFINITIONS))
        with engine.connect() as connection:
            size = connection.execute(sa.text(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relkind = 'r'"), {"s": source_schema}).scalar_one()
        report("PostgreSQL", int(size), archive, times)
    finally:
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{scratch}"'))
        engine.dispose()
        drop_schema(admin, source_schema)
        drop_schema(admin, target_schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    print(f"{args.records} records, {args.records // 10} attachments of 20 KB; {dt.datetime.now():%Y-%m-%d %H:%M}")
    work = Path(tempfile.mkdtemp(prefix="dangan-bench-backup-"))
    try:
        run_sqlite(work, args.records)
        if not args.skip_pg:
            run_postgres(work, args.records, os.environ.get("DANGAN_TEST_PG_URL") or DEFAULT_PG)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
