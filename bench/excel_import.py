"""Excel import benchmark: parse floor vs. the full import on SQLite and PostgreSQL (a script, not a test).

What it does, in one run:
  1. generates a realistic student workbook of N rows (default 100,000) in the layout staff send in: a title
     row above the header, 25 columns (the template's 20 plus 5 columns the form does not know), messy but
     valid values (full-width digits, NBSP, lower-case x, dates as date cells / serials / "2008年5月12日" /
     "20080512" / "2008/5/12", Y/N/1/0/是/否, codes or names for 民族, unit as full path or class name) and
     ~2% invalid rows (ID numbers stored as numbers, wrong check digit, impossible date, unknown 民族,
     missing 姓名, birth date not matching the ID, bad phone, duplicated ID number pairs);
  2. measures the raw parse floor: every row of the sheet read with python-calamine (in-process), and the
     same with openpyxl read_only (the comparison the reader choice rests on; --skip-openpyxl to skip);
  3. runs the real import — `engine.excel.jobs`: preview (dry run), then 确认导入 with "skip invalid rows"
     (parse → normalise → validate with clean_record → write records, generated numbers and audit in 500-row
     transactions) — on a fresh SQLite file and on a fresh PostgreSQL schema;
  4. times template generation for the student form, and the error workbook.
Each measurement runs in its own child process, so each peak RSS (VmHWM) is its own. The import's xlsx reader
is a further child (python-calamine in a memory-capped process) that spools the rows to a file and exits before
the rows are validated and written; its peak is shown apart.

    .venv/bin/python bench/excel_import.py                 # N = 100,000
    .venv/bin/python bench/excel_import.py --rows 20000 --skip-openpyxl
    .venv/bin/python bench/excel_import.py --profile       # + cProfile of the SQLite import's hot spots
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # run as `python bench/x.py`
from harness import drop_schema, pg_schema  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHOOL = "示范区教育局/示范区第一中学"
CLASSES = ["示范区教育局/示范区第一中学/高一/高一(1)班", "高一(2)班", "示范区第一中学/高二/高二(1)班"]
REGIONS = ["110105", "310104", "330106", "440305", "510107", "320102"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红"
EXTRA = ["序号", "班主任", "填表人", "联系人2", "填表日期"]
HEADER = ["所属班级", "姓名", "性别", "出生日期", "民族", "身份证号", "籍贯", "政治面貌", "入学年份", "年级", "专业",
          "录取类型", "家庭住址", "家长姓名", "家长联系电话", "学生本人联系电话", "健康状况", "残疾类别及说明",
          "是否独生子女", "备注"] + EXTRA
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
FULLWIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
HALFWIDTH = str.maketrans("０１２３４５６７８９Ｘ", "0123456789X")


def id_number(region: str, born: dt.date, seq: int) -> str:
    first = f"{region}{born:%Y%m%d}{seq:03d}"
    return first + "10X98765432"[sum(int(c) * w for c, w in zip(first, WEIGHTS)) % 11]


def student_row(i: int, rng: random.Random) -> list[Any]:
    born = dt.date(2006, 9, 1) + dt.timedelta(days=(i // 900) % 1400)
    seq = i % 900 + 100  # with the date, unique for every i < 1.26 million
    male = seq % 2 == 1
    number = id_number(REGIONS[i % len(REGIONS)], born, seq)
    name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
    date_forms = (born, f"{born.year}-{born.month}-{born.day}", f"{born.year}年{born.month}月{born.day}日",
                  f"{born:%Y%m%d}", f"{born.year}/{born.month:02d}/{born.day:02d}", float((born - dt.date(1899, 12, 30)).days))
    shown_id = number.lower() if number.endswith("X") and i % 3 == 0 else number
    if i % 37 == 0:
        shown_id = number.translate(FULLWIDTH)
    if i % 29 == 0:
        name = f"\u00a0{name} "
    sick = i % 97 == 0
    return [
        CLASSES[i % 3], name, "男" if male else "女", date_forms[i % len(date_forms)], "01" if i % 5 == 0 else rng.choice(["汉族", "汉族", "回族", "满族"]),
        shown_id, rng.choice(["浙江杭州", "江苏南京", "", "四川成都"]), rng.choice(["共青团员", "群众", ""]),
        2023 if i % 4 else "２０２３", "高一" if i % 3 != 2 else "高二", "", rng.choice(["", "统一招生", "就近入学"]),
        f"某市某区某街道{i % 500}号", name.strip()[0] + "父", rng.choice(["13812345678", "138 1234 5678", "+86 139-0000-1111"]),
        "" if i % 2 else "15900001111", "残疾" if sick else rng.choice(["健康或良好", ""]), "视力残疾二级" if sick else "",
        ["是", "否", "Y", "N", "1", "0", "TRUE"][i % 7], "" if i % 6 else "备注文字",
        i + 1, "李老师", "王主任", "", dt.date(2024, 9, 1),
    ]


def break_row(row: list[Any], i: int, kind: int, number_of: dict[str, Any]) -> None:
    """About 2% of rows get one problem each, of the kinds staff's files really have."""
    if kind == 0:
        row[5] = float(str(row[5]).translate(HALFWIDTH).upper().replace("X", "0"))
    elif kind == 1:
        text = str(row[5]).translate(HALFWIDTH).upper()
        row[5] = text[:-1] + ("1" if text[-1] != "1" else "2")
    elif kind == 2:
        row[3] = "2008-13-45"
    elif kind == 3:
        row[4] = "火星族"
    elif kind == 4:
        row[1] = ""
    elif kind == 5:
        row[3] = "2001-01-01"
    elif kind == 6:
        row[14] = "12345"
    elif kind == 7:
        row[5] = number_of["previous"]  # the row above's ID number again: both rows are reported


