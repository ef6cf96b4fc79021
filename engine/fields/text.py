"""Single-line and multi-line free text."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from engine.fields.base import FieldType, is_empty
from engine.fields.normalise import clean_spaces, integral_text
from engine.fields.widgets import Textarea


@dataclass(frozen=True)
class TextField(FieldType):
    name = "text"
    title = "单行文本"
    excel_width = 16
    constraints = frozenset({"min_length", "max_length", "pattern"})

    def to_python(self, raw: Any) -> str | None:
        if is_empty(raw):
            return None
        text = clean_spaces(raw if isinstance(raw, str) else str(raw))
        return text or None

    def from_cell(self, cell: Any) -> Any:
        # A 学号 typed into a General-format cell comes back as 20240001.0.
        if isinstance(cell, float):
            return integral_text(cell) or f"{cell:.15g}"
        if isinstance(cell, datetime.datetime) and cell.time() == datetime.time():
            return cell.date().isoformat()
        if isinstance(cell, datetime.date):
            return cell.isoformat()
        return cell

    def format_hint(self) -> str:
        return "文本"


@dataclass(frozen=True)
class TextareaField(TextField):
    name = "textarea"
    title = "多行文本"
    widget_type = Textarea
    excel_width = 30

    def to_python(self, raw: Any) -> str | None:
        text = super().to_python(raw)
        return None if text is None else text.replace("\r\n", "\n").replace("\r", "\n")

    def format_hint(self) -> str:
        return "文本，可多行"
