"""Workflows that read the record and write through the record service (issue 16 item 7): conditions on
`record.<field>`, `on_approve.compute` (fields from expressions) and `on_approve.create` (a child record linked to
the target). Every definition below exists only in this test."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.storage.models import AuditEntry, Record
from tests.support import DEFINITIONS
from tests.workflows.support import application_id

HONOR = """\
key: honor
title: 荣誉
belongs_to: student
title_field: title
list:
  columns: [student, title]
sections:
  - key: main
    title: 荣誉
    fields:
      - {key: student, label: 学生, type: link, form: student, required: true}
      - {key: title, label: 称号, type: text, required: true}
      - {key: level, label: 级别, type: text}
      - {key: awarded_on, label: 授予日期, type: date}
"""
COMMEND = """\
key: commend
title: 表彰
form: student
start: {roles: [registrar]}
application:
  fields:
    - {key: title, label: 称号, type: text, required: true}
    - {key: level, label: 级别, type: choice, options: [校级, 区级], required: true}
    - {key: next_school, label: 升入学校, type: text, visible_if: "record.grade == '高三'", required_if: "record.grade == '高三'"}
    - {key: headline, label: 标题, type: text, compute: "record.name + '：' + title"}
  rules:
    - {key: district_needs_senior, check: "level == '校级' or record.grade in ['高一', '高二', '高三']", message: 区级表彰限高中学生, fields: [level]}
steps:
  - key: bureau
    title: 教育局审批
    when: "record.grade == '高一'"        # routing reads the record: other grades need no approval
    assignees: [{role: bureau, unit: record_unit.district}]
on_approve:
  compute:
    remarks: "record.name + '获' + level + title"
  create:
    - form: honor
      compute: {title: "title", level: "level", awarded_on: "today()"}
"""


def definitions(tmp: Path, commend: str = COMMEND) -> Path:
    root = shutil.copytree(DEFINITIONS, tmp / "definitions")
    (root / "forms" / "honor.yaml").write_text(HONOR, encoding="utf-8")
    (root / "workflows" / "commend.yaml").write_text(commend, encoding="utf-8")
    return root


def honors(w) -> list[Record]:
    with w.state.db.read() as s:
        return list(s.scalars(select(Record).where(Record.form_key == "honor").order_by(Record.id)))


def test_approval__sets_fields_from_expressions_and_creates_a_linked_child(world, tmp_path: Path) -> None:
    w = world("reg", "bureau", definitions=definitions(tmp_path))
    student = w.student()
    reg, bureau = w.login("reg"), w.login("bureau")
    app = application_id(reg.start("commend", student, {"title": "三好学生", "level": "区级"}))
    assert w.application(app).step == "bureau" and not honors(w)
    assert bureau.decide(app, "approve", comment="同意").status_code == 303
    record = w.record(student)
    assert record.data["remarks"] == "张三获区级三好学生"
    [honor] = honors(w)
    assert honor.data["student"] == student and honor.data["title"] == "三好学生" and honor.data["level"] == "区级"
    assert honor.data["awarded_on"] and honor.unit_id == record.unit_id  # a child sits in its parent's unit
    page = reg.get(f"/wf/a/{app}").text
    assert f"已新建荣誉记录 #{honor.id}" in page and "备注" in page
    with w.state.db.read() as s:
        audited = s.scalars(select(AuditEntry.record_id).where(AuditEntry.form_key == "honor")).all()
    assert audited == [honor.id]  # written by the record service: audited like any save


def test_condition_on_the_record__skips_the_step(world, tmp_path: Path) -> None:
    w = world("reg", "bureau", definitions=definitions(tmp_path))
    student = w.student(grade="高二")
    app = application_id(w.login("reg").start("commend", student, {"title": "优秀干部", "level": "校级"}))
    assert w.application(app).status == "approved"  # record.grade is not 高一: no approval needed
    assert w.record(student).data["remarks"] == "张三获校级优秀干部" and len(honors(w)) == 1


def test_child_refused__the_approval_writes_nothing(world, tmp_path: Path) -> None:
    commend = COMMEND.replace('compute: {title: "title", level: "level", awarded_on: "today()"}',
                              'compute: {title: "none", level: "level"}')
    w = world("reg", "bureau", definitions=definitions(tmp_path, commend))
    student = w.student()
    reg, bureau = w.login("reg"), w.login("bureau")
    app = application_id(reg.start("commend", student, {"title": "三好学生", "level": "区级"}))
    refused = bureau.decide(app, "approve", comment="同意")
    assert refused.status_code == 409 and "称号为必填项" in refused.text
    assert w.application(app).status == "pending" and "remarks" not in (w.record(student).data or {}) or \
        not w.record(student).data.get("remarks")
    assert not honors(w)


@pytest.mark.parametrize(("change", "expected"), [
    ('create:\n    - form: student', "表单“student”不属于表单“student”"),
    ("remarks: \"record.name + '获' + level + title\"", None),
    ("remarks: \"record.nmae\"", "“record”没有字段“nmae”"),
    ("remarks: \"已毕业\"", "表达式引用了不存在的字段“已毕业”"),
    ("remarks: \"record.name + '获' + level + title\"\n    school_no: \"title\"", "字段“school_no”由系统生成"),
])
def test_effect_expressions__checked_at_load(tmp_path: Path, change: str, expected: str | None) -> None:
    original = "remarks: \"record.name + '获' + level + title\""
    text = COMMEND.replace(original, change) if not change.startswith("create") else \
        COMMEND.replace("create:\n    - form: honor", change)
    root = definitions(tmp_path, text)
    if expected is None:
        assert "commend" in load_definitions(root).workflows
        return
    with pytest.raises(DefinitionErrors) as caught:
        load_definitions(root)
    found = [str(e) for e in caught.value.errors]
    assert any("workflows/commend.yaml:" in p and expected in p for p in found), found


def test_application_fields_read_the_record(world, tmp_path: Path) -> None:
    """visible_if, required_if, compute and rules of the application form read `record.<field>`."""
    w = world("reg", "bureau", definitions=definitions(tmp_path))
    reg = w.login("reg")
    senior = w.student(grade="高三")
    form = reg.get(f"/wf/new/commend/start?record={senior}").text
    assert 'name="next_school"' in form
    missing = reg.start("commend", senior, {"title": "三好学生", "level": "区级"})
    assert missing.status_code == 422 and "升入学校为必填项" in missing.text
    app = application_id(reg.start("commend", senior, {"title": "三好学生", "level": "区级", "next_school": "北大"}))
    assert w.application(app).data["headline"] == "张三：三好学生"
    junior = w.student("李四", "110105200805120034", grade="初一")
    assert "升入学校为必填项" not in reg.start("commend", junior, {"title": "三好学生", "level": "校级"}).text
    refused = reg.start("commend", junior, {"title": "三好学生", "level": "区级"})
    assert refused.status_code == 422 and "区级表彰限高中学生" in refused.text
