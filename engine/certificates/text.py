"""The certificate's text: a Jinja2 template in the sandbox, its names checked and tried with samples at load."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Callable, Collection, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import did_you_mean

# Names every certificate text may use besides its fields.
BUILTINS = {"number": "证书编号", "school": "学校名称", "issued_on": "颁发日期", "title": "证书名称"}
_ISO_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")


class TextProblem(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def cn_date(value: Any) -> str:
    """"2026-07-01" (or a date) → "2026年7月1日"; anything else unchanged."""
    if isinstance(value, dt.date):
        return f"{value.year}年{value.month}月{value.day}日"
    found = _ISO_DATE.match(str(value))
    if found is None:
        return str(value)
    return f"{found[1]}年{int(found[2])}月{int(found[3])}日"


def _environment() -> ImmutableSandboxedEnvironment:
    # Immutable sandbox, as for conditions: no attribute writes, no mutating methods, no internals; no globals.
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.globals.clear()
    env.filters["cn_date"] = cn_date
    return env


ENVIRONMENT = _environment()


def compile_text(source: str, known: Collection[str], samples: Mapping[str, str]) -> Callable[[Mapping[str, str]], str]:
    """The template as a function of the certificate's values (text), or TextProblem."""
    try:
        tree = ENVIRONMENT.parse(source)
    except TemplateSyntaxError as exc:
        raise TextProblem(f"证书文字的模板语法错误（第 {exc.lineno} 行）：{exc.message}", "值写成 {{ name }}，过滤器写成 {{ birth_date | cn_date }}")
    names = set(known) | set(BUILTINS)
    unknown = sorted(meta.find_undeclared_variables(tree) - names)
    if unknown:
        raise TextProblem(f"证书文字引用了不存在的值“{unknown[0]}”",
                          did_you_mean(unknown[0], names) or f"可用：{'、'.join(sorted(names))}")
    if any(_private(node) for node in tree.find_all((nodes.Getattr, nodes.Getitem))):
        raise TextProblem("证书文字不能访问以下划线开头的内部属性", "只引用证书字段的值，例如 {{ name }}")
    template = ENVIRONMENT.from_string(tree)

    def render(values: Mapping[str, str]) -> str:
        lines = template.render({name: values.get(name, "") for name in names}).splitlines()
        # Written as a YAML block, the text's line breaks are only for the file: joined without spaces (Chinese
        # text); an empty line starts a new paragraph.
        paragraphs, current = [], []
        for line in lines:
            if line.strip():
                current.append(line.strip())
            elif current:
                paragraphs.append("".join(current))
                current = []
        if current:
            paragraphs.append("".join(current))
        return "\n".join(paragraphs)

    try:
        render(samples)
    except (TypeError, ValueError, UndefinedError, SecurityError, AttributeError) as exc:
        raise TextProblem(f"证书文字无法生成：{exc}", "证书字段的值都是文字；日期可用 cn_date 过滤器写成“2026年7月1日”")
    return render


def _private(node: nodes.Getattr | nodes.Getitem) -> bool:
    name = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
    return isinstance(name, str) and name.startswith("_")
