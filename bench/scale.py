"""Scale benchmark (issue 17): lists, search, sort, count and export over a district's students, on SQLite and PostgreSQL.

What it does, for each database asked for:
  1. a database of N students (`--students`, default 100,000) in an org tree of 2 districts × `--schools` schools
     (default 100) × 6 grades × 18 classes (23,002 units at the default), built through the engine's own write path:
     the definitions in definitions/ with that tree as org.yaml's `demo_units`, seeded by web.app.prepare as
     `dangan serve` seeds it, then the students through RecordService.write_batch (what an Excel import calls:
     validated, numbered, projected, audited), 1,000 per transaction. The database is cached between runs
     (SQLite: a file under var/bench-scale/; PostgreSQL: a schema `bench_scale_<N>_<schools>` in $DANGAN_TEST_PG_URL)
     and reused when it is complete; `--rebuild` makes it again.
  2. start-up: web.app.prepare on the built database (definitions parsed, schema and projections checked, org
     tree not re-seeded), and the org tree as a request would get it (AppState.units) cold and warm;
  3. one client, in-process (RecordService, as the list page and the export call it), per target `--warmup` calls
     (default 3) then `--requests` timed calls (default 30), as the bureau (one district), the registrar (one school)
     and the head teacher (one class):
       list page 1, no filter / 1 filter / 2 filters / 3 filters; sorted by each list column both ways; a deep page
       (page 1000 for the bureau, 50 for the registrar); search a name (a common 汉字, a surname + given name prefix,
       a full name), exact 学号 / 学籍号 / 身份证号 (as typed in the search box); the count shown above the list;
       the export rows of a filtered list (up to 50,000 rows, streamed as the export writes them, not into .xlsx).
     A baseline in the same run: reading one record by id (RecordService.get), so that the ratios travel between
     machines of different speed.
  Prints p50/p95 per target, the goal (p95 ≤ 100 ms for a page; export of 50,000 rows ≤ 5 s) and MET / MISSED.

    .venv/bin/python bench/scale.py --students 100000              # both databases
    .venv/bin/python bench/scale.py --db sqlite --students 20000 --schools 10 --requests 10
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFINITIONS = ROOT / "definitions"
CACHE = ROOT / "var" / "bench-scale"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "Load#test2026"
GRADES = [("高一", 2025), ("高二", 2024), ("高三", 2023), ("初一", 2025), ("初二", 2024), ("初三", 2023)]
CLASSES_PER_GRADE = 18
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彩春菊兰凤洁梅琳素云莲真环雪荣爱妹霞香月莺媛艳瑞凡佳嘉琼勤珍贞莉桂娣叶璧璐娅琦晶妍茜秋珊莎锦黛青倩婷姣婉娴瑾颖露瑶怡婵雁蓓纨仪荷丹蓉眉君琴蕊薇菁梦岚苑婕馨瑗琰韵融园艺咏卿聪澜纯毓悦昭冰爽琬茗羽希宁欣飘育滢馥筠柔竹霭凝晓欢霄枫芸菲寒伊亚宜可姬舒影荔枝思丽"
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
PAGE_GOAL_MS = 100.0
EXPORT_GOAL_S = 5.0
EXPORT_ROWS = 50_000


def id_number(serial: int) -> tuple[str, str]:
    """(a valid, unique 18-digit ID number, its birth date): 12 months × 28 days × 1,000 sequence numbers per birth
    year."""
    day, month, rest = 1 + serial % 28, 1 + serial // 28 % 12, serial // 336 % 1000
    year = 2010 - serial // 336_000
    first17 = f"330106{year}{month:02d}{day:02d}{rest:03d}"
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, WEIGHTS)) % 11], f"{year}-{month:02d}-{day:02d}"


def org_tree(schools: int) -> list[dict[str, Any]]:
    districts = []
    for d, district in enumerate(("东城区教育局", "西城区教育局")):
        districts.append({"name": district, "level": "district", "children": [
            {"name": f"{district[:2]}第{s + 1}中学", "level": "school", "children": [
                {"name": grade, "level": "grade", "children": [
                    {"name": f"{grade}({c + 1})班", "level": "class"} for c in range(CLASSES_PER_GRADE)]}
                for grade, _year in GRADES]}
            for s in range(schools)]})
    return districts


def definitions_dir(schools: int) -> Path:
    """definitions/ with org.yaml's demo_units replaced by the bench's tree (written once per tree size)."""
    import yaml  # noqa: PLC0415

    target = CACHE / f"definitions-{schools}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(DEFINITIONS, target)
    org = yaml.safe_load((DEFINITIONS / "org.yaml").read_text(encoding="utf-8"))
    org["demo_units"] = org_tree(schools)
    (target / "org.yaml").write_text(yaml.safe_dump(org, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (target / ".complete").write_text("")
    return target


# --- 1. the database ----------------------------------------------------------------------------------------
@dataclass
class Built:
    url: str
    definitions: Path
    seconds: float  # building it (0 when it came from the cache)
    per_100k: list[float]


def database_url(db: str, students: int, schools: int) -> str:
    if db == "sqlite":
        return f"sqlite:///{CACHE / f'sqlite-{students}-{schools}.db'}"
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    admin = os.environ.get("DANGAN_TEST_PG_URL") or DEFAULT_PG
    schema = f"bench_scale_{students}_{schools}"
    return make_url(admin).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def _complete(url: str, students: int) -> bool:
    import sqlalchemy as sa  # noqa: PLC0415

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT count(*) FROM bench_scale_done WHERE students = :n"), {"n": students}).scalar_one() > 0
    except Exception:  # noqa: BLE001 — no such table: not built (or half built)
        return False
    finally:
        engine.dispose()


def _fresh(db: str, url: str) -> None:
    import sqlalchemy as sa  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    if db == "sqlite":
        path = Path(make_url(url).database)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    schema = make_url(url).query["options"].split("=", 1)[1]
    engine = sa.create_engine(os.environ.get("DANGAN_TEST_PG_URL") or DEFAULT_PG, poolclass=sa.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()


def build(db: str, students: int, schools: int, rebuild: bool) -> Built:
    CACHE.mkdir(parents=True, exist_ok=True)
    definitions = definitions_dir(schools)
    url = database_url(db, students, schools)
    if not rebuild and _complete(url, students):
        return Built(url, definitions, 0.0, [])
    _fresh(db, url)
    import sqlalchemy as sa  # noqa: PLC0415
    from sqlalchemy import select  # noqa: PLC0415

    from engine.accounts import create_user  # noqa: PLC0415
    from engine.records.model import RecordWrite  # noqa: PLC0415
    from engine.storage.models import OrgUnit  # noqa: PLC0415
    from engine.validation import clean_record  # noqa: PLC0415
    from web.app import prepare  # noqa: PLC0415
    from web.settings import Settings  # noqa: PLC0415

    started = time.perf_counter()
    state, _ = prepare(replace(Settings(), database_url=url, definitions=definitions, var_dir=CACHE / f"var-{db}"))
    print(f"  [{db}] org tree seeded: {time.perf_counter() - started:.1f} s", flush=True)
    with state.db.write() as s:
        units = s.execute(select(OrgUnit.id, OrgUnit.level, OrgUnit.name, OrgUnit.path).order_by(OrgUnit.id)).all()
        district = next(u for u in units if u.level == "district")
        school = next(u for u in units if u.level == "school" and u.path.startswith(district.path))
        klass = next(u for u in units if u.level == "class" and u.path.startswith(school.path))
        create_user(s, "b_bureau", PASSWORD, ["bureau"], [district.id], must_change=False)
        create_user(s, "b_registrar", PASSWORD, ["registrar"], [school.id], must_change=False)
        create_user(s, "b_head", PASSWORD, ["head_teacher"], [klass.id], must_change=False)
        s.commit()
    names = {u.id: u.name for u in units}
    grade_of = {u.id: names[int(u.path.strip("/").split("/")[2])] for u in units if u.level == "class"}
    classes = sorted(grade_of)
    form = state.definitions.forms["student"]
    admin = principal_of(state, "admin")
    rng = random.Random(17)
    years = dict(GRADES)
    per_100k: list[float] = []
    lap = time.perf_counter()
    batch = 1000
    for first in range(0, students, batch):
        writes = []
        for serial in range(first, min(students, first + batch)):
            unit = classes[rng.randrange(len(classes))]
            id_card, born = id_number(serial)
            grade = grade_of[unit][:2]
            values = {
                "name": rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2)))),
                "gender": "男" if int(id_card[16]) % 2 else "女", "birth_date": born, "ethnicity": "01", "id_card": id_card,
                "enrol_year": years[grade], "grade": grade, "guardian_name": "家长", "guardian_phone": "13812345678",
                "status": rng.choice(("在读",) * 18 + ("休学", "转出")),
                "admission_type": rng.choice(("就近入学", "统一招生", "指标到校")) if rng.random() < 0.5 else None,
            }
            raw = {key: spec.default for key, spec in form.fields.items()}
            raw.update({k: v for k, v in values.items() if v is not None})
            cleaned = clean_record(form, raw)
            if not cleaned.ok:
                raise SystemExit(f"bench student refused: {cleaned.issues}")
            writes.append(RecordWrite(form, cleaned, unit_id=unit, submitted={k: v for k, v in values.items() if v is not None and k != "status"}))
            # 学籍状态 is read-only on forms (workflows change it); the bench sets it as their effects would.
        with state.db.write() as s:
            written = state.records.write_batch(s, admin, form, writes)
            refused = [w.issues for w in writes if w.failed]
            if refused:
                raise SystemExit(f"bench students refused: {refused[:3]}")
            s.commit()
        assert len(written) == len(writes)
        done = first + len(writes)
        if done % 100_000 == 0:
            per_100k.append(time.perf_counter() - lap)
            lap = time.perf_counter()
        if done % 10_000 == 0 or done == students:
            print(f"\r  [{db}] {done:,}/{students:,} students written ({time.perf_counter() - started:.0f} s)", end="", flush=True)
    print()
    from engine.storage.db import gather_statistics  # noqa: PLC0415

    gather_statistics(state.db)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE bench_scale_done (students INTEGER)"))
        connection.execute(sa.text("INSERT INTO bench_scale_done VALUES (:n)"), {"n": students})
    engine.dispose()
    state.db.dispose()
    return Built(url, definitions, time.perf_counter() - started, per_100k)


def principal_of(state: Any, username: str) -> Any:
    from sqlalchemy import select  # noqa: PLC0415

    from engine.org import build_principal  # noqa: PLC0415
    from engine.storage.models import User  # noqa: PLC0415

    with state.db.read() as s:
        return build_principal(s, s.scalar(select(User).where(User.username == username)), state.definitions)


# --- 2./3. timing -------------------------------------------------------------------------------------------
@dataclass
class Timing:
    label: str
    p50: float
    p95: float
    goal: float
    note: str = ""

    @property
    def verdict(self) -> str:
        return "MET" if self.p95 <= self.goal else "MISSED"


def timed(call: Callable[[], Any], warmup: int, requests: int) -> tuple[list[float], Any]:
    result = None
    for _ in range(warmup):
        result = call()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, result


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def measure(db: str, built: Built, args: argparse.Namespace) -> list[Timing]:
    from engine.records import ListQuery  # noqa: PLC0415
    from web.app import prepare  # noqa: PLC0415
    from web.settings import Settings  # noqa: PLC0415

    timings: list[Timing] = []
    settle_started = time.perf_counter()  # the first start after a build or a code change may recompute rows
    settled, _ = prepare(replace(Settings(), database_url=built.url, definitions=built.definitions, var_dir=CACHE / f"var-{db}"))
    settled.db.dispose()
    print(f"  [{db}] first start: {time.perf_counter() - settle_started:.1f} s", flush=True)
    started = time.perf_counter()
    state, _ = prepare(replace(Settings(), database_url=built.url, definitions=built.definitions, var_dir=CACHE / f"var-{db}"))
    startup = (time.perf_counter() - started) * 1000
    timings.append(Timing("start-up (web.app.prepare on the built database)", startup, startup, 3000.0))
    cold_started = time.perf_counter()
    units = state.units()
    cold = (time.perf_counter() - cold_started) * 1000
    timings.append(Timing(f"org tree, first request ({len(units):,} units)", cold, cold, 3000.0))
    samples, _ = timed(state.units, 1, args.requests)
    timings.append(Timing("org tree, later requests", statistics.median(samples), p95(samples), PAGE_GOAL_MS))
    form = state.definitions.forms["student"]
    records = state.records
    people = {role: principal_of(state, f"b_{role}") for role in ("bureau", "registrar", "head")}
    sample_id = _one_id(state, people["head"], form)
    base, _ = timed(lambda: records.get(form, sample_id, people["head"]), args.warmup, args.requests)
    timings.append(Timing("baseline: one record by id (RecordService.get)", statistics.median(base), p95(base), PAGE_GOAL_MS))
    names, numbers = _probes(state, people["head"], form)
    for role, principal in people.items():
        deep = {"bureau": 1000, "registrar": 50, "head": 2}[role]
        cases: list[tuple[str, ListQuery]] = [
            ("list page 1, no filter", ListQuery()),
            ("list, 1 filter (年级)", ListQuery(filters={"grade": "高一"})),
            ("list, 2 filters (年级 + 性别)", ListQuery(filters={"grade": "高一", "gender": "女"})),
            ("list, 3 filters (年级 + 性别 + 学籍状态)", ListQuery(filters={"grade": "高一", "gender": "女", "status": "在读"})),
            ("list, rare filter (学籍状态 = 转出)", ListQuery(filters={"status": "转出"})),
            (f"list page {deep}, no filter", ListQuery(page=deep)),
            (f"list page {deep}, 1 filter (性别)", ListQuery(page=deep, filters={"gender": "女"})),
        ]
        for key in form.list.columns:
            for way in ("", "-"):
                cases.append((f"sort {'↓' if way else '↑'} {form.fields[key].label}", ListQuery(sort=way + key)))
        cases += [
            ("search name: one common 汉字", ListQuery(search=names["common"])),
            ("search name: prefix (surname + 1)", ListQuery(search=names["prefix"])),
            ("search name: full name", ListQuery(search=names["full"])),
            ("search exact 学号", ListQuery(search=numbers["school_no"])),
            ("search exact 学籍号", ListQuery(search=numbers["student_no"])),
            ("search exact 身份证号", ListQuery(search=numbers["id_card"])),
        ]
        for label, query in cases:
            query = replace(query, count_limit=args.count_limit)
            samples, page = timed(lambda q=query: records.list(form, principal, q), args.warmup, args.requests)
            shown = f"{'约 ' if page.capped else ''}{page.total:,}"
            timings.append(Timing(f"{role}: {label}", statistics.median(samples), p95(samples), PAGE_GOAL_MS,
                                  f"{shown} 条, {len(page.records)} on page"))
        export_query = ListQuery(filters={"gender": "女"}) if role == "bureau" else ListQuery()
        rows = 0

        def export() -> None:
            nonlocal rows
            rows = _export(state, form, principal, export_query)

        samples, _ = timed(export, 0, max(1, args.requests // 10))
        goal = max(PAGE_GOAL_MS, EXPORT_GOAL_S * 1000 * rows / EXPORT_ROWS)
        timings.append(Timing(f"{role}: export rows of a list", statistics.median(samples), p95(samples), goal,
                              f"{rows:,} rows; goal scaled from 5 s per 50,000"))
    state.db.dispose()
    return timings


def _export(state: Any, form: Any, principal: Any, query: Any) -> int:
    """What GET /f/student/excel/export does (web/excel.py), without HTTP: the list's ids, the records streamed,
    the cells as the user sees them, the .xlsx built (its unit list sheet left empty); returns the rows exported."""
    from engine.excel.layout import export_columns  # noqa: PLC0415
    from engine.excel.workbooks import build_workbook  # noqa: PLC0415
    from engine.permissions import policy  # noqa: PLC0415
    from web.excel import export_value  # noqa: PLC0415

    found = policy(principal, form)
    ids = state.records.matching_ids(form, principal, query, EXPORT_ROWS)[:EXPORT_ROWS]
    columns = export_columns(form, found, unit_required=True)
    names = {u.id: u.full_name for u in state.units()}
    rows = ([names.get(r.unit_id, r.unit_name)] + [export_value(c.spec, found, r.values.get(c.key)) for c in columns[1:]]
            for r in state.records.stream(form, ids))
    build_workbook(form, columns, [], rows)
    return len(ids)


def _one_id(state: Any, principal: Any, form: Any) -> int:
    from engine.records import ListQuery  # noqa: PLC0415

    return state.records.list(form, principal, ListQuery(per_page=1)).records[0].id


def _probes(state: Any, principal: Any, form: Any) -> tuple[dict[str, str], dict[str, str]]:
    """What to search for: a student of the head teacher's class (so every role's search has one answer to find or
    to miss), a common 汉字, a name prefix."""
    from engine.records import ListQuery  # noqa: PLC0415

    record = state.records.list(form, principal, ListQuery(per_page=1)).records[0]
    values = record.values
    name = values["name"]
    return ({"common": "伟", "prefix": name[:2], "full": name},
            {"school_no": str(values["school_no"]), "student_no": str(values["student_no"]), "id_card": str(values["id_card"])})


def report(db: str, built: Built, timings: list[Timing]) -> None:
    baseline = next(t for t in timings if t.label.startswith("baseline"))
    print(f"\n### {db}" + (f" (built in {built.seconds:.0f} s; per 100,000: {', '.join(f'{s:.0f} s' for s in built.per_100k)})"
                          if built.seconds else " (cached database)"))
    print(f"| target | p50 ms | p95 ms | p95 / baseline p95 | goal ms | | |")
    print("|---|---:|---:|---:|---:|---|---|")
    for t in timings:
        print(f"| {t.label} | {t.p50:.1f} | {t.p95:.1f} | {t.p95 / max(baseline.p95, 0.001):.0f} | {t.goal:.0f} | {t.verdict} | {t.note} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both (comma-separated)")
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--schools", type=int, default=100, help="schools per district (6 grades × 18 classes each)")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--count-limit", type=int, default=10_000, help="the list page's exact-count limit")
    parser.add_argument("--rebuild", action="store_true", help="build the database again even if cached")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    print(f"bench/scale.py: {args.students:,} students, {2 + 2 * args.schools * (1 + 6 + 6 * CLASSES_PER_GRADE):,} units; "
          f"{platform.python_version()}, {os.cpu_count()} cores")
    for db in [d.strip() for d in args.db.split(",") if d.strip()]:
        built = build(db, args.students, args.schools, args.rebuild)
        if args.build_only:
            print(f"[{db}] built in {built.seconds:.0f} s; per 100,000: {built.per_100k}")
            continue
        report(db, built, measure(db, built, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
