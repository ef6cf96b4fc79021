"""`clean_record`, the one validator: conversion, constraints, conditions and cross-field rules."""
from __future__ import annotations

import datetime as dt

import pytest

from engine.issues import Issue
from engine.loader import load_definitions
from engine.messages import MESSAGES, render
from engine.spec import FormSpec
from engine.validation import clean_record
from tests.engine.helpers import compile_form
from tests.support import DEFINITIONS, valid_student

FORM = """
key: v
title: 校验
sections:
  - key: main
    title: 主要
    fields:
      - key: name
        label: 姓名
        type: text
        required: true
        min_length: 2
        max_length: 4
        messages: {min_length: "名字太短：{label}至少{limit}个字"}
      - key: code
        label: 代码
        type: text
        pattern: '^[A-Z]{3}$'
        messages: {pattern: 代码应为三个大写字母}
      - key: score
        label: 分数
        type: integer
        min: 0
        max: 100
      - key: reason
        label: 不及格原因
        type: text
        required_if: "score < 60"
      - key: kind
        label: 类别
        type: choice
        options: [普通, 其他]
      - key: other
        label: 其他说明
        type: text
        visible_if: "kind == '其他'"
        required_if: "kind == '其他'"
      - key: start
        label: 开始日期
        type: date
      - key: end
        label: 结束日期
        type: date
rules:
  - key: order
    check: "start <= end"
    message: 结束日期不能早于开始日期
    fields: [end]
"""


@pytest.fixture(scope="module")
def form(tmp_path_factory: pytest.TempPathFactory) -> FormSpec:
    return compile_form(tmp_path_factory.mktemp("validation"), FORM)


@pytest.fixture(scope="module")
def student() -> FormSpec:
    return load_definitions(DEFINITIONS).forms["student"]


def codes(result, key: str) -> list[tuple[str, dict]]:
    return [(i.code, dict(i.params)) for i in result.issues_for(key)]


def text_of(form: FormSpec, issue: Issue) -> str:
    spec = form.fields[issue.path]
    return render(issue, spec.label, spec.messages)


def valid(**changes: str | None) -> dict[str, str | None]:
    return {"name": "张三", **changes}


# --- single fields --------------------------------------------------------------------------------

def test_required__missing(form) -> None:
    result = clean_record(form, {})
    assert result.issues == [Issue("required", path="name")]
    assert "name" in result.required


def test_required__whitespace_is_missing(form) -> None:
    assert codes(clean_record(form, {"name": "  \u3000 "}), "name") == [("required", {})]


def test_valid__no_issues_and_converted(form) -> None:
    result = clean_record(form, valid(score="59", reason="病假", start="2024-03-01", end="2024-03-01"))
    assert result.ok
    assert result.values["score"] == 59 and result.values["start"] == dt.date(2024, 3, 1)


def test_min_length__message_override(form) -> None:
    result = clean_record(form, valid(name="张"))
    (issue,) = result.issues
    assert (issue.code, dict(issue.params), issue.path) == ("min_length", {"limit": 2}, "name")
    assert text_of(form, issue) == "名字太短：姓名至少2个字"


def test_max_length__catalogue_message(form) -> None:
    (issue,) = clean_record(form, valid(name="欧阳大明白")).issues
    assert (issue.code, dict(issue.params)) == ("max_length", {"limit": 4})
    assert text_of(form, issue) == MESSAGES["max_length"].format(label="姓名", limit=4)


def test_pattern__message_override(form) -> None:
    (issue,) = clean_record(form, valid(code="ab1")).issues
    assert (issue.code, issue.path) == ("pattern", "code")
    assert text_of(form, issue) == "代码应为三个大写字母"


def test_pattern__whole_value(form) -> None:
    assert codes(clean_record(form, valid(code="ABCD")), "code") == [("pattern", {"pattern": "^[A-Z]{3}$"})]
    assert clean_record(form, valid(code="ABC")).ok


@pytest.mark.parametrize(("raw", "expected"), [("-1", ("min_value", {"limit": "0"})), ("101", ("max_value", {"limit": "100"}))])
def test_min_max__error(form, raw, expected) -> None:
    assert codes(clean_record(form, valid(score=raw)), "score") == [expected]


def test_conversion_error__no_constraint_issue(form) -> None:
    assert codes(clean_record(form, valid(score="abc")), "score") == [("integer", {})]


# --- conditions -----------------------------------------------------------------------------------

def test_required_if__true_requires(form) -> None:
    result = clean_record(form, valid(score="50"))
    assert codes(result, "reason") == [("required", {})]
    assert "reason" in result.required


def test_required_if__false_optional(form) -> None:
    result = clean_record(form, valid(score="80"))
    assert result.ok and "reason" not in result.required


