"""Load-time checks of `on_approve.hand_over` and an optional `choose_unit`: located errors with hints."""
from __future__ import annotations

import textwrap

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
application:
  fields:
    - {key: destination, label: 去向, type: choice, options: [升学, 就业], required: true}
steps:
  - key: bureau
    title: 教育局审批
    assignees: [{role: bureau, unit: record_unit.district}]
"""
CHOICE = """\
choose_unit: {label: 升入学校, level: school, required: false}
"""


def compile_yaml(text: str) -> WorkflowSpec:
    return compile_source(textwrap.dedent(text), PATH, DEFS)


def errors_of(text: str) -> list[str]:
    with pytest.raises(DefinitionErrors) as caught:
        compile_yaml(text)
    return [str(e) for e in caught.value.errors]


def test_shipped_graduation__hands_over_to_the_chosen_school() -> None:
    graduate = DEFS.workflows["graduate"]
    hand = graduate.effects.hand_over
    assert hand is not None and hand.confirm_by == "registrar" and dict(hand.on_confirm) == {"status": "在读"}
    assert hand.when is not None and hand.when.source == "destination == '升学'"
    assert graduate.unit_choice is not None and graduate.unit_choice.level == "school"
    assert not graduate.unit_choice.required


def test_hand_over__ok() -> None:
    spec = compile_yaml(HEAD + CHOICE + "on_approve:\n  hand_over: {to: chosen_unit, confirm_by: registrar}\n")
    assert spec.effects.hand_over is not None and spec.effects.hand_over.when is None
    assert DEFS.workflows["transfer"].unit_choice.required  # the default stays: a unit must be chosen


def test_hand_over__without_choose_unit__error() -> None:
    shown = errors_of(HEAD + "on_approve:\n  hand_over: {to: chosen_unit, confirm_by: registrar}\n")
    assert f"{PATH}:13:19: hand_over 的 to: chosen_unit 需要流程有 choose_unit（提示：加上 choose_unit" in shown[0]


def test_hand_over__unknown_role__error() -> None:
    shown = errors_of(HEAD + CHOICE + "on_approve:\n  hand_over: {to: chosen_unit, confirm_by: registar}\n")
    assert shown == [f"{PATH}:14:44: 未知的角色“registar”（提示：是不是“registrar”？）"]


def test_hand_over__bad_on_confirm_value__error() -> None:
    text = HEAD + CHOICE + "on_approve:\n  hand_over:\n    to: chosen_unit\n    confirm_by: registrar\n    on_confirm:\n      set: {status: 入学}\n"
    shown = errors_of(text)
    assert shown == [f"{PATH}:18:21: “入学”不是字段“学籍状态”的有效值（提示：可选：在读、休学、转出、退学、毕业）"]


def test_hand_over__condition_names_checked() -> None:
    text = HEAD + CHOICE + "on_approve:\n  hand_over: {to: chosen_unit, confirm_by: registrar, when: \"destinaton == '升学'\"}\n"
    shown = errors_of(text)
    assert shown == [f"{PATH}:14:61: 表达式引用了不存在的字段“destinaton”（提示：是不是“destination”？）"]


def test_hand_over_with_move_to__error() -> None:
    text = HEAD + CHOICE.replace("level: school", "level: class") + \
        "on_approve:\n  move_to: chosen_unit\n  hand_over: {to: chosen_unit, confirm_by: registrar}\n"
    assert any("move_to 与 hand_over 不能同时使用" in e for e in errors_of(text))


def test_hand_over__shape_checked() -> None:
    shown = errors_of(HEAD + CHOICE + "on_approve:\n  hand_over: {to: record_unit, confirm_by: registrar}\n")
    assert shown == [f"{PATH}:14:19: 取值“record_unit”无效（提示：是不是“chosen_unit”？）"]


# --- hand_over.on_confirm.create: compiled as on_approve.create is ----------------------------------------------
CONFIRM = HEAD + CHOICE + """\
on_approve:
  hand_over:
    to: chosen_unit
    confirm_by: registrar
    on_confirm:
      create:
        - form: status_change
          link: student
          unit: chosen_unit.school
          compute: {name: "record.name", kind: "'升学转入'", date: "today()"}
