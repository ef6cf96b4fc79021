"""Conditions and rules as sandboxed Jinja2 expressions, compiled once at load."""
from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Iterable, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.expression_lowering import Unsupported, lower

from engine.errors import did_you_mean
from engine.fields import id_card_birth, id_card_gender
from engine.spec import Expression, Origin


class ExpressionProblem(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def _age(born: Any, on: Any = None) -> int | None:
    if not isinstance(born, dt.date):
        return None
    on = on if isinstance(on, dt.date) else dt.date.today()
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _numbers(args: tuple[Any, ...]) -> list[Any]:
    """The filled numbers among the arguments, lists (a table column) flattened: sum(a, b, c) and sum(col(t, 'x'))."""
    found: list[Any] = []
    for arg in args:
        if isinstance(arg, (list, tuple)):
            found += _numbers(tuple(arg))
        elif arg is not None and not isinstance(arg, bool) and isinstance(arg, (int, float, Decimal)):
            found.append(arg)
    return found


def _sum(*args: Any) -> Any:
    numbers = _numbers(args)
    return sum(numbers) if numbers else None


def _avg(*args: Any) -> Any:
    numbers = _numbers(args)
    if not numbers:
        return None
    total = sum(Decimal(str(n)) if isinstance(n, float) else n for n in numbers)
    return Decimal(total) / len(numbers)


def _min(*args: Any) -> Any:
    numbers = _numbers(args)
    return min(numbers) if numbers else None


def _max(*args: Any) -> Any:
    numbers = _numbers(args)
    return max(numbers) if numbers else None


def _round(value: Any, places: int = 0) -> Any:
    """四舍五入 as schools count it (half up, not Python's half to even)."""
    if value is None:
        return None
    exact = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    rounded = exact.quantize(Decimal(1).scaleb(-int(places)), rounding=ROUND_HALF_UP)
    return int(rounded) if places <= 0 else rounded


def _count(*args: Any) -> int:
    """How many of the arguments are filled (lists counted by their filled items)."""
    total = 0
    for arg in args:
        if isinstance(arg, (list, tuple)):
            total += _count(*arg)
        elif arg is not None and arg != "":
            total += 1
    return total


# The aggregates by name, for figures computed outside an expression (a workflow's figures over child records).
AGGREGATES: Mapping[str, Callable[..., Any]] = {"sum": _sum, "avg": _avg, "min": _min, "max": _max}


def _count_below(limit: Any, *args: Any) -> int:
    """How many of the filled numbers are below `limit`: count_below(60, physics, chemistry) = failed subjects."""
    return sum(1 for n in _numbers(args) if n < limit)


def _column(rows: Any, key: str) -> list[Any]:
    """One column of a table field's rows: col(family, 'age')."""
    if not isinstance(rows, (list, tuple)):
        return []
    return [row.get(key) for row in rows if isinstance(row, Mapping)]


def _functions() -> dict[str, Callable[..., Any]]:
    return {
        "id_card_birth": id_card_birth,
        "id_card_gender": id_card_gender,
        "today": dt.date.today,
        "age": _age,
        "len": lambda value: len(value) if value is not None else 0,
        "round": _round,
        "sum": _sum,
        "avg": _avg,
        "min": _min,
        "max": _max,
        "count": _count,
        "count_below": _count_below,
        "col": _column,
    }


class ExpressionCompiler:
    """Compiles expression text against a known set of names (a form's fields)."""

    def __init__(self) -> None:
        # Immutable sandbox: no attribute writes, no mutating methods, no access to internals.
        self.env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self.functions = _functions()
        self.env.globals.clear()
        self.env.globals.update(self.functions)

    def compile(
        self, source: Any, known: Iterable[str], origin: Origin | None, samples: Mapping[str, Any],
        boolean: bool = True,
    ) -> Expression:
        """Compile; a condition (`boolean`) is proved boolean: evaluating it with sample values must give True or
        False. A value (a computed field's `compute`) must evaluate with the sample values without an error."""
        if not isinstance(source, str) or not source.strip():
            raise ExpressionProblem("表达式不能为空", "例如 gender == '女'")
        text = source.strip()
        if "{{" in text or "{%" in text:
            raise ExpressionProblem("表达式不要用 {{ }} 或 {% %} 包起来", f"直接写 {text.strip('{}% ')}")
        try:
            tree = self.env.parse("{{ (" + text + ") }}")
        except TemplateSyntaxError as exc:
            raise ExpressionProblem(f"表达式语法错误：{exc.message}", "检查括号、引号和比较运算符（==、!=、<、>）")
        # Every name, not just Jinja's "undeclared" ones: `self` would otherwise reach the template object.
        names = {node.name for node in tree.find_all(nodes.Name)}
        known = set(known)
        called = {node.node.name for node in tree.find_all(nodes.Call) if isinstance(node.node, nodes.Name)}
        shadowed = sorted(n for n in called if n in known and n in self.functions)
        if shadowed:
            raise ExpressionProblem(f"字段“{shadowed[0]}”与函数 {shadowed[0]}() 同名，表达式里无法调用这个函数",
                                    "给该字段换一个键（可用 renamed_from 保留已存的数据），例如 average")
        unknown_calls = sorted(n for n in called if n not in self.functions)
        if unknown_calls:
            close = did_you_mean(unknown_calls[0], self.functions)
            raise ExpressionProblem(
                f"表达式调用了不存在的函数“{unknown_calls[0]}()”",
                (close + " " if close else "")
                + f"可用函数：{'、'.join(f'{name}()' for name in self.functions)}；四则运算直接写 + - * / // %",
            )
        unknown = sorted(n for n in names if n not in known and n not in self.functions)
        if unknown:
            raise ExpressionProblem(
                f"表达式引用了不存在的字段“{unknown[0]}”",
                did_you_mean(unknown[0], known | set(self.functions)) or f"可用字段：{'、'.join(sorted(known))}",
            )
        if any(_private(node) for node in tree.find_all((nodes.Getattr, nodes.Getitem))):
            # Refused here, not left to the sandbox: a branch the sample values skip would fail only at run time.
            raise ExpressionProblem("表达式不能访问以下划线开头的内部属性", "只比较字段的值，例如 gender == '女'")
        if any(isinstance(n, (nodes.Filter, nodes.Test)) and n.name not in _ALLOWED_FILTERS for n in tree.find_all((nodes.Filter, nodes.Test))):
            raise ExpressionProblem("表达式中使用了不支持的过滤器或测试", f"可用：{'、'.join(sorted(_ALLOWED_FILTERS))}")
        field_names = frozenset(names & known)
        evaluate = self._lowered(tree, field_names) or self._jinja(text, field_names)

        if boolean:
            self._prove_boolean(text, evaluate, field_names, samples)
        else:
            self._prove_value(evaluate, field_names, samples)
        return Expression(source=text, names=field_names, evaluate=evaluate, origin=origin)

    def _lowered(self, tree: nodes.Template, field_names: frozenset[str]) -> Callable[[Mapping[str, Any]], Any] | None:
        """The expression as Python closures over the same sandbox (see expression_lowering), or None
        when it uses a construct only Jinja's own code generator handles."""
        try:
            return lower(_expression_of(tree), self.env, field_names, self.functions)
        except Unsupported:
            return None

    def _jinja(self, text: str, field_names: frozenset[str]) -> Callable[[Mapping[str, Any]], Any]:
        compiled = self.env.compile_expression(text, undefined_to_none=False)

        def evaluate(values: Mapping[str, Any]) -> Any:
            context = {name: values.get(name) for name in field_names}
            return compiled(**context)

        return evaluate

    @staticmethod
    def _prove_value(evaluate: Callable, names: frozenset[str], samples: Mapping[str, Any]) -> None:
        try:
            evaluate({n: samples.get(n) for n in names})
        except (TypeError, UndefinedError, SecurityError, ValueError, AttributeError, ArithmeticError) as exc:
            raise ExpressionProblem(f"表达式无法计算：{exc}", "参与运算的字段类型要一致，例如数字和数字；合计用 sum(a, b)，平均用 avg(a, b)")

    @staticmethod
    def _prove_boolean(text: str, evaluate: Callable, names: frozenset[str], samples: Mapping[str, Any]) -> None:
        try:
            result = evaluate({n: samples.get(n) for n in names})
        except (TypeError, UndefinedError, SecurityError, ValueError, AttributeError, ArithmeticError) as exc:
            raise ExpressionProblem(f"表达式无法计算：{exc}", "比较的两边类型要一致，例如日期和日期、数字和数字")
        if not isinstance(result, bool):
            raise ExpressionProblem(
                f"表达式的结果应为“是/否”，实际得到 {type(result).__name__}",
                "用比较运算得到真假，例如 x != none 或 x == '是'",
            )


def _expression_of(tree: nodes.Template) -> nodes.Expr:
    """The expression inside the `{{ (…) }}` that compile() parsed."""
    output = tree.body[0]
    assert isinstance(output, nodes.Output) and len(output.nodes) == 1
    return output.nodes[0]


def _private(node: nodes.Getattr | nodes.Getitem) -> bool:
    name = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
    return isinstance(name, str) and name.startswith("_")


_ALLOWED_FILTERS = frozenset({"length", "lower", "upper", "trim", "int", "float", "string", "none", "in", "number"})


def holds(expression: Expression | None, values: Mapping[str, Any], default: bool = False) -> bool:
    """Evaluate a compiled condition at run time; a comparison with an empty value counts as false."""
    if expression is None:
        return default
    try:
        return expression.evaluate(values) is True
    except (TypeError, ValueError, ArithmeticError, UndefinedError, SecurityError, AttributeError):
        return False


def value_of(expression: Expression, values: Mapping[str, Any]) -> Any:
    """A computed field's value: None when a value it needs is missing or the arithmetic cannot be done with what
    the record holds (a computed total of nine subjects with one empty is empty; sum() and avg() skip empties)."""
    try:
        return expression.evaluate(values)
    except (TypeError, ValueError, ArithmeticError, UndefinedError, SecurityError, AttributeError):
        return None
