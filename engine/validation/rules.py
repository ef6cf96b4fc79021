"""Generic constraints a YAML field may declare; each is a small generator of issues."""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Callable, Iterator

from engine.issues import Issue

TODAY = "today"


def _limit(limit: Any) -> Any:
    return dt.date.today() if limit == TODAY else limit


def _shown(limit: Any) -> str:
    return "今天" if limit == TODAY else str(limit)


def min_length(limit: int, value: Any) -> Iterator[Issue]:
    if len(value) < limit:
        yield Issue("min_length", {"limit": limit})


def max_length(limit: int, value: Any) -> Iterator[Issue]:
    if len(value) > limit:
        yield Issue("max_length", {"limit": limit})


def pattern(limit: re.Pattern, value: Any) -> Iterator[Issue]:
    if not limit.fullmatch(str(value)):
        yield Issue("pattern", {"pattern": limit.pattern})


def min_value(limit: Any, value: Any) -> Iterator[Issue]:
    if value < _limit(limit):
        yield Issue("min_value", {"limit": _shown(limit)})


def max_value(limit: Any, value: Any) -> Iterator[Issue]:
    if value > _limit(limit):
        yield Issue("max_value", {"limit": _shown(limit)})


RULES: MappingProxyType[str, Callable[[Any, Any], Iterator[Issue]]] = MappingProxyType(
    {
        "min_length": min_length,
        "max_length": max_length,
        "pattern": pattern,
        "min": min_value,
        "max": max_value,
    }
)


def compile_limit(key: str, raw: Any, type_name: str) -> Any:
    """Turn a YAML constraint value into what the rule compares against; ValueError if it cannot be."""
    if key == "pattern":
        try:
            return re.compile(raw)
        except re.error as exc:
            raise ValueError(f"正则表达式无效：{exc}") from exc
    if key in ("min", "max"):
        if type_name == "date":
            if raw == TODAY:
                return TODAY
            try:
                return dt.date.fromisoformat(str(raw))
            except ValueError as exc:
                raise ValueError(f"日期界限应写成 2010-03-05 或 today，而不是“{raw}”") from exc
        if type_name == "decimal":
            return Decimal(str(raw))
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValueError(f"“{key}”应为数字")
        return raw
    return raw
