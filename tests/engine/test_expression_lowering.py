"""Lowered expressions (Python closures) answer exactly as Jinja's compiled expressions do, sandbox included."""
from __future__ import annotations

import datetime as dt
import itertools

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from engine.expression_lowering import Unsupported, lower
from engine.expressions import ExpressionCompiler, _expression_of

FIELDS = frozenset({"gender", "name", "birth_date", "id_card", "score", "hobbies", "age"})
VALUES = {
    "gender": ["男", "女", None],
    "name": ["张三", "", None],
    "birth_date": [dt.date(2010, 3, 5), None],
    "id_card": ["11010519491231002X", "110105194912310021", None],
    "score": [0, 7, 2.5, None],
    "hobbies": [["篮球"], [], None],
    "age": [12, None],  # a field named like a function: the field wins, as in Jinja
}
EXPRESSIONS = [
    "gender == '女'",
    "gender != none and name != ''",
    "not (gender == '男' or score > 3)",
    "score >= 1 and score < 5",
    "0 < score < 5",
    "1 < score <= 7 != 3",
    "score + 1 == 8",
    "score * 2 - 1 > 3",
    "score / 2 >= 1",
    "score // 2 == 3",
    "score % 2 == 1",
    "-score < 0",
    "+score == score",
    "score ** 2 > 10",
    "'篮球' in hobbies",
    "'足球' not in hobbies",
    "gender in ['男', '女']",
    "gender in ('男',)",
    "name ~ '同学' == '张三同学'",
    "(score if gender == '男' else 0) > 1",
    "id_card_birth(id_card) == birth_date",
    "id_card_gender(id_card) == gender",
    "birth_date.year == 2010",
    "birth_date.month > 2 and birth_date.nosuch == 1",
    "hobbies[0] == '篮球'",
    "age == 12",
    "len(name) > 1",
    "birth_date < today()",
]


@pytest.fixture(scope="module")
def compiler() -> ExpressionCompiler:
    return ExpressionCompiler()


def _outcome(evaluate, values):
    try:
        return ("value", evaluate(values))
    except (TypeError, ValueError, AttributeError, UndefinedError, SecurityError) as exc:
        return ("error", type(exc).__name__)


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_lowered_equals_jinja__every_value_combination(compiler, source) -> None:
    fields = FIELDS
    lowered = lower(_expression_of(compiler.env.parse("{{ (" + source + ") }}")), compiler.env, fields, compiler.functions)
    jinja = compiler._jinja(source, fields)
    keys = sorted(VALUES)
    for combination in itertools.product(*(VALUES[k] for k in keys)):
        values = dict(zip(keys, combination))
        assert _outcome(lowered, values) == _outcome(jinja, values), (source, values)


@pytest.mark.parametrize("source", [
    "name | length > 1",
    "name is none",
    "name[1:] == 'x'",
    "name.upper() == 'X'",
    "'{0}'.format(name) == 'x'",
    "len(value=name) > 1",
    "(1 if name) == 1",
])
def test_constructs_left_to_jinja__unsupported(compiler, source) -> None:
    with pytest.raises(Unsupported):
        lower(_expression_of(compiler.env.parse("{{ (" + source + ") }}")), compiler.env, FIELDS, compiler.functions)


@pytest.mark.parametrize("source", ["name | length > 1", "name is none"])
def test_unsupported_construct__still_compiles_through_jinja(compiler, source) -> None:
    expression = compiler.compile(source, FIELDS, None, {"name": "示例"})
    assert expression.evaluate({"name": "张三"}) is (source != "name is none")


def test_internal_attribute_at_run_time__refused_by_the_sandbox(compiler) -> None:
    # compile() refuses names starting with "_" up front; the lowered getattr still goes through the sandbox.
    lowered = lower(_expression_of(compiler.env.parse("{{ (name.mro == 1) }}")), compiler.env, FIELDS, compiler.functions)
    assert _outcome(lowered, {"name": str}) == _outcome(compiler._jinja("name.mro == 1", FIELDS), {"name": str})
