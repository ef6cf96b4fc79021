"""Reports end to end: a report defined only in this test's YAML, run on SQLite and PostgreSQL for principals of
different scopes, equals a brute-force count over the stored documents; its drill-down lists count what its
numbers count; its .xlsx holds the same numbers; masked and hidden fields never become a report's numbers."""
from __future__ import annotations

import datetime as dt
import io
import random
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import openpyxl
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import select

from engine.permissions import Principal, scope
from engine.reports.service import _DASHBOARDS, ReportService
from engine.storage.models import OrgUnit, Record
from engine.storage.projection import projection_of, reproject
from tests.engine.helpers import BACKENDS, add_member, database_url, principal_of, sign_in, student_values
from tests.support import (
    CLASS_1, CLASS_2, DISTRICT, OTHER_DISTRICT_CLASS, OTHER_SCHOOL_CLASS, SCHOOL, build, copy_definitions, unit_id,
)
from web.state import AppState

QUIZ_FORM = """\
key: quiz
title: 测验成绩
unit: {level: class, label: 所属班级}
title_field: student_name
list:
  columns: [student_name, subject, score, exam_date]
  filters: [subject, exam_date]
sections:
  - key: main
    title: 成绩
    fields:
      - {key: student_name, label: 学生姓名, type: text, required: true}
      - {key: subject, label: 科目, type: choice, options: [语文, 数学, 英语], required: true}
      - {key: score, label: 分数, type: integer, min: 0, max: 100}
      - {key: exam_date, label: 考试日期, type: date, required: true}
      - {key: passed_note, label: 备注, type: text}
      - {key: pupil, label: 学生, type: link, form: student}
"""
# Reports that exist only in this test.
REPORTS = {
    "score_by_class": """\
key: score_by_class
title: 各班成绩
form: quiz
pick: [subject]
rows: {level: class}
measures:
  - count
  - share
  - {avg: score, label: 平均分, places: 2}
  - {rate: score, at_least: 60, label: 及格率}
  - {min: score}
  - {max: score}
  - {sum: score}
  - {count_distinct: subject, label: 科目数}
chart: bar
""",
    "score_bands": """\
key: score_bands
title: 分数段
form: quiz
rows: {field: score, bands: [60, 80]}
columns: subject
chart: stacked_bar
""",
    "score_months": """\
key: score_months
title: 每月考试
form: quiz
filters:
  subject: 数学
rows: {field: exam_date, by: month}
columns: {level: school}
chart: line
""",
    "score_terms": """\
key: score_terms
title: 各学期考试
form: quiz
rows: {field: exam_date, by: term}
columns: subject
""",
    "quiz_by_pupil": """\
key: quiz_by_pupil
title: 各学生测验次数
form: quiz
rows: pupil
measures: [count, {avg: score}]
""",
    "health_grade": """\
key: health_grade
title: 健康状况
form: student
rows: health
columns: grade
chart: stacked_bar
""",
}
CLASSES = [CLASS_1, CLASS_2, OTHER_SCHOOL_CLASS, OTHER_DISTRICT_CLASS]
PRINCIPALS = ["admin1", "bureau1", "reg1", "teacher1"]


@dataclass
class World:
    app: Litestar
    state: AppState

    def principal(self, username: str) -> Principal:
        return principal_of(self.state, username)

    def run(self, username: str, key: str, picked: dict[str, str] | None = None) -> Any:
        return ReportService(self.state.db, self.state.records).run(self.state.definitions, self.principal(username), key, picked or {})


def _definitions(tmp: Path) -> Path:
    root = copy_definitions(tmp / "definitions")
    (root / "forms" / "quiz.yaml").write_text(QUIZ_FORM, encoding="utf-8")
    for name, text in REPORTS.items():
        (root / "reports" / f"{name}.yaml").write_text(text, encoding="utf-8")
    for role, actions in (("registrar", "[create, read, update, delete]"), ("bureau", "[read]"), ("teacher", "[read]")):
        path = root / "roles" / f"{role}.yaml"
        path.write_text(path.read_text(encoding="utf-8") + f"  quiz:\n    actions: {actions}\n", encoding="utf-8")
    return root


