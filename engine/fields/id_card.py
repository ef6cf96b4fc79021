"""18-digit 居民身份证号码, checked per GB 11643-1999, and the birth date and sex it encodes."""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

from engine.fields.base import FieldType, is_empty
from engine.fields.normalise import remove_spaces, to_halfwidth
from engine.issues import FieldError, Issue

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82}
)
_EARLIEST_BIRTH = datetime.date(1900, 1, 1)


def check_digit(first17: str) -> str:
    return _CHECK_CHARS[sum(map(int.__mul__, map(int, first17), _WEIGHTS)) % 11]


def normalise_id_card(raw: str) -> str:
    return remove_spaces(to_halfwidth(raw)).upper()


def birth_date(number: str) -> datetime.date | None:
    try:
        return datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None


def id_card_issues(number: str, today: datetime.date | None = None) -> Iterator[Issue]:
    """Problems with a well-shaped number, most basic first (only the first: a check digit computed
    from a mistyped birth date misleads)."""
    problem = _first_problem(number, today or datetime.date.today())
    if problem is not None:
        yield problem


# A number is checked several times per record (its field, the natural key, the rules that read its
# birth date and sex); the answer depends only on the number and the day. Issues are immutable.
@lru_cache(maxsize=4096)
def _first_problem(number: str, today: datetime.date) -> Issue | None:
    if int(number[:2]) not in _PROVINCES:
        return Issue("id_card_region")
    born = birth_date(number)
    if born is None or not _EARLIEST_BIRTH <= born <= today:
        return Issue("id_card_birth")
    expected = check_digit(number[:17])
    if number[17] != expected:
        return Issue("id_card_check", {"expected": expected})
    return None


# An import reads each number twice (its natural key, then the record); the answer depends on the text alone.
@lru_cache(maxsize=4096)
def _shaped(text: str) -> tuple[str, str]:
    """The normalised number and "" when it has the shape of one, else the reason it has not."""
    number = normalise_id_card(text)
    if len(number) != 18:
        return number, "id_card_length"
    if not _SHAPE.fullmatch(number):
        return number, "id_card_chars"
    return number, ""


def _valid(value: Any) -> str | None:
    return _valid_text(value) if isinstance(value, str) else None


@lru_cache(maxsize=4096)
def _valid_text(value: str) -> str | None:
    number = normalise_id_card(value)
    if not _SHAPE.fullmatch(number) or _first_problem(number, datetime.date.today()) is not None:
        return None
    return number


def id_card_birth(value: Any) -> datetime.date | None:
    """Birth date encoded in a valid ID number; None for anything else (expressions stay total)."""
    number = _valid(value)
    return None if number is None else birth_date(number)


def id_card_gender(value: Any) -> str | None:
    """"男" when the 17th digit is odd, "女" when even; None unless the number is valid."""
    number = _valid(value)
    if number is None:
        return None
    return "男" if int(number[16]) % 2 else "女"


@dataclass(frozen=True)
class IdCardField(FieldType):
    name = "id_card"
    title = "居民身份证号码"
    excel_width = 22

    def to_python(self, raw: Any) -> str | None:
        if is_empty(raw):
            return None
        number, problem = _shaped(raw if isinstance(raw, str) else str(raw))
        if problem:
            raise FieldError(problem)
        return number

    def validate(self, value: str) -> Iterator[Issue]:
        return id_card_issues(value)

    def mask(self, text: str) -> str:
        if len(text) == 18:
            return text[:6] + "*" * 8 + text[-4:]
        return super().mask(text)

    def from_cell(self, cell: Any) -> Any:
        if isinstance(cell, bool):
            return cell
        if isinstance(cell, int):
            return str(cell)
        # Excel keeps 15 significant digits, so the last three of an 18-digit number are gone.
        if isinstance(cell, float):
            raise FieldError("id_card_float")
        return cell

    def sample(self) -> str:
        return "11010519491231002X"

    def format_hint(self) -> str:
        return "18位居民身份证号码，末位可为X；请将该列设为文本格式"