"""


def located(text: str, needle: str) -> str:
    """`path:line:column` of `needle` in the workflow text."""
    before = text[:text.index(needle)]
    return f"{PATH}:{before.count(chr(10)) + 1}:{len(before) - before.rfind(chr(10))}"


def test_shipped_graduation__the_receiver_registers_a_status_change_on_confirm() -> None:
    (made,) = DEFS.workflows["graduate"].effects.hand_over.create
    assert (made.form, made.link, made.unit.source) == ("status_change", "student", "chosen_unit.school")
    assert made.compute["kind"].source == "'升学转入'"
    assert "升学转入" in [o.value for o in DEFS.forms["status_change"].fields["kind"].kind.options]


def test_on_confirm_create__ok() -> None:
    (made,) = compile_yaml(CONFIRM).effects.hand_over.create
    assert (made.form, made.link, made.unit.side, made.unit.level) == ("status_change", "student", "chosen_unit", "school")
    assert set(made.compute) == {"name", "kind", "date"}


def test_on_confirm_create__not_a_link_field__error() -> None:
    text = CONFIRM.replace("link: student", "link: name")
    (shown,) = errors_of(text)
    assert shown.startswith(f"{located(text, 'name' + chr(10))}: “name”不是表单“status_change”中关联到“student”的 link 字段")


def test_on_confirm_create__unknown_form__error() -> None:
    text = CONFIRM.replace("form: status_change", "form: status_chang")
    assert errors_of(text) == [f"{located(text, 'status_chang')}: 未知的表单“status_chang”（提示：是不是“status_change”？）"]


def test_on_confirm_create__unit_of_another_level__error() -> None:
    text = CONFIRM.replace("unit: chosen_unit.school", "unit: record_unit.class")
    assert errors_of(text) == [f"{located(text, 'record_unit.class')}: 表单“status_change”的记录属于“school”层级的单位，"
                               f"这里是“class”（提示：写 record_unit.school）"]


def test_on_confirm_create__expression_names_checked() -> None:
    text = CONFIRM.replace('"record.name"', '"record.nam"')
    (shown,) = errors_of(text)
    assert shown.startswith(located(text, '"record.nam"')) and "“record”没有字段“nam”" in shown


def test_on_confirm_create__shape_checked() -> None:
    text = CONFIRM.replace("      create:\n", "      create:\n        - {form: status_change, place: here}\n")
    assert errors_of(text) == [f"{located(text, 'place')}: 不认识的键“place”（提示：可用的键：form、compute、link、unit）"]


# --- choose_unit.when over unit.below.<level> --------------------------------------------------------------------
def test_unit_below__ok() -> None:
    text = HEAD + CHOICE.replace("required: false}", "required: false, when: \"'高一' in unit.below.grade\"}")
    choice = compile_yaml(text).unit_choice
    assert choice.reads_below and choice.when.source == "'高一' in unit.below.grade"
    assert not DEFS.workflows["transfer"].unit_choice.reads_below  # unit.grade of a class: nothing gathered


def test_shipped_graduation__offers_schools_with_the_next_grade() -> None:
    choice = DEFS.workflows["graduate"].unit_choice
    assert choice.reads_below and "'高一' in unit.below.grade" in choice.when.source


def test_unit_below__misspelt_level__error() -> None:
    text = HEAD + CHOICE.replace("required: false}", "required: false, when: \"'高一' in unit.below.grad\"}")
    assert errors_of(text) == [f"{located(text, chr(34) + chr(39) + '高一')}: “unit.below”没有组织层级“grad”（提示：是不是“grade”？）"]


def test_unit_below__a_level_not_below_the_choice__error() -> None:
    text = HEAD + CHOICE.replace("required: false}", "required: false, when: \"'一中' in unit.below.school\"}")
    assert errors_of(text) == [f"{located(text, chr(34) + chr(39) + '一中')}: “unit.below”没有组织层级“school”（提示：可用：grade、class）"]


def test_unit_below__the_lowest_level_has_nothing_below__error() -> None:
    text = HEAD + CHOICE.replace("level: school, required: false}", "level: class, required: false, when: \"'x' in unit.below.class\"}")
    (shown,) = errors_of(text)
    assert "“unit.below”没有组织层级“class”（提示：“class”是最低一级，其下没有单位）" in shown
