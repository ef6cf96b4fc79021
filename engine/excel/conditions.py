"""Conditions (`required_if`, `visible_if`) in plain Chinese for the 填写说明 sheet: "健康状况 = 残疾"."""
from __future__ import annotations

from typing import Any

from jinja2 import Environment, TemplateSyntaxError, nodes

from engine.spec import Expression, FormSpec

_PARSER = Environment()
_OPERATORS = {"eq": "=", "ne": "≠", "gt": ">", "gteq": "≥", "lt": "<", "lteq": "≤"}


def describe(form: FormSpec, expression: Expression | None) -> str:
    if expression is None:
        return ""
    try:
        tree = _PARSER.parse("{{ (" + expression.source + ") }}")
        node = tree.body[0].nodes[0]  # type: ignore[attr-defined]
        return _node(form, node)
    except (TemplateSyntaxError, _Unreadable, AttributeError, IndexError):
        return expression.source


def required_note(form: FormSpec, key: str) -> str:
    spec = form.fields[key]
    notes = []
    if spec.required_if is not None:
        notes.append(f"当 {describe(form, spec.required_if)} 时必填")
    if spec.visible_if is not None:
        notes.append(f"仅当 {describe(form, spec.visible_if)} 时填写，否则留空")
    return "；".join(notes)


class _Unreadable(Exception):
    pass


def _label(form: FormSpec, node: nodes.Node) -> str:
    if isinstance(node, nodes.Name) and node.name in form.fields:
        return form.fields[node.name].label
    raise _Unreadable


def _value(form: FormSpec, field: nodes.Node, node: nodes.Node) -> str:
    if isinstance(node, nodes.Const):
        return _const(form, field, node.value)
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return "、".join(_value(form, field, item) for item in node.items)
    if isinstance(node, nodes.Name):
        return _label(form, node)
    raise _Unreadable


def _const(form: FormSpec, field: nodes.Node, value: Any) -> str:
    """A constant compared with a field, as that field shows its values: an option's label for its code."""
    kind = form.fields[field.name].kind if isinstance(field, nodes.Name) and field.name in form.fields else None
    if kind is not None and value is not None:
        typed, issues = kind.clean(value)
        if typed is not None and not issues:
            return kind.to_text(typed)
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)


def _node(form: FormSpec, node: nodes.Node) -> str:
    if isinstance(node, nodes.And):
        return f"{_node(form, node.left)} 且 {_node(form, node.right)}"
    if isinstance(node, nodes.Or):
        return f"{_node(form, node.left)} 或 {_node(form, node.right)}"
    if isinstance(node, nodes.Not):
        inner = node.node
        if isinstance(inner, nodes.Name):
            return f"{_label(form, inner)} 为 否"
        return f"并非（{_node(form, inner)}）"
    if isinstance(node, nodes.Name):
        return f"{_label(form, node)} 为 是"
    if isinstance(node, nodes.Compare) and len(node.ops) == 1:
        return _compare(form, node.expr, node.ops[0])
    raise _Unreadable


def _compare(form: FormSpec, left: nodes.Node, operand: nodes.Operand) -> str:
    label = _label(form, left)
    right = operand.expr
    if isinstance(right, nodes.Const) and right.value is None:
        return f"{label} 未填写" if operand.op == "eq" else f"{label} 已填写"
    if operand.op == "in":
        return f"{label} 为 {_value(form, left, right)} 之一"
    if operand.op == "notin":
        return f"{label} 不是 {_value(form, left, right)} 中的任何一个"
    if operand.op in _OPERATORS:
        return f"{label} {_OPERATORS[operand.op]} {_value(form, left, right)}"
    raise _Unreadable
