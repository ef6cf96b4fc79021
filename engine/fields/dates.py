"""Calendar dates as people in China write them, and as Excel stores them."""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Date

from engine.fields.base import FieldType, Limit, is_empty
from engine.fields.normalise import normalise_code
from engine.fields.widgets import Widget
from engine.issues import FieldError

_TIME = r"(?:[ T][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?"
_FORMATS = (
    # The same separator twice: "2010-3/5" is more likely a typo than a date.
    re.compile(rf"(?P<y>[0-9]{{4}})(?P<sep>[-/.])(?P<m>[0-9]{{1,2}})(?P=sep)(?P<d>[0-9]{{1,2}}){_TIME}"),
    re.compile(r"(?P<y>[0-9]{4})\s*年\s*(?P<m>[0-9]{1,2})\s*月\s*(?P<d>[0-9]{1,2})\s*日?"),
    re.compile(r"(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})"),
)
# Serials of 1900-01-01 .. 9999-12-31; a number typed as 20100305 is far outside.
_EXCEL_SERIALS = (1, 2958466)
TODAY = "today"  # a `min`/`max` that moves with the calendar


class DateInput(Widget):
    name = "date"


def parse_date(text: str) -> datetime.date | None:
    text = normalise_code(text)
    for pattern in _FORMATS:
        match = pattern.fullmatch(text)
        if match:
            try:
                return datetime.date(int(match["y"]), int(match["m"]), int(match["d"]))
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class DateField(FieldType):
    name = "date"
    title = "日期"
    widget_type = DateInput
    input_type = "date"
    excel_format = "yyyy-mm-dd"
    excel_width = 13
    sql_type = Date
    constraints = frozenset({"min", "max"})
    orderable = True
    repeats = True

    def to_python(self, raw: Any) -> datetime.date | None:
        if is_empty(raw):
            return None
        if isinstance(raw, datetime.datetime):
            return raw.date()
        if isinstance(raw, datetime.date):
            return raw
        if isinstance(raw, (bool, float)):
            raise FieldError("date")
        value = parse_date(str(raw))
        if value is None:
            raise FieldError("date")
        return value

    def parse_limit(self, name: str, raw: Any) -> Limit:
        if raw == TODAY:
            return Limit("今天", moving=datetime.date.today)
        value = None if isinstance(raw, (bool, int, float)) else parse_date(str(raw))
        if value is None:
            raise ValueError(f"日期界限“{name}”应写成 2010-03-05 或 today，而不是“{raw}”")
        return Limit(value.isoformat(), value)

    def to_json(self, value: Any) -> Any:
        return None if value is None else value.isoformat()

    def to_sql(self, value: Any) -> Any:
        return value

    def from_json(self, stored: Any) -> Any:
        return None if stored is None else datetime.date.fromisoformat(stored)

    def to_text(self, value: Any) -> str:
        return "" if value is None else value.isoformat()

    def mask(self, text: str) -> str:
        # The year alone (age group) is routinely shown; month and day identify a child.
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            return text[:4] + "-**-**"
        return super().mask(text)

    def to_cell(self, value: Any) -> Any:
        return value

    def from_cell(self, cell: Any) -> Any:
        if isinstance(cell, datetime.datetime):
            return cell.date()
        if isinstance(cell, (int, float)) and not isinstance(cell, bool):
            if _EXCEL_SERIALS[0] <= cell < _EXCEL_SERIALS[1]:
                from openpyxl.utils.datetime import from_excel  # noqa: PLC0415 — a serial number cell is rare; importing openpyxl is not cheap

                return from_excel(cell).date()
            # 20100305 typed into a General cell is a number, not a serial.
            if isinstance(cell, int) or cell.is_integer():
                return str(int(cell))
        return cell

    def sample(self) -> datetime.date:
        return datetime.date(2010, 3, 5)

    def format_hint(self) -> str:
        return "日期，如 2010-03-05，也可写 2010/3/5、2010.3.5、2010年3月5日 或 20100305"