def _seed(state: AppState, rng: random.Random) -> None:
    admin = principal_of(state, "admin1")
    student, quiz = state.definitions.forms["student"], state.definitions.forms["quiz"]
    units = {path: unit_id(state, path) for path in CLASSES}
    grades = ["高一", "高二", "初一"]
    ids = []
    for serial in range(1, 49):
        born = dt.date(2005, 1, 1) + dt.timedelta(days=rng.randrange(0, 4000))
        values = student_values(serial, born=born, grade=rng.choice(grades),
                                enrol_year=str(rng.choice([2021, 2022, 2023])),
                                health=rng.choice(["健康或良好", "一般或较弱", ""]))
        result = state.records.create(student, admin, units[rng.choice(CLASSES)], _full(student, values))
        assert result.ok, result.issues
        ids.append(result.record_id)
    for n in range(90):
        linked = {"pupil": rng.choice(ids[:6])} if n % 3 == 0 else {}
        result = state.records.create(quiz, admin, units[rng.choice(CLASSES)], {**linked,
            "student_name": f"学生{n}", "subject": rng.choice(["语文", "数学", "英语"]),
            "score": rng.choice([None, *range(30, 101)]),
            "exam_date": (dt.date(2024, 1, 5) + dt.timedelta(days=rng.randrange(0, 200))).isoformat()})
        assert result.ok, result.issues
    # 学籍状态 is changed by workflows only: here straight in the documents, then re-projected as a repair would.
    # A required field emptied (a field made required after records were saved reads the same): incomplete records.
    changed = rng.sample(ids, 20)
    with state.db.write() as s:
        for n, record_id in enumerate(changed):
            record = s.get(Record, record_id)
            record.data = ({**record.data, "status": rng.choice(["休学", "转出", "毕业"])} if n < 12
                           else {**record.data, "guardian_phone": None})
        s.flush()
        reproject(s.connection(), projection_of(student, state.db.dialect), changed)
        s.commit()


def _full(form: Any, values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if k in form.fields and form.fields[k].user_input and not form.fields[k].readonly}


