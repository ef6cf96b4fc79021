"""Load-time checks of workflow files: every problem located at path:line:column, with a hint."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.workflows.compiler import compile_source
from engine.workflows.spec import WorkflowSpec
from tests.support import DEFINITIONS

DEFS = load_definitions(DEFINITIONS)
PATH = "workflows/t.yaml"

HEAD = """\
key: t
title: 测试
form: student
start: {roles: [registrar]}
"""
STEPS = """\
steps:
  - key: bureau
    title: 教育局审批
    assignees: [{role: bureau, unit: record_unit.district}]
"""


def compile_yaml(text: str) -> WorkflowSpec:
    return compile_source(textwrap.dedent(text), PATH, DEFS)


def assert_errors(text: str, *expected: str) -> None:
    """Each expected text appears in some error, as `path:line:column: message`."""
    with pytest.raises(DefinitionErrors) as caught:
        compile_yaml(text)
    shown = [str(e) for e in caught.value.errors]
    for item in expected:
        assert any(item in line for line in shown), f"{item!r} not in {shown}"


def test_shipped_workflows__ok() -> None:
    assert set(DEFS.workflows) == {"transfer", "suspend", "resume", "withdraw", "graduate", "change_info", "award_request"}
    transfer = DEFS.workflows["transfer"]
    assert [s.key for s in transfer.steps] == ["receiving_school", "bureaus"]
    assert transfer.steps[1].mode == "all" and transfer.steps[1].assignees[1].when is not None
    assert transfer.effects.move_to_chosen_unit and transfer.effects.set == {"status": "在读"}
    assert DEFS.workflows["change_info"].changes == ("name", "id_card", "birth_date", "ethnicity")


def test_minimal__ok() -> None:
    spec = compile_yaml(HEAD + STEPS)
    assert spec.start_label == "发起测试" and spec.summary == DEFS.forms["student"].list.columns


def test_unknown_form__error() -> None:
    assert_errors(HEAD.replace("form: student", "form: studnet") + STEPS, f"{PATH}:3:7: 未知的表单“studnet”（提示：是不是“student”？）")


def test_unknown_start_role__error() -> None:
    assert_errors(HEAD.replace("[registrar]", "[registar]") + STEPS, f"{PATH}:4:16: 未知的角色“registar”（提示：是不是“registrar”？）")


def test_unknown_assignee_role__error() -> None:
    assert_errors(HEAD + STEPS.replace("role: bureau", "role: burau"), f"{PATH}:8:24: 未知的角色“burau”（提示：是不是“bureau”？）")


@pytest.mark.parametrize("unit, message", [
    ("record_unit.distrct", "8:38: 未知的组织层级“distrct”（提示：是不是“district”？）"),
    ("recrd_unit.district", "8:38: 未知的单位来源“recrd_unit”（提示：是不是“record_unit”？）"),
    ("chosen_unit.district", "8:38: 此流程没有 choose_unit，不能使用 chosen_unit"),
    ("record_unit", "8:38: 单位范围“record_unit”的写法不对"),
])
def test_unknown_scope__error(unit: str, message: str) -> None:
    assert_errors(HEAD + STEPS.replace("record_unit.district", unit), f"{PATH}:{message}")


def test_scope_below_the_chosen_level__error() -> None:
    text = HEAD + "choose_unit: {label: 转入学校, level: school}\n" + STEPS.replace("record_unit.district", "chosen_unit.class")
    assert_errors(text, f"{PATH}:9:38: 申请中选择的单位是“school”层级，没有更低的“class”层级")


def test_unknown_effect_field__error() -> None:
    assert_errors(HEAD + STEPS + "on_approve:\n  set: {statuss: 休学}\n", f"{PATH}:10:18: 表单“student”没有字段“statuss”（提示：是不是“status”？）")


def test_invalid_effect_value__error() -> None:
    assert_errors(HEAD + STEPS + "on_approve:\n  set: {status: 死亡}\n", f"{PATH}:10:17: “死亡”不是字段“学籍状态”的有效值（提示：可选：在读、休学、转出、退学、毕业）")


def test_effect_on_generated_field__error() -> None:
    assert_errors(HEAD + STEPS + "on_approve:\n  set: {student_no: G1}\n", f"{PATH}:10:21: 字段“student_no”由系统生成，流程不能设置它")


def test_move_without_unit_choice__error() -> None:
    assert_errors(HEAD + STEPS + "on_approve:\n  move_to: chosen_unit\n", f"{PATH}:10:12: move_to: chosen_unit 需要流程有 choose_unit")


def test_unreachable_step__error() -> None:
    text = HEAD + """\
steps:
  - {key: a, title: A, next: c, assignees: [{role: bureau, unit: record_unit.district}]}
  - {key: b, title: B, assignees: [{role: bureau, unit: record_unit.district}]}
  - {key: c, title: C, assignees: [{role: bureau, unit: record_unit.district}]}
"""
    assert_errors(text, f"{PATH}:7:5: 步骤“b”永远不会被执行")


def test_step_after_a_conditional_jump__ok() -> None:
    text = HEAD + """\
