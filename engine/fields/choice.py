"""Single and multiple choice from a fixed option list, inline or shared."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from engine.fields.base import ExcelChoices, FieldType, UnknownName, is_empty
from engine.fields.normalise import integral_text, normalise_code
from engine.fields.widgets import Files, PostedData, Widget
from engine.issues import FieldError, Issue

_HINT_LIMIT = 10
_OPTION_ITEM = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "object",
            "properties": {"value": {"type": ["string", "integer"]}, "label": {"type": "string"},
                           "aliases": {"type": "array", "items": {"type": "string", "minLength": 1}}},
            "required": ["value"],
            "additionalProperties": False,
        },
    ]
}
_OPTIONS_SCHEMA = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "minItems": 1, "items": _OPTION_ITEM},
    ]
}
_SEPARATORS = re.compile(r"[,，、;；]")
# The stored values a choice widget was rendered with that are no longer options (see RemovedOption).
_WAS = "_was."


class RemovedOption(str):
    """A stored value whose option has since been deleted from the definition.

    `from_json` reads such a value as this marker, so that saving the record without choosing a current
    option is refused with a message naming the old value (choice_removed) — from a form, a file or a
    workflow alike — instead of the value silently vanishing. It is a str everywhere else."""

    __slots__ = ()


class Select(Widget):
    """A dropdown; a stored value that is no longer an option stays in it, marked, so it is not silently dropped."""

    name = "select"

    def value_from_datadict(self, data: PostedData, files: Files, name: str) -> Any:
        return _marked(data.get(name), data.getall(_WAS + name))

    def format_value(self, value: Any) -> str:
        return "" if value is None else str(value)

    def selected(self, value: Any, raw: Any) -> frozenset[str]:
        source = raw if raw is not None else value
        if source is None:
            return frozenset()
        if isinstance(source, (list, tuple, set, frozenset)):
            return frozenset(str(v) for v in source)
        return frozenset({str(source)})

    def get_context(self, value: Any, raw: Any = None) -> dict[str, Any]:
        context = super().get_context(value, raw)
        # From what was posted when the form comes back with errors: the removed value is still the one shown.
        removed = [item for item in _items(raw if raw is not None else value) if isinstance(item, RemovedOption)]
        context["extra"] = {**context["extra"], "removed": [(str(item), f"{item}（已不在选项中）") for item in removed]}
        return context


class Checkboxes(Select):
    name = "checkboxes"

    def value_from_datadict(self, data: PostedData, files: Files, name: str) -> Any:
        was = data.getall(_WAS + name)
        return [_marked(v, was) for v in data.getall(name) if v.strip()]


def _marked(posted: str | None, was: tuple[str, ...]) -> Any:
    """The posted value, as a RemovedOption when it is the removed value the form was rendered with."""
    return RemovedOption(posted) if posted is not None and posted in was else posted


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    # Other ways a school writes this option (统招 for 统一招生, 七年级 for 初一): read as the option wherever text is
    # typed or imported; never shown.
    aliases: tuple[str, ...] = ()


def as_option(item: Any) -> Option:
    """An option as written in YAML: "男", {value: "1", label: "是"}, or an Option already."""
    if isinstance(item, Option):
        return item
    if isinstance(item, Mapping):
        value = str(item["value"])
        return Option(value, str(item.get("label") or value), tuple(str(a) for a in item.get("aliases", ())))
    return Option(str(item), str(item))


def _key(text: str) -> str:
    return normalise_code(text).casefold()


@dataclass(frozen=True)
class ChoiceField(FieldType):
    name = "choice"
    title = "单选"
    widget_type = Select
    params_schema = {"options": _OPTIONS_SCHEMA}
    repeats = True

    options: tuple[Option, ...] = ()
    # Typed text (value or label, normalised) -> stored value.
    _lookup: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _values: frozenset[str] = field(init=False, repr=False, compare=False)

    @classmethod
    def build(cls, params: Mapping[str, Any], options: Mapping[str, tuple] | None = None) -> "ChoiceField":
        source = params.get("options", ())
        if isinstance(source, str):
            if source not in (options or {}):
                raise UnknownName("选项列表", source, tuple(options or ()))
            source = (options or {})[source]
        return cls(options=tuple(as_option(item) for item in source))

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("选择字段须设置 options（选项列表）")
        values = [option.value for option in self.options]
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ValueError(f"选项值“{duplicates[0]}”重复")
        claimed: dict[str, str] = {}
        for option in self.options:
            for alias in option.aliases:
                other = claimed.setdefault(_key(alias), option.value)
                if other != option.value:
                    raise ValueError(f"别名“{alias}”同时属于选项“{other}”和“{option.value}”，无法确定是哪一个")
        # Aliases first: an option's own label or value always wins over another option's alias.
        lookup = dict(claimed)
        lookup.update({_key(option.label): option.value for option in self.options})
        # A value wins over another option's identical label: values are what was stored before.
        lookup.update({_key(option.value): option.value for option in self.options})
        object.__setattr__(self, "_lookup", lookup)
        object.__setattr__(self, "_values", frozenset(values))

    def resolve(self, text: str) -> str | None:
        # Most text is already a lookup key ("汉族", "是"); _key is idempotent, so this is the same answer.
        found = self._lookup.get(text)
        return found if found is not None else self._lookup.get(_key(text))

    def label_of(self, value: str) -> str:
        for option in self.options:
            if option.value == value:
                return option.label
        # A value stored before its option was removed still reads as itself.
        return value

    def to_python(self, raw: Any) -> str | None:
        if is_empty(raw):
            return None
        if isinstance(raw, RemovedOption):
            raise FieldError("choice_removed", value=str(raw))
        text = _raw_text(raw)
        value = self.resolve(text)
        if value is None:
            raise FieldError("choice", value=normalise_code(text))
        return value

    def from_json(self, stored: Any) -> Any:
        return None if stored is None else self._current(str(stored))

    def _current(self, text: str) -> str:
        """A stored value as an option now: itself, the value an option's label maps to (a list moved from
        names to codes), or a RemovedOption."""
        if text in self._values:
            return text
        found = self.resolve(text)
        return found if found is not None else RemovedOption(text)

    def to_json(self, value: Any) -> Any:
        return None if value is None else str(value)

    def to_text(self, value: Any) -> str:
        return "" if value is None else self.label_of(value)

    def widget_context(self) -> dict[str, Any]:
        return {"options": [(option.value, option.label) for option in self.options]}

    def from_cell(self, cell: Any) -> Any:
        return _raw_text(cell) if isinstance(cell, (int, float)) and not isinstance(cell, bool) else cell

    def sample(self) -> Any:
        return self.options[0].value

    def format_hint(self) -> str:
        return "从以下选项中选择一项：" + self._labels_hint()

    def excel_hint(self) -> str:
        return "从下拉列表选择：" + "、".join(option.label for option in self.options)

    def excel_choices(self) -> ExcelChoices | None:
        return ExcelChoices(tuple(option.label for option in self.options))

    def _labels_hint(self) -> str:
        labels = [option.label for option in self.options]
        if len(labels) <= _HINT_LIMIT:
            return "、".join(labels)
        return "、".join(labels[:_HINT_LIMIT]) + f"等{len(labels)}项"


@dataclass(frozen=True)
class MultiChoiceField(ChoiceField):
    name = "multi_choice"
    title = "多选"
    widget_type = Checkboxes
    sql_type = None  # several values: not one column
    repeats = False  # a list: callers may change it

    def __post_init__(self) -> None:
        super().__post_init__()
        # Excel cells hold "篮球、足球"; a separator inside an option would split it in two on import.
        for option in self.options:
            if _SEPARATORS.search(option.value) or _SEPARATORS.search(option.label):
                raise ValueError(f"多选的选项“{option.label}”中不能含有逗号、顿号或分号")

    def to_python(self, raw: Any) -> list[str] | None:
        items = [item for item in _split(raw) if not is_empty(item)]
        if not items:
            return None
        chosen: set[str] = set()
        unknown: list[str] = []
        for text in items:
            value = self.resolve(text)
            if value is not None:
                chosen.add(value)
            else:
                # Kept so that `validate` can name every unknown item, not just the first.
                item = text if isinstance(text, RemovedOption) else normalise_code(text)
                if item not in unknown:
                    unknown.append(item)
        return [option.value for option in self.options if option.value in chosen] + unknown

    def validate(self, value: list[str]) -> Iterator[Issue]:
        for item in value:
            if item not in self._values:
                yield Issue("choice_removed" if isinstance(item, RemovedOption) else "choice", {"value": str(item)})

    def from_json(self, stored: Any) -> Any:
        if stored is None:
            return None
        return [self._current(str(item)) for item in stored]

    def to_json(self, value: Any) -> Any:
        return None if value is None else [str(item) for item in value]

    def to_text(self, value: Any) -> str:
        return "" if not value else "、".join(self.label_of(item) for item in value)

    def excel_hint(self) -> str:
        return "可选多项，用“、”分隔：" + "、".join(option.label for option in self.options)

    def excel_choices(self) -> ExcelChoices | None:
        return None  # several values in one cell: a list rule would refuse them

    def sample(self) -> list[str]:
        return [self.options[0].value]

    def format_hint(self) -> str:
        return "可选多项，用“、”分隔：" + self._labels_hint()


def _raw_text(raw: Any) -> str:
    if isinstance(raw, float):
        return integral_text(raw) or str(raw)
    return raw if isinstance(raw, str) else str(raw)


def split_items(text: str) -> list[str]:
    """A multiple-choice cell's items ("篮球、足球" → ["篮球", "足球"]), split as `MultiChoiceField` reads them."""
    return [item.strip() for item in _SEPARATORS.split(text) if item.strip()]


def _split(raw: Any) -> Iterable[Any]:
    if is_empty(raw):
        return ()
    if isinstance(raw, (list, tuple, set, frozenset)):
        return [_raw_text(item) for item in raw if item is not None]
    return _SEPARATORS.split(_raw_text(raw))
