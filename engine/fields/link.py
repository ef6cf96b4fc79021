"""A link to a record of another form (成绩 → 学生): stored as that record's id, shown as its title.

A link is entered by picking the record (the web form's search-as-you-type, which posts the id) or by naming it
with one of its unique values — a 学号, 学籍号 or 身份证号 typed without JavaScript or written in an Excel cell
(`LinkRef`). Whether the record exists, is of the right form and lies in the user's scope needs the database, so
the record service checks and resolves links when it saves (engine/records/service.py), as it checks unique
values; this type only reads what was given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from sqlalchemy import BigInteger

from engine.fields.base import FieldType, is_empty
from engine.fields.normalise import integral_text
from engine.fields.widgets import Files, PostedData, Widget
from engine.issues import FieldError, Issue


@dataclass(frozen=True)
class LinkRef:
    """A linked record named by text, to be found by the record service among the target form's unique values."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class LinkValue:
    """A linked record as a reader sees it: its id, its title (masked as this reader sees it) and, when the reader
    may open it, its page."""

    id: int
    text: str
    href: str = ""

    def __str__(self) -> str:
        return self.text


class LinkPicker(Widget):
    """A text box that searches the target form as it is typed (htmx) and a hidden input with the chosen id. Without
    JavaScript the typed 学号/学籍号/身份证号 is posted and found on save."""

    name = "link"

    def value_from_datadict(self, data: PostedData, files: Files, name: str) -> Any:
        chosen, typed = data.get(name) or "", (data.get(name + "__text") or "").strip()
        if chosen.isascii() and chosen.isdigit() and 0 < len(chosen) < 19:
            return int(chosen)
        return LinkRef(typed) if typed else None

    def claims(self, name: str, posted: str) -> bool:
        return posted in (name, name + "__text")

    def get_context(self, value: Any, raw: Any = None) -> dict[str, Any]:
        shown = raw if raw is not None else value
        chosen = shown.id if isinstance(shown, LinkValue) else shown if isinstance(shown, int) else ""
        text = str(shown) if isinstance(shown, (LinkValue, LinkRef)) else ("" if shown in (None, "") else f"#{shown}")
        return {"value": text, "selected": frozenset({str(chosen)}) if chosen != "" else frozenset(),
                "extra": {**self.kind.widget_context(), "chosen": chosen}}


@dataclass(frozen=True)
class LinkField(FieldType):
    name = "link"
    title = "关联记录"
    widget_type = LinkPicker
    sql_type = BigInteger
    params_schema = {
        "form": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        "display": {"type": "array", "items": {"type": "string"}},
    }

    form: str = ""
    display: tuple[str, ...] = ()

    @classmethod
    def build(cls, params: Any, options: Any = None) -> "LinkField":
        if not params.get("form"):
            raise ValueError("关联字段须写明关联到哪个表单：form: <表单键>")
        return cls(form=params["form"], display=tuple(params.get("display", ())))

    def to_python(self, raw: Any) -> int | LinkRef | None:
        if is_empty(raw):
            return None
        if isinstance(raw, (LinkRef, LinkValue)):
            return raw.id if isinstance(raw, LinkValue) else raw
        if isinstance(raw, bool):
            raise FieldError("link")
        if isinstance(raw, int):
            return raw
        # Text names the record by one of its unique values; it is never taken for an id (a 学号 is digits too).
        return LinkRef(str(raw).strip())

    def validate(self, value: Any) -> Iterator[Issue]:
        if isinstance(value, int) and value <= 0:
            yield Issue("link")

    def to_json(self, value: Any) -> Any:
        if isinstance(value, LinkRef):
            raise FieldError("link_unresolved")  # the record service resolves names before anything is stored
        return None if value is None else int(value.id if isinstance(value, LinkValue) else value)

    def from_json(self, stored: Any) -> Any:
        return None if stored is None else int(stored)

    def to_sql(self, value: Any) -> Any:
        return None if value is None or isinstance(value, LinkRef) else self.to_json(value)

    def to_text(self, value: Any) -> str:
        if value is None:
            return ""
        return str(value) if isinstance(value, (LinkValue, LinkRef)) else f"#{value}"

    def from_cell(self, cell: Any) -> Any:
        if isinstance(cell, float):
            cell = integral_text(cell) or repr(cell)
        return None if is_empty(cell) else LinkRef(str(cell).strip())

    def to_cell(self, value: Any) -> Any:
        return None if value is None else self.to_text(value)

    def widget_context(self) -> dict[str, Any]:
        return {"form": self.form, "display": ",".join(self.display)}

    def sample(self) -> int:
        return 1

    def format_hint(self) -> str:
        return "关联记录：填写对方记录的唯一编号（对方表单中设为 unique 的字段）"
