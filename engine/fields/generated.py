"""Values the system composes from other fields and a sequence, such as 学籍号 "G{id_card}"."""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

from engine.fields.base import FieldType, is_empty
from engine.fields.widgets import Display

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEQUENCE = re.compile(r"seq(?::([0-9]*))?")


class SequenceExhausted(ValueError):
    """Every number of a sequence's declared width is used up for this prefix."""

    def __init__(self, prefix: str, limit: int) -> None:
        super().__init__(f"sequence {prefix!r} exhausted at {limit}")
        self.prefix, self.limit = prefix, limit


class Part(NamedTuple):
    kind: str  # "text" | "field" | "seq"
    value: str | int  # the text, the field key, or the sequence width


def parse_pattern(pattern: str) -> tuple[Part, ...]:
    """"{enrol_year}{seq:5}" -> field enrol_year, seq of width 5; "{{" and "}}" are literal braces."""
    parts: list[Part] = []
    position = 0
    for match in _PLACEHOLDER.finditer(pattern):
        if match.start() > position:
            parts.append(Part("text", pattern[position : match.start()]))
        position = match.end()
        token = match[0]
        if token in ("{{", "}}"):
            parts.append(Part("text", token[0]))
        elif match[1] is None:
            raise ValueError(f"编号模式“{pattern}”中的花括号不成对")
        else:
            parts.append(_placeholder(pattern, match[1].strip()))
    if position < len(pattern):
        parts.append(Part("text", pattern[position:]))
    if sum(part.kind == "seq" for part in parts) > 1:
        raise ValueError(f"编号模式“{pattern}”中只能有一个序号 {{seq:N}}")
    if not parts:
        raise ValueError("自动编号字段须设置 pattern，例如 \"{enrol_year}{seq:5}\"")
    return _merge_text(parts)


def _placeholder(pattern: str, inner: str) -> Part:
    sequence = _SEQUENCE.fullmatch(inner)
    if sequence:
        width = sequence[1]
        if not width or int(width) == 0:
            raise ValueError(f"编号模式“{pattern}”中的序号须写明位数，如 {{seq:5}}")
        return Part("seq", int(width))
    if not _NAME.fullmatch(inner):
        raise ValueError(f"编号模式“{pattern}”中的“{{{inner}}}”应为字段名或 {{seq:N}}")
    return Part("field", inner)


def _merge_text(parts: list[Part]) -> tuple[Part, ...]:
    merged: list[Part] = []
    for part in parts:
        if merged and part.kind == "text" and merged[-1].kind == "text":
            merged[-1] = Part("text", f"{merged[-1].value}{part.value}")
        else:
            merged.append(part)
    return tuple(merged)


def _render_value(name: str, value: Any) -> str:
    if is_empty(value):
        raise ValueError(f"生成编号需要先填写“{name}”")
    # Dates stand for their year in numbering schemes: "{enrol_date}{seq:4}" -> 20240001.
    if isinstance(value, datetime.date):
        return f"{value.year:04d}"
    return str(value)


@dataclass(frozen=True)
class GeneratedField(FieldType):
    name = "generated"
    title = "自动编号"
    widget_type = Display
    params_schema = {"pattern": {"type": "string", "minLength": 1}}
    user_input = False

    pattern: str = ""
    parts: tuple[Part, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = parse_pattern(self.pattern)
        object.__setattr__(self, "parts", parts)
        # Asked for every saved record (an import: every row), so worked out once; not dataclass fields.
        object.__setattr__(self, "_referenced", tuple(dict.fromkeys(str(part.value) for part in parts if part.kind == "field")))
        object.__setattr__(self, "_has_sequence", any(part.kind == "seq" for part in parts))

    def referenced_fields(self) -> tuple[str, ...]:
        return self._referenced  # type: ignore[attr-defined,no-any-return]

    @property
    def has_sequence(self) -> bool:
        return self._has_sequence  # type: ignore[attr-defined,no-any-return]

    def scope_key(self, values: Mapping[str, Any]) -> str:
        """The text before the sequence, so that numbering restarts for each, e.g., year."""
        prefix = []
        for part in self.parts:
            if part.kind == "seq":
                break
            prefix.append(self._render_part(part, values))
        return "".join(prefix)

    @property
    def sequence_limit(self) -> int:
        """The largest sequence number the declared width holds ({seq:5}: 99,999); 0 without a sequence. A number
        past it is refused (RecordWriter: "编号已用完"), never written with more digits than declared."""
        width = next((int(part.value) for part in self.parts if part.kind == "seq"), 0)
        return 10 ** width - 1 if width else 0

    def render(self, values: Mapping[str, Any], next_seq: Callable[[str], int] | None = None) -> str:
        rendered = []
        for part in self.parts:
            if part.kind == "seq":
                if next_seq is None:
                    raise ValueError(f"编号模式“{self.pattern}”含序号，需要提供序号来源")
                number = next_seq(self.scope_key(values))
                if number > self.sequence_limit:
                    raise SequenceExhausted(self.scope_key(values), self.sequence_limit)
                rendered.append(str(number).zfill(int(part.value)))
            else:
                rendered.append(self._render_part(part, values))
        return "".join(rendered)

    def _render_part(self, part: Part, values: Mapping[str, Any]) -> str:
        if part.kind == "text":
            return str(part.value)
        return _render_value(str(part.value), values.get(str(part.value)))

    def sample(self) -> str:
        return "".join(
            "1".zfill(int(part.value)) if part.kind == "seq" else "示例" if part.kind == "field" else str(part.value)
            for part in self.parts
        )

    def format_hint(self) -> str:
        return "系统自动生成"
