"""审核条件 (issue 16 item 7, 毕业审核): a workflow's `figures` over the record's child records and its `checks`,
which refuse submission — and final approval, should the record change meanwhile — with every reason listed.
Every definition below exists only in this test: a child form with a link to another form, and a workflow."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.records import ListQuery
from engine.storage.models import Application
from engine.workflows.service import WorkflowService
from tests.support import DEFINITIONS, unit_id
from tests.workflows.support import World, application_id

SITTING = """\
key: sitting
title: 测验
title_field: name
unit: {level: school, label: 学校}
list: {columns: [name, kind]}
sections:
  - key: main
    title: 测验
    fields:
      - {key: name, label: 名称, type: text, required: true}
      - {key: kind, label: 类型, type: choice, options: [平时, 期末, 补考], required: true}
"""
MARK = """\
key: mark
title: 测验成绩
belongs_to: student
title_field: sitting
list: {columns: [student, sitting, points]}
sections:
  - key: main
    title: 成绩
    fields:
      - {key: student, label: 学生, type: link, form: student, required: true}
      - {key: sitting, label: 测验, type: link, form: sitting, required: true}
      - {key: points, label: 分数, type: decimal, places: 1, min: 0, max: 100}
      - {key: grade, label: 年级, type: text}
"""
LEAVE = """\
key: leave
title: 结业
form: student
start: {roles: [registrar]}
application:
  fields:
    - {key: note, label: 说明, type: text}
steps:
  - key: bureau
    title: 教育局审批
    assignees: [{role: bureau, unit: record_unit.district}]
figures:
  - {key: failed_finals, label: 期末不及格次数, count: mark, where: "sitting.kind == '期末' and points < 60"}
  - {key: passed_makeups, label: 补考及格次数, count: mark, where: "sitting.kind == '补考' and points >= 60"}
  - {key: this_grade, label: 本年级成绩条数, count: mark, where: "grade == record.grade"}
  - {key: best, label: 最高分, max: mark.points}
checks:
  - label: 期末不及格已补考及格
    require: "failed_finals <= passed_makeups"
    message: "期末不及格 {failed_finals} 次，补考及格只有 {passed_makeups} 次"
  - label: 本年级有成绩
    require: "this_grade > 0"
    message: "{record.grade}没有成绩记录"
  - label: 最高分不低于 60
    require: "best != none and best >= 60"
on_approve:
  set: {status: 毕业}
"""
ROLE_FORMS = """\
  sitting:
    actions: [create, read, update, delete]
  mark:
    actions: [create, read, update, delete]
