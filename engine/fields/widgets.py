"""Widgets: how a field is entered in an HTML form — its template, what it reads back from a post, how it shows a value.

As Django's `Widget`: `value_from_datadict(data, files, name)` reads the widget's own posted data,
`format_value(value)` gives what an input shows, `get_context(value, raw)` what the template
`web/templates/widgets/<name>.html` needs. A widget is bound to its field type (`FieldType.widget`);
widgets never write HTML, the templates do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    # engine.fields.base gives every type its widget, so a runtime import here would be circular.
    from engine.fields.base import FieldType
    from engine.fields.files import UploadedFile


@dataclass(frozen=True)
class PostedData:
    """The text values of a form post by name, every value of a repeated name in posting order.

    Uploads travel separately (`files`), already read, as Django passes `request.FILES`."""

    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        found = self.values.get(name)
        return found[0] if found else None

    def getall(self, name: str) -> tuple[str, ...]:
        return self.values.get(name, ())

    def names(self) -> Iterable[str]:
        return self.values.keys()


Files = Mapping[str, "UploadedFile"]


@dataclass(frozen=True)
class Widget:
    """A single-line `<input>` (type from the field type's `input_type`); the base of every widget."""

    kind: "FieldType"
    name = "text"  # web/templates/widgets/<name>.html

    @property
    def template_name(self) -> str:
        return f"widgets/{self.name}.html"

    @property
    def input_type(self) -> str:
        return self.kind.input_type

    # --- reading a post ------------------------------------------------------------------------------
    def value_from_datadict(self, data: PostedData, files: Files, name: str) -> Any:
        """The raw value posted under `name` (what `FieldType.clean` takes); None when nothing usable was sent."""
        return data.get(name)

    def value_omitted_from_data(self, data: PostedData, files: Files, name: str) -> bool:
        """True when the post says nothing about this field, so the stored value stays (an empty file input)."""
        return False

    def claims(self, name: str, posted: str) -> bool:
        """Whether the posted name `posted` belongs to this widget rendered as `name` (table cells do)."""
        return posted == name

    # --- showing a value -----------------------------------------------------------------------------
    def format_value(self, value: Any) -> str:
        """A stored Python value as the input shows it."""
        return "" if value is None else self.kind.to_text(value)

    def get_context(self, value: Any, raw: Any = None) -> dict[str, Any]:
        """What the template shows: `raw` (what the user typed, redisplayed after an error) wins over `value`."""
        return {"value": self._shown(value, raw), "selected": self.selected(value, raw), "extra": self.kind.widget_context()}

    def _shown(self, value: Any, raw: Any) -> str:
        # An upload (it has `data`) or a table's rows are not text to put back into an input.
        if raw is not None and not isinstance(raw, (list, tuple, dict)) and not hasattr(raw, "data"):
            return str(raw)
        return self.format_value(value)

    def selected(self, value: Any, raw: Any) -> frozenset[str]:
        """Option values shown as chosen, for widgets that offer options."""
        return frozenset()


class Textarea(Widget):
    name = "textarea"


class NumberInput(Widget):
    name = "number"


class Display(Widget):
    """A value the system makes (a generated number): shown, never posted."""

    name = "generated"

    def value_from_datadict(self, data: PostedData, files: Files, name: str) -> Any:
        return None

    def value_omitted_from_data(self, data: PostedData, files: Files, name: str) -> bool:
        return True