steps:
  - {key: a, title: A, when: "record.status == '在读'", next: c, assignees: [{role: bureau, unit: record_unit.district}]}
  - {key: b, title: B, assignees: [{role: bureau, unit: record_unit.district}]}
  - {key: c, title: C, assignees: [{role: bureau, unit: record_unit.district}]}
"""
    assert [s.key for s in compile_yaml(text).steps] == ["a", "b", "c"]


def test_backward_next__error() -> None:
    text = HEAD + """\
steps:
  - {key: a, title: A, assignees: [{role: bureau, unit: record_unit.district}]}
  - {key: b, title: B, next: a, assignees: [{role: bureau, unit: record_unit.district}]}
"""
    assert_errors(text, f"{PATH}:7:30: next 只能指向后面的步骤，“a”在“b”之前")


def test_unknown_next__error() -> None:
    text = HEAD + "steps:\n  - {key: a, title: A, next: endd, assignees: [{role: bureau, unit: record_unit.district}]}\n"
    assert_errors(text, f"{PATH}:6:30: 未知的步骤“endd”（提示：是不是“end”？）")


def test_duplicate_step__error() -> None:
    assert_errors(HEAD + STEPS + STEPS.replace("steps:\n", ""), f"{PATH}:9:10: 重复的步骤键“bureau”（提示：第一次定义在第 6 行）")


def test_unknown_record_field_in_condition__error() -> None:
    text = HEAD.replace("[registrar]}", "[registrar], when: \"record.staus == '在读'\"}") + STEPS
    assert_errors(text, f"{PATH}:4:35: “record”没有字段“staus”（提示：是不是“status”？）")


def test_unknown_level_in_condition__error() -> None:
    text = HEAD + "choose_unit: {label: 转入班级, level: class}\n" + STEPS.replace(
        "record_unit.district}", "record_unit.district, when: \"chosen_unit.distrct != record_unit.district\"}")
    assert_errors(text, f"{PATH}:9:66: “chosen_unit”没有组织层级“distrct”（提示：是不是“district”？）")


def test_unknown_application_field_in_condition__error() -> None:
    text = HEAD + "application:\n  fields: [{key: reason, label: 原因, type: text}]\n" + STEPS.replace(
        "record_unit.district}", "record_unit.district, when: \"reasn == 'x'\"}")
    assert_errors(text, "表达式引用了不存在的字段“reasn”（提示：是不是“reason”？）")


def test_non_boolean_condition__error() -> None:
    text = HEAD + "application:\n  fields: [{key: reason, label: 原因, type: text}]\n" + STEPS.replace(
        "record_unit.district}", "record_unit.district, when: \"reason\"}")
    assert_errors(text, "表达式的结果应为“是/否”")


def test_application_field_errors_are_form_errors() -> None:
    text = HEAD + "application:\n  fields:\n    - {key: reason, label: 原因, type: txt}\n" + STEPS
    assert_errors(text, f"{PATH}:7:38: 未知的字段类型“txt”（提示：是不是“text”？）")


def test_reserved_application_field__error() -> None:
    text = HEAD + "application:\n  fields:\n    - {key: record, label: 档案, type: text}\n" + STEPS
    assert_errors(text, f"{PATH}:7:13: 申请表字段不能叫“record”")


def test_protected_field_must_be_writable__error() -> None:
    assert_errors(HEAD + "changes: [name, status]\n" + STEPS, f"{PATH}:5:10: 字段“status”不能作为受保护字段")


def test_unknown_protected_field__error() -> None:
    assert_errors(HEAD + "changes: [nmae]\n" + STEPS, f"{PATH}:5:10: 表单“student”没有字段“nmae”（提示：是不是“name”？）")


def test_shape_error__located() -> None:
    assert_errors(HEAD + STEPS.replace("title: 教育局审批", "title: 教育局审批\n    mode: some"), f"{PATH}:8:11: 取值“some”无效（提示：可选：all、any）")


def test_loader_reports_workflow_errors_with_the_rest(tmp_path: Path) -> None:
    root = shutil.copytree(DEFINITIONS, tmp_path / "definitions")
    path = root / "workflows" / "suspend.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("set: {status: 休学}", "set: {statu: 休学}"), encoding="utf-8")
    with pytest.raises(DefinitionErrors) as caught:
        load_definitions(root)
    (error,) = caught.value.errors
    line = 1 + path.read_text(encoding="utf-8").split("set: {statu: 休学}")[0].count("\n")
    assert error.origin.path.endswith("workflows/suspend.yaml") and error.origin.line == line
    assert "没有字段“statu”" in error.message and error.hint == "是不是“status”？"


def test_duplicate_workflow_key__error(tmp_path: Path) -> None:
    root = shutil.copytree(DEFINITIONS, tmp_path / "definitions")
    shutil.copy(root / "workflows" / "suspend.yaml", root / "workflows" / "suspend2.yaml")
    with pytest.raises(DefinitionErrors) as caught:
        load_definitions(root)
    assert "重复的流程键“suspend”" in str(caught.value)
