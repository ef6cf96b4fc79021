"""Times of day to the minute (HH:MM), as people type them and as Excel stores them."""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Time

from engine.fields.base import FieldType, is_empty
from engine.fields.normalise import normalise_code
from engine.issues import FieldError

# 7:30, 07:30, 7:30:00, 7点30分, 7点, 0730; the full-width colon is folded by normalise_code.
_FORMATS = (
    re.compile(r"(?P<h>[0-9]{1,2}):(?P<m>[0-9]{2})(?::(?P<s>[0-9]{2})(?:\.0+)?)?"),
    re.compile(r"(?P<h>[0-9]{1,2})\s*[点时]\s*(?:(?P<m>[0-9]{1,2})\s*分?|(?P<half>半))?"),
    re.compile(r"(?P<h>[0-9]{2})(?P<m>[0-9]{2})"),
)
_MINUTES_A_DAY = 24 * 60


def parse_time(text: str) -> datetime.time | None:
    text = normalise_code(text)
    for pattern in _FORMATS:
        match = pattern.fullmatch(text)
        if match:
            groups = match.groupdict()
            minute = 30 if groups.get("half") else int(groups.get("m") or 0)
            if int(groups.get("s") or 0) != 0:
                return None  # a time to the second is not what this type holds
            try:
                return datetime.time(int(match["h"]), minute)
            except ValueError:
                return None
    return None


def _from_day_fraction(fraction: float) -> datetime.time | None:
    """Excel stores 07:30 as 0.3125 of a day; a date with a time (45000.3125) keeps only the time."""
    minutes = round((fraction % 1) * _MINUTES_A_DAY)
    return None if minutes >= _MINUTES_A_DAY else datetime.time(minutes // 60, minutes % 60)


@dataclass(frozen=True)
class TimeField(FieldType):
    name = "time"
    title = "时间"
    input_type = "time"
    excel_format = "hh:mm"
    excel_width = 10
    sql_type = Time
    constraints = frozenset({"min", "max"})
    orderable = True
    repeats = True

    def to_python(self, raw: Any) -> datetime.time | None:
        if is_empty(raw):
            return None
        if isinstance(raw, datetime.datetime):
            raw = raw.time()
        if isinstance(raw, datetime.time):
            if raw.second or raw.microsecond:
                raise FieldError("time")
            return raw.replace(tzinfo=None)
        if isinstance(raw, (bool, int, float)):
            raise FieldError("time")
        value = parse_time(str(raw))
        if value is None:
            raise FieldError("time")
        return value

    def to_json(self, value: Any) -> Any:
        return None if value is None else value.strftime("%H:%M")

    def from_json(self, stored: Any) -> Any:
        return None if stored is None else datetime.time.fromisoformat(stored)

    def to_sql(self, value: Any) -> Any:
        return value

    def to_text(self, value: Any) -> str:
        return "" if value is None else value.strftime("%H:%M")

    def to_cell(self, value: Any) -> Any:
        return value

    def from_cell(self, cell: Any) -> Any:
        if isinstance(cell, datetime.datetime):
            return cell.time()
        if isinstance(cell, datetime.timedelta) and datetime.timedelta(0) <= cell < datetime.timedelta(days=1):
            return _from_day_fraction(cell.total_seconds() / 86400) or cell
        if isinstance(cell, float) and 0 <= cell:
            return _from_day_fraction(cell) or cell
        if isinstance(cell, int) and not isinstance(cell, bool) and cell == 0:
            return datetime.time(0, 0)
        return cell

    def sample(self) -> datetime.time:
        return datetime.time(8, 0)

    def format_hint(self) -> str:
        return "时间，24小时制，如 07:30，也可写 7:30、7点30分"
