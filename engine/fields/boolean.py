"""Yes/no answers in the many spellings Chinese spreadsheets and web forms use."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.fields.base import FieldType, is_empty
from engine.fields.normalise import normalise_code
from engine.issues import FieldError

# Compared after casefold(); "on" is what an HTML checkbox sends.
_TRUE = frozenset({"是", "y", "yes", "true", "1", "on"})
_FALSE = frozenset({"否", "n", "no", "false", "0", "off"})


@dataclass(frozen=True)
class BooleanField(FieldType):
    name = "boolean"
    title = "是/否"
    widget = "boolean"
    input_type = "checkbox"
    repeats = True

    def to_python(self, raw: Any) -> bool | None:
        if is_empty(raw):
            return None
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, (int, float)) and raw in (0, 1):
            return bool(raw)
        text = normalise_code(str(raw)).casefold()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise FieldError("boolean")

    def to_text(self, value: Any) -> str:
        if value is None:
            return ""
        return "是" if value else "否"

    def sample(self) -> bool:
        return True

    def format_hint(self) -> str:
        return "填写“是”或“否”"
