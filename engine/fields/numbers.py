"""Whole numbers and exact decimals."""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Iterator, Mapping

from sqlalchemy import BigInteger, Numeric

from engine.fields.base import FieldType, is_empty
from engine.fields.normalise import integral_text, normalise_code
from engine.fields.widgets import NumberInput
from engine.issues import FieldError, Issue

_INTEGER = re.compile(r"[+-]?[0-9]+(?:\.0+)?")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


@dataclass(frozen=True)
class _Number(FieldType):
    """What whole numbers and decimals share."""

    widget_type = NumberInput
    input_type = "number"

    def example_text(self, limits: Mapping[str, Any]) -> str:
        # The sample (12, 1.5) is often out of range (入学年份 2000-2100); the lower bound never is.
        return str(limits["min"]) if "min" in limits else super().example_text(limits)


@dataclass(frozen=True)
class IntegerField(_Number):
    name = "integer"
    title = "整数"
    excel_format = "0"
    sql_type = BigInteger
    constraints = frozenset({"min", "max"})
    orderable = True
    repeats = True

    def to_python(self, raw: Any) -> int | None:
        if is_empty(raw):
            return None
        # bool is an int subclass; a checkbox value in a number field is a mistake, not 1.
        if isinstance(raw, bool):
            raise FieldError("integer")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float):
            text = integral_text(raw)
        elif isinstance(raw, Decimal):
            text = format(raw, "f") if raw.is_finite() else None
        else:
            text = normalise_code(str(raw))
        if text is None or not _INTEGER.fullmatch(text):
            raise FieldError("integer")
        return int(text.split(".")[0])

    def to_cell(self, value: Any) -> Any:
        return value

    def sample(self) -> int:
        return 12

    def format_hint(self) -> str:
        return "整数，例如 12"


@dataclass(frozen=True)
class DecimalField(_Number):
    name = "decimal"
    title = "小数"
    sql_type = Numeric
    params_schema = {"places": {"type": "integer", "minimum": 0, "maximum": 10}}
    constraints = frozenset({"min", "max"})
    orderable = True
    repeats = True

    places: int | None = None

    @property
    def excel_format(self) -> str:  # type: ignore[override]
        # Without `places` any number of decimals is valid; a fixed format would hide digits.
        if self.places is None:
            return "General"
        return "0" if self.places == 0 else "0." + "0" * self.places

    def to_python(self, raw: Any) -> Decimal | None:
        if is_empty(raw):
            return None
        if isinstance(raw, bool):
            raise FieldError("decimal")
        if isinstance(raw, Decimal):
            number = raw
        elif isinstance(raw, int):
            number = Decimal(raw)
        elif isinstance(raw, float):
            # str() is the shortest text that round-trips: 0.1 -> "0.1", not 0.1000000000000000055...
            number = Decimal(str(raw))
        else:
            text = normalise_code(str(raw))
            if not _DECIMAL.fullmatch(text):
                raise FieldError("decimal")
            number = Decimal(text)
        if not number.is_finite():
            raise FieldError("decimal")
        return number

    def computed(self, value: Any) -> Any:
        """An average lands on its `places` (四舍五入) instead of being refused for too many decimals."""
        if self.places is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return value
        return Decimal(str(value) if isinstance(value, float) else value).quantize(Decimal(1).scaleb(-self.places), rounding=ROUND_HALF_UP)

    def validate(self, value: Decimal) -> Iterator[Issue]:
        # 12.50 has one significant decimal place, so trailing zeros do not count.
        if self.places is not None and _decimal_places(value) > self.places:
            yield Issue("decimal_places", {"places": self.places})

    def to_json(self, value: Any) -> Any:
        return None if value is None else format(value, "f")

    def from_json(self, stored: Any) -> Any:
        if stored is None:
            return None
        try:
            return Decimal(str(stored))
        except InvalidOperation:
            return None

    def to_sql(self, value: Any) -> Any:
        return value

    def to_text(self, value: Any) -> str:
        return "" if value is None else format(value, "f")

    def to_cell(self, value: Any) -> Any:
        return value

    def from_cell(self, cell: Any) -> Any:
        # Excel keeps 15 significant digits; more are binary noise such as 12.300000000000001.
        if isinstance(cell, float):
            return Decimal(f"{cell:.15g}")
        return cell

    def sample(self) -> Decimal:
        return Decimal("1.5") if self.places != 0 else Decimal(2)

    def format_hint(self) -> str:
        if self.places is None:
            return "数字，例如 1.5"
        if self.places == 0:
            return "数字，不带小数"
        return f"数字，最多{self.places}位小数"


def _decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0
