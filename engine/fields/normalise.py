"""Small text clean-ups shared by field types: full-width ASCII and stray spaces."""
from __future__ import annotations

import re

# Only the full-width ASCII block and the ideographic space. NFKC would also fold compatibility
# ideographs and rare name characters into other code points, corrupting names.
_HALFWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

# \s covers U+00A0 and U+3000; zero-width characters arrive with text pasted from Word and web pages.
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_EDGES = re.compile(rf"^[\s{_ZERO_WIDTH}]+|[\s{_ZERO_WIDTH}]+$")
_ANY_SPACE = re.compile(rf"[\s{_ZERO_WIDTH}]+")


def to_halfwidth(text: str) -> str:
    return text.translate(_HALFWIDTH)


def clean_spaces(text: str) -> str:
    return _EDGES.sub("", text)


def remove_spaces(text: str) -> str:
    return _ANY_SPACE.sub("", text)


def normalise_code(text: str) -> str:
    """For machine-ish values (numbers, codes, dates): half-width and trimmed."""
    return clean_spaces(to_halfwidth(text))


def integral_text(number: float) -> str | None:
    """`12.0` -> "12": Excel stores every number as a float."""
    if number != number or number in (float("inf"), float("-inf")) or not number.is_integer():
        return None
    return str(int(number))
