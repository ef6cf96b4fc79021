"""E-mail addresses and mainland Chinese telephone numbers."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.fields.base import FieldType, is_empty
from engine.fields.normalise import clean_spaces, integral_text, remove_spaces, to_halfwidth
from engine.issues import FieldError

_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_EMAIL_MAX = 254  # RFC 5321 path limit

_MOBILE = re.compile(r"(?:\+?86|0086)?(1[3-9][0-9]{9})")
_LANDLINE = re.compile(r"(0[0-9]{2,3})-([0-9]{7,8})(-[0-9]{1,6})?")
_AREA_IN_PARENS = re.compile(r"^\((0[0-9]{2,3})\)-?")


@dataclass(frozen=True)
class EmailField(FieldType):
    name = "email"
    title = "电子邮箱"
    input_type = "email"
    constraints = frozenset({"max_length"})

    def to_python(self, raw: Any) -> str | None:
        if is_empty(raw):
            return None
        text = clean_spaces(to_halfwidth(str(raw)))
        match = _EMAIL.fullmatch(text)
        if not match or len(text) > _EMAIL_MAX:
            raise FieldError("email")
        # Domains are case-insensitive; local parts formally are not, so they are kept as typed.
        return f"{match['local']}@{match['domain'].lower()}"

    def mask(self, text: str) -> str:
        local, at, domain = text.partition("@")
        if not at:
            return super().mask(text)
        return f"{local[:1]}***@{domain}"

    def sample(self) -> str:
        return "zhangsan@example.com"

    def format_hint(self) -> str:
        return "电子邮箱，例如 zhangsan@example.com"


@dataclass(frozen=True)
class PhoneField(FieldType):
    name = "phone"
    title = "电话号码"
    input_type = "tel"
    excel_width = 15

    def to_python(self, raw: Any) -> str | None:
        if is_empty(raw):
            return None
        text = normalise_phone(str(raw))
        if text is None:
            raise FieldError("phone")
        return text

    def mask(self, text: str) -> str:
        if _MOBILE.fullmatch(text):
            return text[:3] + "****" + text[-4:]
        match = _LANDLINE.fullmatch(text)
        if match:
            area, number, extension = match.groups()
            return f"{area}-{'*' * (len(number) - 4)}{number[-4:]}{extension or ''}"
        return super().mask(text)

    def from_cell(self, cell: Any) -> Any:
        # A mobile number typed into a General cell comes back as 13812345678.0.
        if isinstance(cell, float):
            return integral_text(cell) or cell
        if isinstance(cell, int) and not isinstance(cell, bool):
            return str(cell)
        return cell

    def sample(self) -> str:
        return "13812345678"

    def format_hint(self) -> str:
        return "11位手机号，或带区号的固定电话，如 010-12345678"


def normalise_phone(raw: str) -> str | None:
    """"+86 138-1234-5678" -> "13812345678", "（010）12345678" -> "010-12345678"; None if neither."""
    text = clean_spaces(to_halfwidth(raw))
    mobile = _MOBILE.fullmatch(remove_spaces(text).replace("-", ""))
    if mobile:
        return mobile[1]
    # Inner spaces separate the area code as a hyphen would: "010 12345678".
    text = re.sub(r"-+", "-", re.sub(r"\s+", "-", text))
    text = _AREA_IN_PARENS.sub(r"\1-", text)
    return text if _LANDLINE.fullmatch(text) else None