def test_required_if__empty_operand_is_false(form) -> None:
    assert clean_record(form, valid()).ok


def test_visible_if__hides_and_clears_value(form) -> None:
    result = clean_record(form, valid(kind="普通", other="不该保存"))
    assert result.ok
    assert "other" in result.hidden
    assert result.values["other"] is None


def test_visible_if__hidden_field_issues_dropped(form) -> None:
    # A value that would be too long is not an error while the field is switched off.
    result = clean_record(form, valid(kind=None, other="x" * 10_000))
    assert result.ok and result.values["other"] is None


def test_visible_if__shown_and_required(form) -> None:
    result = clean_record(form, valid(kind="其他"))
    assert "other" not in result.hidden
    assert codes(result, "other") == [("required", {})]
    assert clean_record(form, valid(kind="其他", other="转学")).values["other"] == "转学"


# --- cross-field rules ---------------------------------------------------------------------------------

def test_rule__fires_on_its_fields(form) -> None:
    result = clean_record(form, valid(start="2024-03-02", end="2024-03-01"))
    assert result.issues == [Issue("rule", {"message": "结束日期不能早于开始日期", "rule": "order"}, path="end")]
    assert text_of(form, result.issues[0]) == "结束日期不能早于开始日期"


def test_rule__silent_when_a_field_is_empty(form) -> None:
    assert clean_record(form, valid(start="2024-03-02")).ok


def test_rule__silent_when_a_field_is_invalid(form) -> None:
    result = clean_record(form, valid(start="2024-13-40", end="2024-03-01"))
    assert [(i.code, i.path) for i in result.issues] == [("date", "start")]


def test_all_issues__at_once_in_form_order(form) -> None:
    result = clean_record(form, {"code": "x", "score": "200", "kind": "其他", "start": "2024-03-02", "end": "2024-03-01"})
    assert [(i.path, i.code) for i in result.issues] == [
        ("name", "required"), ("code", "pattern"), ("score", "max_value"), ("other", "required"), ("end", "rule"),
    ]


# --- the shipped student form ------------------------------------------------------------------------------

def student_raw(student: FormSpec, **changes: str) -> dict:
    raw = {key: spec.default for key, spec in student.fields.items()}
    raw.update(valid_student(**changes))
    return raw


def test_student__valid(student) -> None:
    result = clean_record(student, student_raw(student))
    assert result.ok, result.issues


def test_student__id_birth_differs_from_birth_date(student) -> None:
    result = clean_record(student, student_raw(student, birth_date="2008-05-13"))
    rule = {"message": next(r.message for r in student.rules if r.key == "id_card_birth_matches"), "rule": "id_card_birth_matches"}
    # Shown on both fields, in form order (出生日期 comes before 身份证号).
    assert result.issues == [Issue("rule", rule, path="birth_date"), Issue("rule", rule, path="id_card")]


def test_student__gender_digit_mismatch(student) -> None:
    result = clean_record(student, student_raw(student, gender="女"))
    assert {(i.path, i.params["rule"]) for i in result.issues} == {
        ("id_card", "id_card_gender_matches"), ("gender", "id_card_gender_matches"),
    }


def test_student__lowercase_x_normalised(student) -> None:
    result = clean_record(student, student_raw(student, id_card="11010519491231002x", birth_date="1949-12-31", gender="女"))
    assert result.ok, result.issues
    assert result.values["id_card"] == "11010519491231002X"


def test_student__bad_check_digit_not_a_rule_issue(student) -> None:
    result = clean_record(student, student_raw(student, id_card="110105200805120017"))
    assert [(i.path, i.code) for i in result.issues] == [("id_card", "id_card_check")]


def test_student__disability_note_required_when_disabled(student) -> None:
    result = clean_record(student, student_raw(student, health="残疾"))
    assert [(i.path, i.code) for i in result.issues] == [("disability_note", "required")]


def test_student__disability_note_hidden_otherwise(student) -> None:
    result = clean_record(student, student_raw(student, health="健康或良好", disability_note="视力残疾"))
    assert result.ok
    assert "disability_note" in result.hidden and result.values["disability_note"] is None


# --- remembered answers for types whose values repeat (FieldType.repeats) ----------------------------

REPEATS_FORM = """
key: r
title: 重复值
sections:
  - key: main
    title: 主要
    fields:
      - {key: count, label: 人数, type: integer, max: 10}
      - {key: flag, label: 是否, type: boolean}
      - {key: kind, label: 类别, type: choice, options: [普通, 其他]}
      - {key: tags, label: 标签, type: multi_choice, options: [甲, 乙]}
"""


