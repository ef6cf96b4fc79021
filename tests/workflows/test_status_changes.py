"""学籍异动记录 (issue 18's 学籍异动统计): each approved status change registers a record through `on_approve.create`
of a form that is not a child of the student — placed in a unit the workflow names, so that a transfer leaves a 转出
record at the sending school and a 转入 record at the receiving one — and the shipped report counts them."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.records import ListQuery
from engine.reports.service import ReportService
from tests.support import DEFINITIONS, OTHER_DISTRICT_CLASS, unit_id
from tests.workflows.support import application_id, proof, transfer_form

PEOPLE = ("reg", "reg_in", "bureau", "bureau_in")


def changes(w, username: str) -> list[tuple[str, str, str]]:
    form = w.state.definitions.forms["status_change"]
    found = w.state.records.list(form, w.principal(username), ListQuery(per_page=100)).records
    return sorted((r.values["name"], r.values["kind"], r.unit_name) for r in found)


def test_transfer__out_at_the_sending_school_and_in_at_the_receiving_one(world) -> None:
    w = world(*PEOPLE)
    student = w.student()
    reg, reg_in, bureau, bureau_in = (w.login(u) for u in PEOPLE)
    app = application_id(reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    for person in (reg_in, bureau, bureau_in):
        assert person.decide(app, "approve").status_code == 303
    assert w.application(app).status == "approved"
    assert changes(w, "reg") == [("张三", "转出", "示范区第一中学")]  # kept by the school the student left
    assert changes(w, "reg_in") == [("张三", "转入", "滨江中学")]
    listed = reg.get("/f/status_change/").text
    assert "张三" in listed and "<td>转出</td>" in listed and "<td>转入</td>" not in listed
    page = reg.get(f"/wf/a/{app}").text
    assert "已新建学籍异动记录" in page


def test_status_changes__counted_by_the_shipped_report(world) -> None:
    w = world("reg", "bureau")
    reg, bureau = w.login("reg"), w.login("bureau")
    first, second = w.student("甲", "110105200805120018"), w.student("乙", "110105200805120034")
    app = application_id(reg.start("suspend", first, {"reason": "因病", "reason_detail": "住院", "start_date": "2026-03-01",
                                                      "end_date": "2026-09-01"}, proof()))
    assert bureau.decide(app, "approve").status_code == 303
    app = application_id(reg.start("resume", first, {"resume_date": "2026-09-01"}, proof()))
    assert bureau.decide(app, "approve").status_code == 303
    app = application_id(reg.start("withdraw", second, {"reason": "出国", "leave_date": "2026-03-15"}, proof()))
    assert bureau.decide(app, "approve", comment="同意").status_code == 303
    result = ReportService(w.state.db, w.state.records).run(w.state.definitions, w.principal("reg"), "status_changes_by_month", {})
    counts = {(row.label, column.key[0]): result.cell(row, column)["m0"]
              for row in result.rows for column in result.columns if result.cell(row, column)}
    assert counts == {("2026-03", "休学"): 1, ("2026-03", "退学"): 1, ("2026-09", "复学"): 1}, counts


def _with_workflow(tmp: Path, create: str) -> Path:
    root = shutil.copytree(DEFINITIONS, tmp / "definitions")
    path = root / "workflows" / "withdraw.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("  create:")
    path.write_text(text[:start] + create, encoding="utf-8")
    return root


@pytest.mark.parametrize(("create", "expected"), [
    ("  create:\n    - form: status_change\n      link: student\n      unit: record_unit.school\n"
     "      compute: {name: \"record.name\", kind: \"'退学'\", date: \"leave_date\"}\n", None),
    ("  create:\n    - form: status_change\n      compute: {name: \"record.name\"}\n", "其他表单须写 link"),
    ("  create:\n    - form: status_change\n      link: name\n      unit: record_unit.school\n",
     "“name”不是表单“status_change”中关联到“student”的 link 字段"),
    ("  create:\n    - form: status_change\n      link: student\n      unit: record_unit.class\n",
     "表单“status_change”的记录属于“school”层级的单位，这里是“class”"),
    ("  create:\n    - form: status_change\n      link: student\n      unit: chosen_unit.school\n",
     "此流程没有 choose_unit，不能使用 chosen_unit"),
    ("  create:\n    - form: award\n      link: student\n      unit: record_unit.school\n", "表单“award”是下级表单，不写 link 和 unit"),
])
def test_create_of_a_form_that_is_not_a_child__checked_at_load(tmp_path: Path, create: str, expected: str | None) -> None:
    root = _with_workflow(tmp_path, create)
    if expected is None:
        spec = load_definitions(root).workflows["withdraw"]
        assert spec.effects.create[0].link == "student" and spec.effects.create[0].unit.source == "record_unit.school"
        return
    with pytest.raises(DefinitionErrors) as caught:
        load_definitions(root)
    found = [str(e) for e in caught.value.errors]
    assert any("workflows/withdraw.yaml:" in p and expected in p for p in found), found
