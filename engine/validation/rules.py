"""Generic constraints a YAML field may declare; each is a small generator of issues."""
from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any, Callable, Iterator

from engine.fields.base import FieldType, Limit
from engine.issues import Issue


def min_length(limit: int, value: Any) -> Iterator[Issue]:
    if len(value) < limit:
        yield Issue("min_length", {"limit": limit})


def max_length(limit: int, value: Any) -> Iterator[Issue]:
    if len(value) > limit:
        yield Issue("max_length", {"limit": limit})


def pattern(limit: re.Pattern, value: Any) -> Iterator[Issue]:
    if not limit.fullmatch(str(value)):
        yield Issue("pattern", {"pattern": limit.pattern})


def min_value(limit: Limit, value: Any) -> Iterator[Issue]:
    if value < limit.value():
        yield Issue("min_value", {"limit": limit.shown})


def max_value(limit: Limit, value: Any) -> Iterator[Issue]:
    if value > limit.value():
        yield Issue("max_value", {"limit": limit.shown})


RULES: MappingProxyType[str, Callable[[Any, Any], Iterator[Issue]]] = MappingProxyType(
    {
        "min_length": min_length,
        "max_length": max_length,
        "pattern": pattern,
        "min": min_value,
        "max": max_value,
    }
)


def compile_limit(key: str, raw: Any, kind: FieldType) -> Any:
    """Turn a YAML constraint value into what the rule compares against; ValueError if it cannot be.

    `min`/`max` are values of the field's own type, so the type parses them (FieldType.parse_limit)."""
    if key == "pattern":
        try:
            return re.compile(raw)
        except re.error as exc:
            raise ValueError(f"正则表达式无效：{exc}") from exc
    if key in ("min", "max"):
        return kind.parse_limit(key, raw)
    return raw
