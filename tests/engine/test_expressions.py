"""Conditions and rules: sandboxed Jinja2 expressions over field values, proven boolean at load."""
from __future__ import annotations

import datetime as dt

import pytest

from engine.expressions import ExpressionCompiler, ExpressionProblem, holds
from engine.spec import Expression

KNOWN = ("gender", "name", "birth_date", "id_card", "hobbies")
SAMPLES = {"gender": "男", "name": "示例", "birth_date": dt.date(2010, 3, 5), "id_card": "11010519491231002X", "hobbies": ["篮球"]}
PUBLISHED_ID = "11010519491231002X"  # GB 11643-1999 example: born 1949-12-31, female


@pytest.fixture(scope="module")
def compiler() -> ExpressionCompiler:
    return ExpressionCompiler()


def compile_(compiler: ExpressionCompiler, source: str) -> Expression:
    return compiler.compile(source, KNOWN, None, SAMPLES)


def problem(compiler: ExpressionCompiler, source: str) -> ExpressionProblem:
    with pytest.raises(ExpressionProblem) as caught:
        compile_(compiler, source)
    return caught.value


# --- the sandbox --------------------------------------------------------------------------------

@pytest.mark.parametrize("source", [
    "gender.__class__ == 'str'",
    "gender.__class__.__mro__[1].__subclasses__() != none",
    "name['__class__'] == 'x'",
    "name.__len__() == 2",
])
def test_internal_attribute__error(compiler, source) -> None:
    assert problem(compiler, source).message == "表达式不能访问以下划线开头的内部属性"


def test_internal_attribute_behind_false_branch__error(compiler) -> None:
    # The sample gender is '男', so evaluating with samples never reaches the attribute; it is refused anyway.
    assert problem(compiler, "gender == '女' and name.__class__ == 'x'").message == "表达式不能访问以下划线开头的内部属性"


def test_internal_attribute_in_format_string__error(compiler) -> None:
    assert "unsafe" in problem(compiler, "'{0.__class__}'.format(name) == 'x'").message


def test_mutating_method__error(compiler) -> None:
    assert "unsafe" in problem(compiler, "hobbies.append('x') == none").message


@pytest.mark.parametrize("name", ["range", "cycler", "lipsum", "joiner", "namespace", "self", "loop"])
def test_jinja_globals_and_specials__unknown(compiler, name) -> None:
    assert problem(compiler, f"{name} != none").message == f"表达式引用了不存在的字段“{name}”"


def test_attr_filter__error(compiler) -> None:
    assert problem(compiler, "name|attr('upper') != none").message == "表达式中使用了不支持的过滤器或测试"


def test_allowed_filter__ok(compiler) -> None:
    assert compile_(compiler, "name|length > 1").evaluate({"name": "张三"}) is True


def test_braces__error(compiler) -> None:
    found = problem(compiler, "{{ gender == '女' }}")
    assert found.message == "表达式不要用 {{ }} 或 {% %} 包起来"
    assert found.hint == "直接写 gender == '女'"


def test_statement_braces__error(compiler) -> None:
    assert problem(compiler, "{% if gender %}true{% endif %}").message == "表达式不要用 {{ }} 或 {% %} 包起来"


@pytest.mark.parametrize("source", ["", "   ", None, 1])
def test_empty_or_not_text__error(compiler, source) -> None:
    assert problem(compiler, source).message == "表达式不能为空"


def test_not_boolean__error(compiler) -> None:
    assert problem(compiler, "gender").message == "表达式的结果应为“是/否”，实际得到 str"


def test_type_mismatch_with_sample__error(compiler) -> None:
    assert problem(compiler, "birth_date > 5").message.startswith("表达式无法计算：")


def test_syntax_error__error(compiler) -> None:
    assert problem(compiler, "gender = '女'").message.startswith("表达式语法错误：")


def test_unknown_name__error_with_hint(compiler) -> None:
    found = problem(compiler, "gendr == '女'")
    assert (found.message, found.hint) == ("表达式引用了不存在的字段“gendr”", "是不是“gender”？")


# --- functions ------------------------------------------------------------------------------------