def generate(path: Path, rows: int, seed: int = 20240901) -> None:
    from openpyxl import Workbook

    rng = random.Random(seed)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("学生档案")
    sheet.append(["示范区第一中学 2024 级学生信息表"])
    sheet.append(HEADER)
    previous: dict[str, Any] = {"previous": ""}
    for i in range(rows):
        row = student_row(i, rng)
        if i % 50 == 49:
            break_row(row, i, (i // 50) % 8, previous)
        previous["previous"] = row[5]
        sheet.append(row)
    workbook.save(path)


# --- stages (each in its own process) ------------------------------------------------------------------
def peak_mb() -> float:
    """VmHWM, this process's own peak RSS (ru_maxrss can include what the parent had before exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_calamine(path: str) -> dict[str, Any]:
    from python_calamine import CalamineWorkbook

    start = time.perf_counter()
    sheet = CalamineWorkbook.from_path(path).get_sheet_by_name("学生档案")
    rows = sum(1 for _ in sheet.iter_rows())
    return {"seconds": time.perf_counter() - start, "rows": rows, "peak_mb": peak_mb()}


def stage_openpyxl(path: str) -> dict[str, Any]:
    from openpyxl import load_workbook

    start = time.perf_counter()
    workbook = load_workbook(path, read_only=True, data_only=True)
    rows = sum(1 for _ in workbook["学生档案"].iter_rows(values_only=True))
    workbook.close()
    return {"seconds": time.perf_counter() - start, "rows": rows, "peak_mb": peak_mb()}


def stage_reader(path: str) -> dict[str, Any]:
    """Our reader alone: safety checks, then rows through the capped calamine child process."""
    from engine.excel.limits import Limits
    from engine.excel.reader import open_table
    from engine.excel.safety import inspect_upload

    start = time.perf_counter()
    limits = Limits(max_file_bytes=10**10)
    inspection = inspect_upload(Path(path), "bench.xlsx", limits)
    checked = time.perf_counter() - start
    with open_table(Path(path), inspection, "学生档案", limits) as table:
        rows = sum(1 for _ in table.rows)
    return {"seconds": time.perf_counter() - start, "checks_seconds": checked, "rows": rows, "peak_mb": peak_mb(),
            "reader_peak_mb": table.stats["reader_peak_kb"] / 1024}


def stage_template() -> dict[str, Any]:
    from engine.excel.layout import template_columns
    from engine.excel.workbooks import build_workbook
    from engine.loader import load_definitions
    from engine.permissions import policy
    from engine.org import Unit

    definitions = load_definitions(REPO / "definitions")
    form = definitions.forms["student"]
    registrar = definitions.roles["registrar"]
    from engine.permissions import Principal

    principal = Principal(1, "bench", "bench", (registrar,))
    units = [Unit(i, f"{i}班", "class", f"/1/{i}/", 1, f"示范区教育局/示范区第一中学/高一/高一({i})班") for i in range(1, 40)]
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        data = build_workbook(form, template_columns(form, policy(principal, form), True), [u.full_name for u in units])
        timings.append(time.perf_counter() - start)
    return {"seconds": min(timings), "bytes": len(data), "peak_mb": peak_mb()}


def stage_import(path: str, url: str, work: str, profile: bool) -> dict[str, Any]:
    from dataclasses import replace as dc_replace

    from sqlalchemy import func, select

    from engine.accounts import create_user
    from engine.excel.jobs import create_job, error_workbook, queue_commit, run_job
    from engine.excel.limits import Limits
    from engine.org import build_principal, unit_by_path
    from engine.storage.db import sqlite_file
    from engine.storage.models import AuditEntry, Record, User
    from web.app import prepare
    from web.settings import Settings

    settings = dc_replace(Settings(), database_url=url, definitions=REPO / "definitions", var_dir=Path(work))
    state, _admin = prepare(settings)
    with state.db.write() as s:
        unit = unit_by_path(s, SCHOOL)
        create_user(s, "bench", "Kq7#vLm2-Shuxue", ["registrar"], [unit.id], display_name="bench", must_change=False)  # type: ignore[union-attr]
        s.commit()
    with state.db.read() as s:
        principal = build_principal(s, s.scalar(select(User).where(User.username == "bench")), state.definitions)
    form = state.definitions.forms["student"]
    limits = Limits(max_file_bytes=10**10)
    snapshot = _snapshot_sqlite(url, Path(work) / "prepared.db")  # for the bare-write lower bound
    data = Path(path).read_bytes()
    job_id = create_job(state.db, form, principal, "bench.xlsx", data, "xlsx", "upsert", "skip_invalid")
    del data
    start = time.perf_counter()
    job = run_job(state.db, state.definitions, job_id, limits, state.records)
    preview = time.perf_counter() - start
    assert job is not None and job.status == "previewed", (job.status, job.message)
    preview_counts = {"new": job.count_new, "invalid": job.count_invalid}
    queue_commit(state.db, job_id, "skip_invalid")
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    job = run_job(state.db, state.definitions, job_id, limits, state.records)
    seconds = time.perf_counter() - start
    if profiler is not None:
        profiler.disable()
    assert job is not None and job.status == "done", (job.status, job.message)
    start = time.perf_counter()
    book = error_workbook(state.db, state.definitions, job_id, limits)
    errors_seconds = time.perf_counter() - start
    with state.db.read() as s:
        records = s.scalar(select(func.count()).select_from(Record))
        audits = s.scalar(select(func.count()).select_from(AuditEntry))
    result = {"seconds": seconds, "preview_seconds": preview, "errors_seconds": errors_seconds,
              "error_workbook_bytes": len(book or b""), "records": records, "audit_entries": audits,
              "counts": {"new": job.count_new, "updated": job.count_updated, "unchanged": job.count_unchanged,
                         "invalid": job.count_invalid}, "preview_counts": preview_counts,
              "peak_mb": peak_mb()}
    if profiler is not None:
        import io
        import pstats

        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        result["profile"] = out.getvalue()
    if snapshot is not None:
        result["sqlite_file"], result["prepared_file"], result["batch_size"] = sqlite_file(url), str(snapshot), limits.batch_size
    state.db.dispose()
    return result


def _snapshot_sqlite(url: str, target: Path) -> Path | None:
    """A copy of the database as the import found it (migrated, form indexes, units, the importing user), made
    with SQLite's backup API so the WAL's pages are in it."""
    import sqlite3

    from engine.storage.db import sqlite_file

    path = sqlite_file(url)
    if path is None:
        return None
    source, copy = sqlite3.connect(path), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return target


RECORD_COLUMNS = ("id", "form_key", "unit_id", "data", "def_version", "revision", "created_by", "updated_by", "created_at", "updated_at")
AUDIT_COLUMNS = ("form_key", "record_id", "action", "user_id", "username", "revision", "changes", "note", "at")  # id: AUTOINCREMENT, as the import


def stage_bare_write(imported: str, prepared: str, target: str, encode: str) -> dict[str, Any]:
    """The write alone, as a lower bound for the import: the records and audit entries the real import stored,
    read back as stored (JSON as text), inserted again with raw sqlite3 executemany into a copy of the database the
    import started from (same tables, indexes — the forms' JSON expression indexes too —, pragmas and background
    checkpointer as engine.storage.db sets up), one transaction per batch the import committed (its rows share
    `created_at`). Not timed: reading them back. Not done at all: validation, generated numbers' sequence rows,
    the job's progress and error rows. encode=1 also times json.dumps of every document and change set (as the
    import's bind processors do), from values decoded beforehand."""
    import sqlite3
    from itertools import groupby

    from engine.storage.db import Checkpointer, tune_sqlite_connection

    source = sqlite3.connect(imported)
    records = source.execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE form_key = 'student' ORDER BY id").fetchall()
    audits = source.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log WHERE form_key = 'student' AND action = 'create' "
                            "ORDER BY id").fetchall()
    source.close()
    assert len(records) == len(audits), (len(records), len(audits))
    batches: list[tuple[list[tuple], list[tuple]]] = []
    position = 0
    for at, group in groupby(records, key=lambda r: r[8]):
        members = list(group)
        batch_audits = audits[position:position + len(members)]
        assert all(a[1] == r[0] and a[-1] == at for a, r in zip(batch_audits, members))  # the same transaction's entries
        batches.append((members, batch_audits))
        position += len(members)
    if encode == "1":  # values as the import has them before its bind processors encode them
        batches = [([r[:3] + (json.loads(r[3]),) + r[4:] for r in rs], [a[:6] + (json.loads(a[6]),) + a[7:] for a in aus])
                   for rs, aus in batches]
    shutil.copy(prepared, target)
    connection = sqlite3.connect(target, timeout=30, check_same_thread=False)
    tune_sqlite_connection(connection)
    checkpointer = Checkpointer(target)
    insert_record = f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('?' * len(RECORD_COLUMNS))})"
    insert_audit = f"INSERT INTO audit_log ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})"
    dumps = json.dumps
    start = time.perf_counter()
    for rows, audit_rows in batches:
        if encode == "1":
            rows = [r[:3] + (dumps(r[3]),) + r[4:] for r in rows]
            audit_rows = [a[:6] + (dumps(a[6]),) + a[7:] for a in audit_rows]
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(insert_record, rows)
        connection.executemany(insert_audit, audit_rows)
        connection.execute("COMMIT")
    seconds = time.perf_counter() - start
    checkpointer.stop()
    stored = connection.execute("SELECT count(*) FROM records WHERE form_key = 'student'").fetchone()[0]
    assert stored == len(records), (stored, len(records))
    connection.close()
    return {"seconds": seconds, "records": len(records), "audit_entries": len(audits), "transactions": len(batches),
            "peak_mb": peak_mb()}