"""


def definitions(tmp: Path, leave: str = LEAVE) -> Path:
    root = shutil.copytree(DEFINITIONS, tmp / "definitions")
    (root / "forms" / "sitting.yaml").write_text(SITTING, encoding="utf-8")
    (root / "forms" / "mark.yaml").write_text(MARK, encoding="utf-8")
    (root / "workflows" / "leave.yaml").write_text(leave, encoding="utf-8")
    registrar = root / "roles" / "registrar.yaml"
    text = registrar.read_text(encoding="utf-8")
    registrar.write_text(text.replace("forms:\n", "forms:\n" + ROLE_FORMS, 1), encoding="utf-8")
    return root


class School:
    def __init__(self, w: World) -> None:
        self.w, self.reg = w, w.principal("reg")
        self.sittings: dict[str, int] = {}

    def sitting(self, name: str, kind: str) -> int:
        form = self.w.state.definitions.forms["sitting"]
        made = self.w.state.records.create(form, self.reg, unit_id(self.w.state, "示范区教育局/示范区第一中学"),
                                           {"name": name, "kind": kind})
        assert made.ok, made.issues
        self.sittings[name] = made.record_id  # type: ignore[assignment]
        return made.record_id  # type: ignore[return-value]

    def mark(self, student: int, sitting: str, points: str, grade: str = "初一") -> int:
        form = self.w.state.definitions.forms["mark"]
        made = self.w.state.records.create(form, self.reg, None, {
            "student": student, "sitting": self.sittings[sitting], "points": points, "grade": grade})
        assert made.ok, made.issues
        return made.record_id  # type: ignore[return-value]

    def update_mark(self, mark: int, **values: Any) -> None:
        form = self.w.state.definitions.forms["mark"]
        current = self.w.state.records.get(form, mark, self.reg)
        saved = self.w.state.records.update(form, self.reg, mark, values, current.revision)
        assert saved.ok, saved.issues


@pytest.fixture
def school(world, tmp_path: Path) -> School:
    w = world("reg", "bureau", definitions=definitions(tmp_path))
    found = School(w)
    found.sitting("期末一", "期末")
    found.sitting("期末二", "期末")
    found.sitting("补考一", "补考")
    return found


def test_failing_checks__submission_refused_with_every_reason(school: School) -> None:
    w = school.w
    student = w.student(grade="初一")
    school.mark(student, "期末一", "45", grade="初一")
    school.mark(student, "期末二", "52", grade="初二")
    reg = w.login("reg")
    refused = reg.start("leave", student, {"note": "x"})
    assert refused.status_code == 409
    text = refused.text
    assert "不符合“结业”的办理条件" in text
    assert "期末不及格 2 次，补考及格只有 0 次" in text and "不满足：最高分不低于 60" in text
    assert "没有成绩记录" not in text  # 初一 has a mark: that check holds
    with w.state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Application)) == 0  # nothing kept of a refused submission


def test_checks_met__submitted_and_approved(school: School) -> None:
    w = school.w
    student = w.student(grade="初一")
    school.mark(student, "期末一", "45")
    school.mark(student, "补考一", "75")
    app = application_id(w.login("reg").start("leave", student, {"note": "x"}))
    assert w.login("bureau").decide(app, "approve", comment="同意").status_code == 303
    assert w.application(app).status == "approved" and w.record(student).data["status"] == "毕业"


def test_record_changed_after_submission__final_approval_refused_with_reasons(school: School) -> None:
    w = school.w
    student = w.student(grade="初一")
    school.mark(student, "期末一", "45")
    makeup = school.mark(student, "补考一", "75")
    app = application_id(w.login("reg").start("leave", student, {"note": "x"}))
    school.update_mark(makeup, points="55")  # the 补考 mark was corrected after submission
    bureau = w.login("bureau")
    refused = bureau.decide(app, "approve", comment="同意")
    assert refused.status_code == 409 and "期末不及格 1 次，补考及格只有 0 次" in refused.text
    assert w.application(app).status == "pending" and w.record(student).data["status"] != "毕业"
    assert bureau.decide(app, "reject", comment="补考未通过").status_code == 303  # rejecting is still possible


def test_start_and_application_pages__list_the_checks(school: School) -> None:
    w = school.w
    student = w.student(grade="初一")
    school.mark(student, "期末一", "45")
    reg = w.login("reg")
    page = reg.get(f"/wf/new/leave/start?record={student}").text
    assert "办理条件" in page and "期末不及格已补考及格" in page and "期末不及格 1 次，补考及格只有 0 次" in page
    school.mark(student, "补考一", "80")
    app = application_id(reg.start("leave", student, {"note": "x"}))
    shown = w.login("bureau").get(f"/wf/a/{app}").text
    assert "办理条件" in shown and "本年级有成绩" in shown
    assert shown.count('<li class="ok">') == 3 and '<li class="failed">' not in shown


def test_draft__kept_without_the_checks(school: School) -> None:
    w = school.w
    student = w.student(grade="初一")
    service = WorkflowService(w.state.db, w.state.records)
    result = service.start(w.state.definitions, w.state.definitions.workflows["leave"], w.principal("reg"), student,
                           {"note": "x"}, draft=True)
    assert result.ok  # a draft claims nothing; it is checked when submitted


@pytest.mark.parametrize(("change", "expected"), [
    ("count: mark, where: \"sitting.kind == '期末' and points < 60\"",
     None),
    ("count: student_x", "未知的表单“student_x”"),
    ("count: sitting", "表单“sitting”不属于表单“student”"),
    ("count: mark, max: mark.points", "每个统计项写且只写一种统计"),
    ("sum: mark.grade", "字段“年级”不是数字"),
    ("sum: mark.pointz", "表单“mark”没有字段“pointz”"),
    ("count: mark, where: \"sitting.knd == '期末'\"", "“sitting”没有字段“knd”"),
    ("count: mark, where: \"points\"", "表达式的结果应为“是/否”"),
])
def test_figures__checked_at_load(tmp_path: Path, change: str, expected: str | None) -> None:
    original = "count: mark, where: \"sitting.kind == '期末' and points < 60\""
    root = definitions(tmp_path, LEAVE.replace(original, change))
    if expected is None:
        spec = load_definitions(root).workflows["leave"]
        assert [t.key for t in spec.tallies] == ["failed_finals", "passed_makeups", "this_grade", "best"]
        assert spec.tallies[0].links == ("sitting",) and len(spec.checks) == 3
        return
    with pytest.raises(DefinitionErrors) as caught:
        load_definitions(root)
    found = [str(e) for e in caught.value.errors]
    assert any("workflows/leave.yaml:" in p and expected in p for p in found), found


@pytest.mark.parametrize(("change", "expected"), [
    ('require: "this_grade > 0"', None),
    ('require: "this_grad > 0"', "表达式引用了不存在的字段“this_grad”"),
    ('require: "record.grdae == 1"', "“record”没有字段“grdae”"),
    ('require: "this_grade"', "表达式的结果应为“是/否”"),
    ('message: "{record.grade}没有成绩记录"', None),
    ('message: "{this_grad}没有成绩记录"', "提示中的“{this_grad}”不是统计项或 record.<字段>"),
])
def test_checks__checked_at_load(tmp_path: Path, change: str, expected: str | None) -> None:
    key = change.split(":")[0]
    original = {"require": 'require: "this_grade > 0"', "message": 'message: "{record.grade}没有成绩记录"'}[key]
    root = definitions(tmp_path, LEAVE.replace(original, change))
    if expected is None:
        assert "leave" in load_definitions(root).workflows
        return
    with pytest.raises(DefinitionErrors) as caught:
        load_definitions(root)
    found = [str(e) for e in caught.value.errors]
    assert any("workflows/leave.yaml:" in p and expected in p for p in found), found


# --- the shipped 毕业 workflow (definitions/workflows/graduate.yaml) ---------------------------------------------

GRADUATION = {"graduation_date": "2026-06-30", "destination": "升学", "school_name": "示范大学"}
PASSING = {"chinese": "100", "math": "95", "english": "92", "physics": "70", "chemistry": "66", "biology": "80",
           "politics": "75", "history": "88", "geography": "61"}


def test_shipped_graduation__failing_final_and_no_evaluation_listed_then_met(world) -> None:
    from tests.support import SCHOOL
    w = world("reg", "bureau")
    student = w.student(grade="高一")
    final = w.child("exam", {"name": "高一期末", "term": "2025-2026学年第二学期", "kind": "期末", "grade": "高一",
                                "start_date": "2026-06-20"}, SCHOOL)
    makeup = w.child("exam", {"name": "高一补考", "term": "2025-2026学年第二学期", "kind": "补考", "grade": "高一",
                                 "start_date": "2026-08-25"}, SCHOOL)
    w.child("score", {"student": student, "exam": final, **PASSING, "math": "72"})  # 数学 below 90 of 150
    reg = w.login("reg")
    refused = reg.start("graduate", student, GRADUATION)
    assert refused.status_code == 409
    assert "有 1 次期末考试存在不及格科目，而各科全部及格的补考只有 0 次" in refused.text
    assert "没有高一的综合素质评价记录" in refused.text
    w.child("score", {"student": student, "exam": makeup, **PASSING})
    w.evaluation(student, grade="高一")
    app = application_id(reg.start("graduate", student, GRADUATION))
    assert w.login("bureau").decide(app, "approve").status_code == 303
    assert w.record(student).data["status"] == "毕业"


# --- the shipped 奖惩审批 workflow (definitions/workflows/award_request.yaml) ------------------------------------

def test_shipped_award_request__approved_creates_the_award_linked_to_the_student(world) -> None:
    w = world("head", "reg", "bureau")
    student = w.student()
    head, reg = w.login("head"), w.login("reg")
    app = application_id(head.start("award_request", student, {
        "kind": "奖励", "level": "校级", "title": "校级三好学生", "date": "2026-06-01", "issuer": "示范区第一中学"}))
    assert w.application(app).step == "school"
    assert reg.decide(app, "approve").status_code == 303
    assert w.application(app).status == "approved"  # 校级: no bureau step
    form = w.state.definitions.forms["award"]
    [award] = w.state.records.list(form, w.principal("reg"), ListQuery(filters={"student": str(student)})).records
    assert (award.values["title"], award.values["kind"], award.values["level"]) == ("校级三好学生", "奖励", "校级")
    assert award.unit_id == w.record(student).unit_id
    assert "校级三好学生" in head.get(f"/f/student/{student}").text  # on the student's page, for the class teacher


def test_shipped_award_request__district_level_goes_to_the_bureau_and_discipline_needs_a_reason(world) -> None:
    w = world("head", "reg", "bureau")
    student = w.student()
    head = w.login("head")
    refused = head.start("award_request", student, {"kind": "处分", "level": "校级", "title": "警告", "date": "2026-06-01"})
    assert refused.status_code == 422 and "事由及说明为必填项" in refused.text
    app = application_id(head.start("award_request", student, {
        "kind": "奖励", "level": "区县级", "title": "区级优秀学生干部", "date": "2026-06-01"}))
    assert w.login("reg").decide(app, "approve").status_code == 303
    assert w.application(app).step == "bureau"
    assert w.login("bureau").decide(app, "approve").status_code == 303
    assert w.application(app).status == "approved"


def test_shipped_graduation__destination_kept_on_the_record_and_counted_by_the_report(world) -> None:
    from engine.reports.service import ReportService
    w = world("reg", "bureau")
    students = [w.student("甲", "110105200805120018"), w.student("乙", "110105200805120034"),
                w.student("丙", "110105200805120050")]
    destinations = [("升学", {"school_name": "示范大学"}), ("升学", {"school_name": "示范学院"}), ("就业", {"employer": "示范公司"})]
    for student, (destination, detail) in zip(students, destinations):
        w.evaluation(student)
        app = application_id(w.login("reg").start("graduate", student, {**GRADUATION, "destination": destination, **detail}))
        assert w.login("bureau").decide(app, "approve").status_code == 303
    data = w.record(students[0]).data
    assert (data["graduation_date"], data["graduation_destination"], data["next_school"]) == ("2026-06-30", "升学", "示范大学")
    page = w.login("reg").get(f"/f/student/{students[0]}").text
    assert "毕业去向" in page and "示范大学" in page
    result = ReportService(w.state.db, w.state.records).run(w.state.definitions, w.principal("bureau"), "graduates_destination", {})
    counts = {(row.key[0], column.key[0]): result.cell(row, column)["m0"]
              for row in result.rows for column in result.columns if result.cell(row, column)}
    assert counts == {(2026, "升学"): 2, (2026, "就业"): 1}