@pytest.fixture(scope="module", params=BACKENDS, ids=["sqlite", "pg"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("reports")
    definitions = _definitions(tmp)
    with database_url(request.param, tmp) as url:
        app, state = build(url, definitions=definitions, tmp=tmp)
        add_member(state, "admin1", "sysadmin", DISTRICT)
        add_member(state, "bureau1", "bureau", DISTRICT)
        add_member(state, "reg1", "registrar", SCHOOL)
        add_member(state, "teacher1", "teacher", CLASS_1)
        _seed(state, random.Random(18))
        yield World(app, state)
        state.db.dispose()


# --- brute force over the stored documents -----------------------------------------------------------------

def _documents(world: World, form_key: str, username: str) -> list[dict[str, Any]]:
    """Every record of the form the principal may read, as {the document's values, "_path": unit path}."""
    principal = world.principal(username)
    reach = scope(principal, "read", world.state.definitions.forms[form_key])
    with world.state.db.read() as s:
        rows = s.execute(select(Record.data, Record.created_by, OrgUnit.path).join(OrgUnit, OrgUnit.id == Record.unit_id)
                         .where(Record.form_key == form_key)).all()
    return [{**data, "_path": path} for data, created_by, path in rows if reach.contains(path, created_by, principal.user_id)]


def _unit_at(world: World, path: str, level: str) -> int | None:
    with world.state.db.read() as s:
        levels = dict(s.execute(select(OrgUnit.id, OrgUnit.level)).all())
    return next((int(p) for p in path.strip("/").split("/") if levels[int(p)] == level), None)


def _percent(part: int, whole: int, places: int = 1) -> Decimal | None:
    return None if not whole else (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _group(docs: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[Any, list[dict[str, Any]]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for doc in docs:
        groups.setdefault(key(doc), []).append(doc)
    return groups


# --- the numbers --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("username", ["admin1", "bureau1", "reg1", "teacher1"])
def test_every_measure__equals_brute_force(world: World, username: str) -> None:
    result = world.run(username, "score_by_class")
    docs = _documents(world, "quiz", username)
    expected = _group(docs, lambda d: _unit_at(world, d["_path"], "class"))
    assert {h.key[0] for h in result.rows} == set(expected)
    for header in result.rows:
        group = expected[header.key[0]]
        scores = [d["score"] for d in group if d.get("score") is not None]
        cell = result.cell(header)
        assert cell["m0"] == len(group)
        assert cell["m1"] == _percent(len(group), len(docs))
        assert cell["m2"] == (None if not scores else (Decimal(sum(scores)) / len(scores)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        assert cell["m3"] == _percent(sum(1 for v in scores if v >= 60), len(scores))
        assert cell["m4"] == (min(scores) if scores else None)
        assert cell["m5"] == (max(scores) if scores else None)
        assert cell["m6"] == (sum(scores) if scores else None)
        assert cell["m7"] == len({d["subject"] for d in group})
    assert result.total["m0"] == len(docs)
    assert result.total["m7"] == len({d["subject"] for d in docs})


@pytest.mark.parametrize("username", PRINCIPALS)
def test_bands_by_subject__pivot_equals_brute_force(world: World, username: str) -> None:
    result = world.run(username, "score_bands")
    docs = _documents(world, "quiz", username)
    band = lambda v: None if v is None else 0 if v < 60 else 1 if v < 80 else 2  # noqa: E731
    expected = _group(docs, lambda d: (band(d.get("score")), d["subject"]))
    found = {(r.key[0], c.key[0]): result.cell(r, c).get("m0") for r in result.rows for c in result.columns if result.cell(r, c)}
    assert found == {k: len(v) for k, v in expected.items()}
    assert [r.label for r in result.rows if r.key[0] is not None] == [l for i, l in enumerate(["<60", "60–79", "≥80"])
                                                                      if any(k[0] == i for k in expected)]
    for column in result.columns:
        assert result.column_totals[column.key]["m0"] == sum(1 for d in docs if d["subject"] == column.key[0])


@pytest.mark.parametrize("username", PRINCIPALS)
def test_months_by_school_with_fixed_filter__equals_brute_force(world: World, username: str) -> None:
    result = world.run(username, "score_months")
    docs = [d for d in _documents(world, "quiz", username) if d["subject"] == "数学"]
    expected = _group(docs, lambda d: (d["exam_date"][:7], _unit_at(world, d["_path"], "school")))
    found = {(r.label, c.key[0]): result.cell(r, c)["m0"] for r in result.rows for c in result.columns if result.cell(r, c)}
    assert found == {k: len(v) for k, v in expected.items()}
    assert [r.label for r in result.rows] == sorted({d["exam_date"][:7] for d in docs})


@pytest.mark.parametrize("username", PRINCIPALS)
def test_terms__equal_brute_force(world: World, username: str) -> None:
    result = world.run(username, "score_terms")
    docs = _documents(world, "quiz", username)

    def term(d: dict[str, Any]) -> str:
        day = dt.date.fromisoformat(d["exam_date"])
        year = day.year if day.month >= 9 else day.year - 1
        return f"{year}–{year + 1}学年第{'一' if day.month >= 9 or day.month == 1 else '二'}学期"

    expected = _group(docs, lambda d: (term(d), d["subject"]))
    found = {(r.label, c.key[0]): result.cell(r, c)["m0"] for r in result.rows for c in result.columns if result.cell(r, c)}
    assert found == {k: len(v) for k, v in expected.items()}


@pytest.mark.parametrize("username", PRINCIPALS)
def test_link_dimension__headed_by_the_linked_title(world: World, username: str) -> None:
    result = world.run(username, "quiz_by_pupil")
    docs = _documents(world, "quiz", username)
    expected = {k: len(v) for k, v in _group(docs, lambda d: d.get("pupil")).items()}
    assert {r.key[0]: result.cell(r)["m0"] for r in result.rows} == expected
    principal = world.principal(username)
    reach = scope(principal, "read", world.state.definitions.forms["student"])
    with world.state.db.read() as s:
        students = s.execute(select(Record.id, Record.data, Record.created_by, OrgUnit.path)
                             .join(OrgUnit, OrgUnit.id == Record.unit_id).where(Record.form_key == "student")).all()
    # A linked student reads as their name to whoever may read them, as "#id" to others (never their name).
    titles = {i: data["name"] if reach.contains(path, by, principal.user_id) else f"#{i}" for i, data, by, path in students}
    for row in result.rows:
        if row.key[0] is None:
            assert row.label == "（未填）" and row.params == {"pupil__empty": "1"}
        else:
            assert row.label.startswith(titles[row.key[0]]) and row.params == {"pupil": str(row.key[0])}


@pytest.mark.parametrize("username", ["admin1", "bureau1", "reg1"])
@pytest.mark.parametrize("key", ["students_grade_gender", "students_status", "students_by_school", "students_age"])
def test_shipped_student_reports__equal_brute_force(world: World, username: str, key: str) -> None:
    report = world.state.definitions.reports[key]
    service = ReportService(world.state.db, world.state.records)
    if not service.may(world.state.definitions, world.principal(username), report):
        assert key == "students_by_school" and username == "reg1"  # a bureau's report
        return
    result = world.run(username, key)
    docs = _documents(world, "student", username)
    if key != "students_status":
        docs = [d for d in docs if d.get("status") == "在读"]
    today = dt.date.today()

    def age(d: dict[str, Any]) -> int:
        born = dt.date.fromisoformat(d["birth_date"])
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))

    def age_band(d: dict[str, Any]) -> int:
        return sum(1 for edge in (6, 9, 12, 15, 18) if age(d) >= edge)

    keys = {"students_grade_gender": lambda d: (d["grade"], d["gender"]),
            "students_status": lambda d: (d["status"], None),
            "students_by_school": lambda d: (_unit_at(world, d["_path"], "school"), d["grade"]),
            "students_age": lambda d: (age_band(d), d["gender"])}[key]
    expected = {k: len(v) for k, v in _group(docs, keys).items()}
    found = {}
    for row in result.rows:
        for column in result.columns or [None]:
            cell = result.cell(row, column)
            if cell:
                found[(row.key[0], column.key[0] if column else None)] = cell["m0"]
    assert found == expected
    assert sum(expected.values()) == (result.total["m0"])


# --- scope, masks, availability -----------------------------------------------------------------------------

def test_hidden_field__report_not_available(world: World) -> None:
    """The teacher's role hides 健康状况: a report grouped by it is not theirs, on the index or by its address."""
    service = ReportService(world.state.db, world.state.records)
    teacher = world.principal("teacher1")
    assert "health_grade" not in {r.key for r in service.available(world.state.definitions, teacher)}
    assert "health_grade" in {r.key for r in service.available(world.state.definitions, world.principal("reg1"))}
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "teacher1")
        assert client.get("/reports/health_grade").status_code == 403
        assert "health_grade" not in client.get("/reports/").text
        assert client.get("/reports/no_such_report").status_code == 404


def test_picked_unit_outside_scope__counts_nothing(world: World) -> None:
    other = unit_id(world.state, OTHER_DISTRICT_CLASS)
    result = world.run("reg1", "score_by_class", {"unit": str(other)})
    assert result.total["m0"] == 0 and result.rows == []


def test_picked_field_not_in_pick__ignored(world: World) -> None:
    all_rows = world.run("admin1", "score_by_class")
    assert world.run("admin1", "score_by_class", {"score": "100", "student_name": "学生1"}).total == all_rows.total
    math = world.run("admin1", "score_by_class", {"subject": "数学"})
    assert math.total["m0"] == len([d for d in _documents(world, "quiz", "admin1") if d["subject"] == "数学"])


# --- web: page, drill-down, export --------------------------------------------------------------------------

def _list_count(client: TestClient, href: str) -> int:
    page = client.get(href)
    assert page.status_code == 200, href
    return int(re.search(r"共 (\d+) 条", page.text)[1])


@pytest.mark.parametrize("username", ["bureau1", "reg1"])
@pytest.mark.parametrize("key", ["score_by_class", "score_bands", "score_months", "score_terms"])
def test_report_page__every_number_links_to_a_list_of_that_many(world: World, username: str, key: str) -> None:
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, username)
        page = client.get(f"/reports/{key}")
        assert page.status_code == 200, page.text[:1000]
        assert "<svg" in page.text and "<title" in page.text
        cells = re.findall(r'<td class="num count"><a href="(/f/quiz/\?[^"]+)">([0-9]+)</a></td>', page.text)
        assert cells
        for href, number in cells[:16]:
            href = href.replace("&amp;", "&")
            assert _list_count(client, href) == int(number), href


def test_export__numbers_and_filters_in_the_workbook(world: World) -> None:
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "bureau1")
        response = client.get("/reports/score_by_class/xlsx?subject=数学")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0][0] == "各班成绩"
    assert ["科目：数学"] == [r[0] for r in rows if r and r[0] and str(r[0]).startswith("科目")]
    header = next(i for i, r in enumerate(rows) if r[0] == "班级")
    result = world.run("bureau1", "score_by_class", {"subject": "数学"})
    table = rows[header + 1:header + 1 + len(result.rows)]
    for header_row, line in zip(result.rows, table):
        cell = result.cell(header_row)
        assert line[0] == header_row.label
        assert line[1] == cell["m0"] and isinstance(line[1], int)
        assert line[2] == pytest.approx(float(cell["m1"]) / 100)
    assert rows[header + 1 + len(result.rows)][0] == "合计"
    assert rows[header + 1 + len(result.rows)][1] == result.total["m0"]


def test_completeness__shares_and_drill_down(world: World) -> None:
    result = world.run("admin1", "completeness_student")
    docs = _documents(world, "student", "admin1")
    by_class = _group(docs, lambda d: _unit_at(world, d["_path"], "class"))
    for row in result.rows:
        group = by_class[row.key[0]]
        missing = sum(1 for d in group if not d.get("guardian_phone"))
        cell = result.cell(row, next(c for c in result.columns if c.key == ("guardian_phone",)))
        assert cell["count"] == missing
        assert cell["share"] == _percent(len(group) - missing, len(group))
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "admin1")
        page = client.get("/reports/completeness_student")
        assert page.status_code == 200
        links = re.findall(r'<a href="(/f/student/\?[^"]*guardian_phone__empty=1[^"]*)">[^<]*缺 (\d+)）</a>', page.text)
        assert links
        for href, number in links:
            assert _list_count(client, href.replace("&amp;", "&")) == int(number)