def run_stage(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--stage", *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"stage {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--skip-openpyxl", action="store_true")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--pg-url", default=os.environ.get("DANGAN_TEST_PG_URL", DEFAULT_PG))
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--keep", help="keep the generated workbook at this path")
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        name, *rest = args.stage
        stages = {"calamine": stage_calamine, "openpyxl": stage_openpyxl, "reader": stage_reader, "template": stage_template}
        if name == "import":
            result = stage_import(rest[0], rest[1], rest[2], rest[3] == "1")
        elif name == "bare_write":
            result = stage_bare_write(*rest)
        else:
            result = stages[name](*rest)
        print(json.dumps(result, ensure_ascii=False))
        return 0

    work = Path(tempfile.mkdtemp(prefix="dangan-bench-"))
    try:
        book = work / "students.xlsx"
        start = time.perf_counter()
        generate(book, args.rows)
        print(f"generated {args.rows} rows × {len(HEADER)} columns in {time.perf_counter() - start:.1f} s "
              f"({book.stat().st_size / 1e6:.1f} MB)", flush=True)
        if args.keep:
            shutil.copy(book, args.keep)
        results: dict[str, Any] = {"calamine": run_stage("calamine", str(book))}
        print(f"parse floor (python-calamine, in-process): {results['calamine']['seconds']:.2f} s", flush=True)
        if not args.skip_openpyxl:
            results["openpyxl"] = run_stage("openpyxl", str(book))
            print(f"openpyxl read_only: {results['openpyxl']['seconds']:.2f} s", flush=True)
        results["reader"] = run_stage("reader", str(book))
        results["template"] = run_stage("template")
        sqlite_dir = work / "sqlite"
        sqlite_dir.mkdir()
        results["sqlite"] = run_stage("import", str(book), f"sqlite:///{sqlite_dir / 'bench.db'}", str(sqlite_dir), "1" if args.profile else "0")
        print(f"SQLite import: {results['sqlite']['seconds']:.1f} s", flush=True)
        imported = results["sqlite"]
        for label, encode in (("bare_write", "0"), ("bare_write_json", "1")):
            results[label] = run_stage("bare_write", imported["sqlite_file"], imported["prepared_file"],
                                       str(sqlite_dir / f"{label}.db"), encode)
        print(f"SQLite bare write (the stored rows again, raw executemany): {results['bare_write']['seconds']:.2f} s", flush=True)
        if not args.skip_pg:
            url, schema = pg_schema(args.pg_url, "bench")
            try:
                pg_dir = work / "pg"
                pg_dir.mkdir()
                results["postgresql"] = run_stage("import", str(book), url, str(pg_dir), "0")
                print(f"PostgreSQL import: {results['postgresql']['seconds']:.1f} s", flush=True)
            finally:
                drop_schema(args.pg_url, schema)
        report(args.rows, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(rows: int, results: dict[str, Any]) -> None:
    floor = results["calamine"]["seconds"]
    print(f"\n=== Excel import, N = {rows} data rows, 25 columns, ~2% invalid ===")
    print(f"{'measurement':44} {'seconds':>8} {'rows/s':>9} {'× floor':>8} {'peak RSS MB':>12}")

    def line(label: str, seconds: float, peak: float, extra: str = "") -> None:
        print(f"{label:44} {seconds:8.2f} {rows / seconds:9.0f} {seconds / floor:8.2f} {peak:12.0f} {extra}")

    line("parse floor: python-calamine (in-process)", floor, results["calamine"]["peak_mb"])
    if "openpyxl" in results:
        line("openpyxl read_only (same file)", results["openpyxl"]["seconds"], results["openpyxl"]["peak_mb"])
    reader = results["reader"]
    line("our reader (checks + capped calamine child)", reader["seconds"], reader["peak_mb"], f"reader process {reader['reader_peak_mb']:.0f} MB")
    for db in ("sqlite", "postgresql"):
        if db not in results:
            continue
        r = results[db]
        line(f"{db}: full import (skip invalid rows)", r["seconds"], r["peak_mb"], f"+ reader process {reader['reader_peak_mb']:.0f} MB, exited before")
        line(f"{db}: preview (dry run)", r["preview_seconds"], r["peak_mb"])
        if db == "sqlite" and "bare_write" in results:
            bare, coded = results["bare_write"], results["bare_write_json"]
            line("sqlite: bare write, lower bound", bare["seconds"], bare["peak_mb"],
                 f"{bare['records']} records + {bare['audit_entries']} audit rows, {bare['transactions']} transactions")
            line("sqlite: bare write + json.dumps", coded["seconds"], coded["peak_mb"])
        print(f"    counts {r['counts']}; records {r['records']}, audit entries {r['audit_entries']}; "
              f"error workbook {r['errors_seconds']:.2f} s ({r['error_workbook_bytes'] / 1e3:.0f} KB)")
        if "profile" in r:
            print(r["profile"])
    print(f"template generation (student form): {results['template']['seconds'] * 1000:.0f} ms")
    print("\nJSON: " + json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "profile"} for k, v in results.items()}, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
