"""Reports benchmark (issue 18): every shipped student report, the completeness report and the home dashboard,
timed for a district's bureau and for one school, on SQLite and PostgreSQL, against the naive plan measured in the
same run.

Seeds one district of S schools × 6 grades × C classes and N students (default 200,000) straight through SQL: the
records' JSON documents and their projection rows (engine/storage/projection.py `Projection.row`, as the writer
makes them), 8 % of them 休学/转出/毕业 and 5 % incomplete. Then, per database:
  naive       GROUP BY json_extract(data, '$.grade'), …'$.gender' over the records of the scope (the org units'
              path LIKE 'prefix%'), with the status filter in JSON too: what reports over documents would run
  reports     ReportService.run for every shipped report of the student form (engine/reports/service.py)
  dashboard   the district dashboard (its number cards and its two charts)
and prints p50/p95 of R runs, the ratio naive / report (how many times faster than the naive plan), and the
report's p95 against the issue's goals (district: ≤ 1 s PostgreSQL, ≤ 2 s SQLite; one school ≤ 200 ms;
dashboard ≤ 300 ms).

    .venv/bin/python bench/reports.py [--students N] [--runs R] [--skip-pg] [--skip-sqlite]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # run as `python bench/x.py`
import sqlalchemy as sa  # noqa: E402
from harness import drop_schema, pg_schema  # noqa: E402

from engine.loader import load_definitions  # noqa: E402
from engine.permissions import Principal  # noqa: E402
from engine.records.service import RecordService  # noqa: E402
from engine.reports.service import ReportService  # noqa: E402
from engine.storage.db import Database  # noqa: E402
from engine.storage.models import OrgUnit, Record, utcnow  # noqa: E402
from engine.storage.projection import UnitPlace, prepare_projections, projection_of  # noqa: E402

PG_ADMIN = os.environ.get("DANGAN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GRADES = ["初一", "初二", "初三", "高一", "高二", "高三"]
ETHNICITIES = ["01"] * 18 + ["02", "03", "05"]
BATCH = 5_000
GOALS = {("sqlite", "district"): 2.0, ("postgresql", "district"): 1.0, ("sqlite", "school"): 0.2,
         ("postgresql", "school"): 0.2, ("sqlite", "dashboard"): 0.3, ("postgresql", "dashboard"): 0.3}


def seed(db: Database, definitions: Any, students: int, schools: int, classes: int) -> dict[str, Any]:
    """The org tree and the students; returns the district's and the first school's paths."""
    rng = random.Random(9)
    form = definitions.forms["student"]
    projection = projection_of(form, db.dialect)
    levels = ("district", "school", "grade", "class")
    with db.engine.begin() as c:
        def unit(name: str, level: str, parent: tuple[int, str] | None) -> tuple[int, str]:
            new_id = c.execute(sa.insert(OrgUnit).values(name=name, level=level, parent_id=parent[0] if parent else None,
                                                         path="").returning(OrgUnit.id)).scalar_one()
            path = f"{parent[1] if parent else '/'}{new_id}/"
            c.execute(sa.update(OrgUnit).where(OrgUnit.id == new_id).values(path=path))
            return new_id, path

        district = unit("基准区教育局", "district", None)
        places: list[tuple[UnitPlace, str]] = []
        first_school = ""
        for s in range(schools):
            school = unit(f"第{s + 1}中学", "school", district)
            first_school = first_school or school[1]
            for grade_name in GRADES:
                grade = unit(grade_name, "grade", school)
                for k in range(classes):
                    klass = unit(f"{grade_name}({k + 1})班", "class", grade)
                    ancestors = dict(zip(levels, (district[0], school[0], grade[0], klass[0])))
                    places.append((UnitPlace(klass[0], klass[1], ancestors), grade_name))
    now = utcnow()
    start = time.perf_counter()
    for low in range(0, students, BATCH):
        records, rows = [], []
        for i in range(low, min(low + BATCH, students)):
            place, grade = places[i % len(places)]
            born = dt.date(2006, 1, 1) + dt.timedelta(days=rng.randrange(0, 2200))
            status = "在读" if rng.random() > 0.08 else rng.choice(["休学", "转出", "毕业"])
            values = {
                "name": f"学生{i}", "gender": rng.choice(["男", "女"]), "birth_date": born,
                "ethnicity": rng.choice(ETHNICITIES), "id_card": f"{110105000000000000 + i}", "native_place": None,
                "political_status": None, "photo": None, "enrol_year": 2019 + GRADES.index(grade) % 3 + rng.randrange(0, 2),
                "grade": grade, "major": None, "student_no": f"G{110105000000000000 + i}", "school_no": f"S{i:09d}",
                "admission_type": None, "status": status, "address": None, "guardian_name": "家长",
                "guardian_phone": None if rng.random() < 0.05 else "13800000000", "student_phone": None,
                "health": rng.choice(["健康或良好", "一般或较弱", None]), "disability_note": None, "is_only_child": None,
                "family": None, "remarks": None,
            }
            document = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in values.items()}
            records.append({"id": i + 1, "form_key": "student", "unit_id": place.unit_id, "data": document,
                             "def_version": form.version, "revision": 1, "created_by": None, "created_at": now,
                             "updated_by": None, "updated_at": now})
            rows.append(projection.row(i + 1, place, None, values, incomplete=values["guardian_phone"] is None))
        with db.engine.begin() as c:
            c.execute(sa.insert(Record.__table__), records)
            c.execute(sa.insert(projection.table), rows)
        done = min(low + BATCH, students)
        if done % 100_000 == 0 or done == students:
            print(f"  {done:,} students in {time.perf_counter() - start:.0f} s", flush=True)
    with db.engine.begin() as c:
        c.execute(sa.text("ANALYZE"))
    return {"district": district[1], "school": first_school}


def principal(definitions: Any, role: str, paths: dict[str, str], level: str) -> Principal:
    anchors = {"district": frozenset({paths["district"]})}
    if level == "school":
        anchors["school"] = frozenset({paths["school"]})
    return Principal(user_id=1, username=role, display_name=role, roles=(definitions.roles[role],),
                     unit_paths=frozenset({paths[level]}), anchors=anchors)


def timed(work: Callable[[], Any], runs: int) -> tuple[float, float]:
    work()  # warm: statements compiled, pages cached
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


def naive(db: Database, prefix: str) -> None:
    """Grade × gender of the 在读 students under `prefix`, read from the JSON documents."""
    if db.dialect == "sqlite":
        grade, gender, status = (sa.func.json_extract(Record.data, f"$.{k}") for k in ("grade", "gender", "status"))
    else:
        grade, gender, status = (sa.cast(Record.data, sa.dialects.postgresql.JSONB)[k].astext for k in ("grade", "gender", "status"))
    query = (sa.select(grade, gender, sa.func.count()).join(OrgUnit, OrgUnit.id == Record.unit_id)
             .where(Record.form_key == "student", OrgUnit.path.like(prefix + "%"), status == "在读")
             .group_by(grade, gender))
    with db.read() as s:
        s.execute(query).all()


class Lines(list):
    """The result lines, printed as they come (a long run that stops still shows what it measured)."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)