def test_home_dashboard__cards_count_the_lists_they_link_to(world: World) -> None:
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "reg1")
        page = client.get("/")
        assert page.status_code == 200
        cards = re.findall(r'<a class="card number-card" href="(/f/[^"]+)"[^>]*><span class="number">(\d+)</span>', page.text)
        assert len(cards) >= 2
        for href, number in cards:
            assert _list_count(client, href.replace("&amp;", "&")) == int(number)
        assert "<svg" in page.text


def test_home_dashboard__this_months_status_changes(world: World) -> None:
    """The 本月学籍异动 card (`current: {field: date, period: month}`) counts the records dated this month in the
    user's scope, and links to the list filtered by exactly that month."""
    form, admin = world.state.definitions.forms["status_change"], world.principal("admin1")
    with world.state.db.read() as s:
        student = s.scalar(select(Record.id).join(OrgUnit, OrgUnit.id == Record.unit_id)
                           .where(Record.form_key == "student", OrgUnit.path.like(f"{_school_path(world)}%")).limit(1))
    _DASHBOARDS.clear()  # numbers are cached per roles for a few seconds: this test's records must show
    today = dt.date.today()
    first = today.replace(day=1)
    dates = [today, first, first - dt.timedelta(days=1), first.replace(year=first.year - 1)]
    made = []
    for n, (day, unit) in enumerate([(d, SCHOOL) for d in dates] + [(today, OTHER_SCHOOL_CLASS.rsplit("/", 2)[0])]):
        result = world.state.records.create(form, admin, unit_id(world.state, unit),
                                            {"student": student, "name": f"异动{n}", "kind": "休学", "date": day.isoformat()})
        assert result.ok, result.issues
        made.append(result.record_id)
    try:
        with TestClient(app=world.app, base_url="http://testserver.local") as client:
            sign_in(client, world.state, "reg1")
            page = client.get("/").text
            card = re.search(r'<a class="card number-card" href="(/f/status_change/\?[^"]+)"[^>]*><span class="number">(\d+)</span>'
                             r'\s*<span class="label">本月学籍异动</span>', page)
            assert card, page[page.find("dashboard"):][:2000]
            # Today and the 1st of this month, at this school; not the last day of last month, nor a year ago, nor
            # the other school's (outside the registrar's scope).
            assert int(card[2]) == 2
            href = card[1].replace("&amp;", "&")
            next_month = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
            assert f"date__ge={first.isoformat()}" in href and f"date__lt={next_month.isoformat()}" in href
            assert _list_count(client, href) == 2
    finally:
        with world.state.db.write() as s:  # the module's other tests count the seeded records only
            for record_id in made:
                s.delete(s.get(Record, record_id))
            s.execute(projection_of(form, world.state.db.dialect).table.delete())
            s.commit()
        _DASHBOARDS.clear()


def _school_path(world: World) -> str:
    with world.state.db.read() as s:
        return s.scalar(select(OrgUnit.path).where(OrgUnit.id == unit_id(world.state, SCHOOL)))


def test_every_report__page_print_and_export(world: World) -> None:
    """Every report of the definitions (shipped and the test's) renders, prints and exports for an administrator."""
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "admin1")
        for key, report in world.state.definitions.reports.items():
            page = client.get(f"/reports/{key}")
            assert page.status_code == 200, (key, page.text[:500])
            if report.chart != "none" and "没有符合条件的记录" not in page.text:
                assert '<svg class="chart" role="img"' in page.text, key
            printed = client.get(f"/reports/{key}/print")
            assert printed.status_code == 200 and "导出 Excel" not in printed.text
            exported = client.get(f"/reports/{key}/xlsx")
            assert exported.status_code == 200
            assert openpyxl.load_workbook(io.BytesIO(exported.content)).active["A1"].value == report.title
