"""Definition expressions as Python closures, built from the Jinja2 syntax tree without `eval`.

Why: a rule or condition runs for every record saved and every row of an import (four per student row,
so 400,000 calls for a district file). Jinja's compiled expression builds a template context per call,
which costs more than the comparison itself. Lowering the tree once into nested closures does the same
work directly.

The sandbox is the same one: attribute and item access go through the ImmutableSandboxedEnvironment's
`getattr`/`getitem` (which refuse internals and return its StrictUndefined for what is missing), and the
only callables are the compiler's own functions, called by name. Anything else — filters, tests, method
calls, slices, keyword arguments — raises `Unsupported`, and the compiler keeps Jinja's own compiled
expression for that text. tests/engine/test_expression_lowering.py checks both give the same answers.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Mapping

from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

Values = Mapping[str, Any]
Closure = Callable[[Values], Any]


class Unsupported(Exception):
    """A construct this module does not lower; Jinja's compiled expression is used instead."""


_COMPARE: Mapping[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gteq": operator.ge,
    "lt": operator.lt,
    "lteq": operator.le,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}

_BINARY: Mapping[type, Callable[[Any, Any], Any]] = {
    nodes.Add: operator.add,
    nodes.Sub: operator.sub,
    nodes.Mul: operator.mul,
    nodes.Div: operator.truediv,
    nodes.FloorDiv: operator.floordiv,
    nodes.Mod: operator.mod,
    nodes.Pow: operator.pow,
}


class _Lowering:
    def __init__(self, env: SandboxedEnvironment, fields: frozenset[str], functions: Mapping[str, Callable[..., Any]]) -> None:
        self.env, self.fields, self.functions = env, fields, functions

    def node(self, node: nodes.Node) -> Closure:
        lowering = _LOWERINGS.get(type(node))
        if lowering is None:
            raise Unsupported(type(node).__name__)
        return lowering(self, node)

    # One method per node type, registered in _LOWERINGS below.
    def const(self, node: nodes.Const) -> Closure:
        value = node.value
        return lambda _values: value

    def name(self, node: nodes.Name) -> Closure:
        key = node.name
        if key in self.fields:  # a field shadows a function of the same name, as context beats globals in Jinja
            return lambda values: values.get(key)
        if key in self.functions:
            function = self.functions[key]
            return lambda _values: function
        raise Unsupported(f"name {key}")

    def sequence(self, node: nodes.List | nodes.Tuple) -> Closure:
        items = tuple(self.node(item) for item in node.items)
        build = list if isinstance(node, nodes.List) else tuple
        return lambda values: build(item(values) for item in items)

    def compare(self, node: nodes.Compare) -> Closure:
        first = self.node(node.expr)
        steps = tuple((_COMPARE[op.op], self.node(op.expr)) for op in node.ops)
        if len(steps) == 1:
            (test, right), = steps
            return lambda values: test(first(values), right(values))

        def chained(values: Values) -> bool:  # a < b < c: each side evaluated once, stop at the first false
            left = first(values)
            for test, operand in steps:
                right = operand(values)
                if not test(left, right):
                    return False
                left = right
            return True

        return chained

    def and_(self, node: nodes.And) -> Closure:
        left, right = self.node(node.left), self.node(node.right)
        return lambda values: left(values) and right(values)

    def or_(self, node: nodes.Or) -> Closure:
        left, right = self.node(node.left), self.node(node.right)
        return lambda values: left(values) or right(values)

    def not_(self, node: nodes.Not) -> Closure:
        inner = self.node(node.node)
        return lambda values: not inner(values)

    def neg(self, node: nodes.Neg) -> Closure:
        inner = self.node(node.node)
        return lambda values: -inner(values)

    def pos(self, node: nodes.Pos) -> Closure:
        inner = self.node(node.node)
        return lambda values: +inner(values)

    def binary(self, node: nodes.BinExpr) -> Closure:
        if node.operator in self.env.intercepted_binops:
            raise Unsupported(node.operator)
        apply, left, right = _BINARY[type(node)], self.node(node.left), self.node(node.right)
        return lambda values: apply(left(values), right(values))

    def concat(self, node: nodes.Concat) -> Closure:
        parts = tuple(self.node(part) for part in node.nodes)
        return lambda values: "".join(str(part(values)) for part in parts)

    def conditional(self, node: nodes.CondExpr) -> Closure:
        if node.expr2 is None:  # `a if b` without else yields Jinja's Undefined; leave that to Jinja
            raise Unsupported("if without else")
        test, then, otherwise = self.node(node.test), self.node(node.expr1), self.node(node.expr2)
        return lambda values: then(values) if test(values) else otherwise(values)

    def getattr_(self, node: nodes.Getattr) -> Closure:
        inner, attribute, getattr_ = self.node(node.node), node.attr, self.env.getattr
        return lambda values: getattr_(inner(values), attribute)

    def getitem(self, node: nodes.Getitem) -> Closure:
        if isinstance(node.arg, nodes.Slice):
            raise Unsupported("slice")
        inner, key, getitem = self.node(node.node), self.node(node.arg), self.env.getitem
        return lambda values: getitem(inner(values), key(values))

    def call(self, node: nodes.Call) -> Closure:
        if not isinstance(node.node, nodes.Name) or node.node.name in self.fields or node.node.name not in self.functions:
            raise Unsupported("call of something other than a known function")
        if node.kwargs or node.dyn_args is not None or node.dyn_kwargs is not None:
            raise Unsupported("keyword or unpacked arguments")
        function = self.functions[node.node.name]
        args = tuple(self.node(arg) for arg in node.args)
        if len(args) == 1:
            (only,) = args
            return lambda values: function(only(values))
        return lambda values: function(*(arg(values) for arg in args))


_LOWERINGS: Mapping[type, Callable[[_Lowering, Any], Closure]] = {
    nodes.Const: _Lowering.const,
    nodes.Name: _Lowering.name,
    nodes.List: _Lowering.sequence,
    nodes.Tuple: _Lowering.sequence,
    nodes.Compare: _Lowering.compare,
    nodes.And: _Lowering.and_,
    nodes.Or: _Lowering.or_,
    nodes.Not: _Lowering.not_,
    nodes.Neg: _Lowering.neg,
    nodes.Pos: _Lowering.pos,
    nodes.Concat: _Lowering.concat,
    nodes.CondExpr: _Lowering.conditional,
    nodes.Getattr: _Lowering.getattr_,
    nodes.Getitem: _Lowering.getitem,
    nodes.Call: _Lowering.call,
    **{kind: _Lowering.binary for kind in _BINARY},
}


def lower(expression: nodes.Expr, env: SandboxedEnvironment, fields: frozenset[str],
          functions: Mapping[str, Callable[..., Any]]) -> Closure:
    """A function of a record's values computing `expression`; raises Unsupported (see the module doc)."""
    return _Lowering(env, fields, functions).node(expression)