def bench(kind: str, url: str, args: argparse.Namespace) -> list[str]:
    definitions = load_definitions(REPO / "definitions")
    db = Database(url)
    db.upgrade()
    prepare_projections(db, definitions)
    print(f"{kind}: seeding {args.students:,} students", flush=True)
    paths = seed(db, definitions, args.students, args.schools, args.classes)
    service = ReportService(db, RecordService(db, lambda: definitions.forms))
    who = {"district": principal(definitions, "bureau", paths, "district"),
           "school": principal(definitions, "registrar", paths, "school")}
    lines = Lines()
    base50, base95 = timed(lambda: naive(db, paths["district"]), args.runs)
    lines.append(f"{kind:10} {'naive JSON GROUP BY (grade×gender)':40} district p50 {base50 * 1000:8.1f} ms  p95 {base95 * 1000:8.1f} ms")
    reports = [r for r in definitions.reports.values() if r.form == "student"]
    for scope_name, person in who.items():
        for report in reports:
            if not service.may(definitions, person, report):
                continue
            p50, p95 = timed(lambda: service.run(definitions, person, report.key, {}), args.runs)
            goal = GOALS[(kind, scope_name)]
            ratio = f"naive/report {base50 / p50:6.1f}×" if report.key == "students_grade_gender" else " " * 19
            lines.append(f"{kind:10} {report.key:40} {scope_name:8} p50 {p50 * 1000:8.1f} ms  p95 {p95 * 1000:8.1f} ms  "
                         f"p95/goal {p95 / goal:5.2f}  {ratio}")
    dashboard = definitions.dashboards["district"]

    def home() -> None:  # counted afresh: what the first sign-in of a minute waits for
        service.card_counts(definitions, who["district"], dashboard)
        for key in dashboard.charts:
            service.run(definitions, who["district"], key, {})

    p50, p95 = timed(home, args.runs)
    lines.append(f"{kind:10} {'home dashboard (district), counted':40} district p50 {p50 * 1000:8.1f} ms  p95 {p95 * 1000:8.1f} ms  "
                 f"p95/goal {p95 / GOALS[(kind, 'dashboard')]:5.2f}")
    p50, p95 = timed(lambda: service.dashboard_numbers(definitions, who["district"], dashboard), args.runs)
    lines.append(f"{kind:10} {'home dashboard (district), within 60 s':40} district p50 {p50 * 1000:8.1f} ms  p95 {p95 * 1000:8.1f} ms  "
                 f"p95/goal {p95 / GOALS[(kind, 'dashboard')]:5.2f}")
    db.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=200_000)
    parser.add_argument("--schools", type=int, default=50)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    lines = []
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            lines += bench("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", args)
    if not args.skip_pg:
        url, schema = pg_schema(PG_ADMIN, "bench_reports")
        try:
            lines += bench("postgresql", url, args)
        finally:
            drop_schema(PG_ADMIN, schema)
    print(f"\n{args.students:,} students, {args.schools} schools × 6 grades × {args.classes} classes; {args.runs} runs each")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