def test_repeated_values__same_answers_as_first_time(tmp_path) -> None:
    form = compile_form(tmp_path, REPEATS_FORM)
    first = [clean_record(form, {"count": v, "flag": v, "kind": "普通"}) for v in (1, True, 1.0, "1", 11)]
    again = [clean_record(form, {"count": v, "flag": v, "kind": "普通"}) for v in (1, True, 1.0, "1", 11)]
    # 1, 1.0 and True are one dict key; they are not one input: an integer field refuses True.
    assert [r.values["count"] for r in first] == [1, None, 1, 1, 11]
    assert [[i.code for i in r.issues] for r in first] == [[], ["integer"], [], [], ["max_value", "boolean"]]
    assert [(r.values, r.issues) for r in again] == [(r.values, r.issues) for r in first]


def test_remembered_issues__callers_may_change_their_lists(tmp_path) -> None:
    form = compile_form(tmp_path, REPEATS_FORM)
    clean_record(form, {"kind": "别的"}).issues.append(Issue("x"))
    assert [i.code for i in clean_record(form, {"kind": "别的"}).issues] == ["choice"]


def test_unhashable_input__cleaned_without_memory(tmp_path) -> None:
    form = compile_form(tmp_path, REPEATS_FORM)
    assert [i.code for i in clean_record(form, {"kind": ["普通"]}).issues] == ["choice"]
    result = clean_record(form, {"tags": ["甲"]})
    result.values["tags"].append("乙")
    assert clean_record(form, {"tags": ["甲"]}).values["tags"] == ["甲"]


# --- issue 15 item 5: personal names outside the basic plane pass the shipped 姓名 pattern ---------------------

@pytest.mark.parametrize("name", ["𠮷田", "张𪚥", "𡈼兰", "王𬭚", "阿依古丽·买买提", "張三", "Zhang San"])
def test_student_name__rare_characters_accepted(student, name: str) -> None:
    assert codes(clean_record(student, student_raw(student, name=name)), "name") == []


@pytest.mark.parametrize("name", ["张3", "李_四", "Tom!"])
def test_student_name__digits_and_symbols_still_refused(student, name: str) -> None:
    assert [c for c, _ in codes(clean_record(student, student_raw(student, name=name)), "name")] == ["pattern"]


# --- issue 15 item 22: a required field the user may not fill says so ----------------------------------------

def test_required_not_writable__named_as_such(form) -> None:
    result = clean_record(form, valid(name=None), writable=frozenset({"code", "score"}))
    assert codes(result, "name") == [("required_not_writable", {})]
    assert "不能查看或填写" in text_of(form, result.issues_for("name")[0])


def test_required_writable__plain_required(form) -> None:
    assert codes(clean_record(form, valid(name=None), writable=frozenset({"name"})), "name") == [("required", {})]


# --- issue 15 item 13: a stored value whose option was deleted must be chosen again ------------------------------

CHOICES = """
key: c
title: 选择
sections:
  - key: main
    title: 主要
    fields:
      - {key: health, label: 健康状况, type: choice, options: [健康, 良好]}
      - {key: sports, label: 运动, type: multi_choice, options: [篮球, 足球]}
"""


@pytest.fixture(scope="module")
def choices(tmp_path_factory: pytest.TempPathFactory) -> FormSpec:
    return compile_form(tmp_path_factory.mktemp("choices"), CHOICES)


def test_removed_option__stored_value_refused_naming_it(choices) -> None:
    stored = {"health": choices.fields["health"].kind.from_json("一般")}
    result = clean_record(choices, stored)
    assert codes(result, "health") == [("choice_removed", {"value": "一般"})]
    assert text_of(choices, result.issues[0]) == "健康状况的原值“一般”已不在选项中，请重新选择"


def test_removed_option__in_a_multi_choice(choices) -> None:
    stored = {"sports": choices.fields["sports"].kind.from_json(["篮球", "排球"])}
    assert codes(clean_record(choices, stored), "sports") == [("choice_removed", {"value": "排球"})]


def test_removed_option__a_current_choice_saves(choices) -> None:
    stored = {"health": choices.fields["health"].kind.from_json("一般")}
    result = clean_record(choices, {**stored, "health": "良好"})
    assert (result.ok, result.values["health"]) == (True, "良好")


def test_removed_option__typed_unknown_value_is_plain_choice_issue(choices) -> None:
    assert codes(clean_record(choices, {"health": "一般"}), "health") == [("choice", {"value": "一般"})]


def test_stored_label__read_as_its_option_not_removed(student) -> None:
    """A list moved from names to codes (民族 "汉族" → "01") still reads what was stored before."""
    assert student.fields["ethnicity"].kind.from_json("汉族") == "01"