def test_id_card_birth__matches(compiler) -> None:
    expression = compile_(compiler, "id_card_birth(id_card) == birth_date")
    assert holds(expression, {"id_card": PUBLISHED_ID, "birth_date": dt.date(1949, 12, 31)})
    assert not holds(expression, {"id_card": PUBLISHED_ID, "birth_date": dt.date(1949, 12, 30)})


def test_id_card_gender__from_17th_digit(compiler) -> None:
    expression = compile_(compiler, "id_card_gender(id_card) == gender")
    assert holds(expression, {"id_card": PUBLISHED_ID, "gender": "女"})
    assert not holds(expression, {"id_card": PUBLISHED_ID, "gender": "男"})


def test_id_card_functions__invalid_number_gives_none(compiler) -> None:
    expression = compile_(compiler, "id_card_birth(id_card) == none and id_card_gender(id_card) == none")
    assert holds(expression, {"id_card": "110105194912310021"})  # wrong check digit


def test_age__whole_years(compiler) -> None:
    expression = compile_(compiler, "age(birth_date) >= 6")
    six_today = dt.date.today().replace(year=dt.date.today().year - 6)
    assert holds(expression, {"birth_date": six_today})
    assert not holds(expression, {"birth_date": six_today + dt.timedelta(days=1)})


def test_today__is_today(compiler) -> None:
    expression = compile_(compiler, "birth_date <= today()")
    assert holds(expression, {"birth_date": dt.date.today()})
    assert not holds(expression, {"birth_date": dt.date.today() + dt.timedelta(days=1)})


def test_len__counts_and_treats_empty_as_zero(compiler) -> None:
    expression = compile_(compiler, "len(hobbies) >= 2")
    assert holds(expression, {"hobbies": ["篮球", "足球"]})
    assert not holds(expression, {"hobbies": ["篮球"]})
    assert compile_(compiler, "len(hobbies) == 0").evaluate({"hobbies": None}) is True


# --- run time ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["birth_date < today()", "age(birth_date) >= 6", "birth_date > birth_date"])
def test_comparison_with_empty_value__false(compiler, source) -> None:
    assert holds(compile_(compiler, source), {"birth_date": None}) is False


def test_equality_with_empty_value__false(compiler) -> None:
    assert holds(compile_(compiler, "gender == '女'"), {}) is False


def test_no_expression__default(compiler) -> None:
    assert holds(None, {}, default=True) is True
    assert holds(None, {}) is False


def test_names__fields_only(compiler) -> None:
    expression = compile_(compiler, "id_card_gender(id_card) == gender and age(birth_date) > 3 and len(name) > 1")
    assert expression.names == frozenset({"id_card", "gender", "birth_date", "name"})


def test_source__kept_stripped(compiler) -> None:
    assert compile_(compiler, "  gender == '女'  ").source == "gender == '女'"


def test_evaluate__sees_only_its_own_names(compiler) -> None:
    expression = compile_(compiler, "gender == '女'")
    assert expression.evaluate({"gender": "女", "name": object()}) is True


def test_sandbox_refusal_at_run_time__false(compiler) -> None:
    # Format strings are only checked by the sandbox when they run; a refusal then is "no", not a crash.
    expression = compile_(compiler, "gender == '女' and '{0.__class__}'.format(name) == 'x'")
    assert holds(expression, {"gender": "女", "name": "张三"}) is False


# --- arithmetic, as docs/definitions.md (条件与表达式 › 写法) shows it -----------------------------------------------

ARITHMETIC = {"score_a": 40, "score_b": 35, "score_total": 75, "count": 4, "enrol_year": 2016,
              "id_card": "110105200805120018"}


@pytest.mark.parametrize(("source", "expected"), [
    ("score_total == score_a + score_b", True),
    ("enrol_year - id_card_birth(id_card).year >= 6", True),
    ("count % 2 == 0", True),
    ("score_a * 2 - score_b // 5 == 73", True),
    ("score_total / count > 20", False),
])
def test_arithmetic__documented_forms(compiler, source, expected) -> None:
    expression = compiler.compile(source, tuple(ARITHMETIC), None, ARITHMETIC)
    assert holds(expression, ARITHMETIC) is expected


def test_unknown_function__named_as_a_function(compiler) -> None:
    found = problem(compiler, "floor(gender) == 1")
    assert found.message == "表达式调用了不存在的函数“floor()”" and found.hint.startswith("可用函数：id_card_birth()")
