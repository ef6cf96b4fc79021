"""The contract every field type fulfils: convert, validate, store, render and round-trip to Excel."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Mapping

from sqlalchemy import Text
from sqlalchemy.types import TypeEngine

from engine.fields.widgets import Widget
from engine.issues import FieldError, Issue

if TYPE_CHECKING:
    # engine.spec imports this module, so a runtime import of FieldSpec here would be circular.
    from engine.spec import FieldSpec

Clean = Callable[[Any], "tuple[Any, list[Issue]]"]
_MEMO_SIZE = 2048


def is_empty(raw: Any) -> bool:
    if raw is None:
        return True
    if isinstance(raw, str):
        return raw.strip() == ""
    if isinstance(raw, (list, tuple, dict)):
        return len(raw) == 0
    return False


@dataclass(frozen=True)
class Limit:
    """A `min`/`max` bound as its type parsed it: what values are compared with, and how messages show it."""

    shown: str  # "2000", "2010-03-05", "今天"
    fixed: Any = None
    # A bound that moves, such as today's date. Not in the repr: `shown` names it, and a function's repr carries its
    # address, which differs per process (the projection's rows digest is built from reprs).
    moving: Callable[[], Any] | None = field(default=None, repr=False)

    def value(self) -> Any:
        return self.moving() if self.moving is not None else self.fixed

    def __str__(self) -> str:
        return self.shown


@dataclass(frozen=True)
class ExcelChoices:
    """A dropdown for the type's Excel column: the labels offered, and whether they fit in the rule itself
    (a short fixed list such as 是/否) or go to the template's hidden list sheet."""

    labels: tuple[str, ...]
    inline: bool = False


class UnknownName(ValueError):
    """A parameter names something that does not exist (an option list); the compiler adds the did-you-mean hint."""

    def __init__(self, what: str, name: str, known: tuple[str, ...]) -> None:
        super().__init__(f"未知的{what}“{name}”")
        self.what, self.name, self.known = what, name, known


@dataclass(frozen=True)
class FieldType:
    """Base of all field types; one subclass per YAML `type:` value, registered in `FIELD_TYPES`.

    A subclass is a frozen dataclass whose fields are its type-specific YAML parameters
    (e.g. `options` for choice, `accept`/`max_size` for file). `params_schema` is the JSON Schema
    of those parameters; the loader checks them before `build` is called.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # Chinese name of the type, shown in docs and the Excel 填写说明
    widget_type: ClassVar[type[Widget]] = Widget  # see `widget`; its template is web/templates/widgets/<name>.html
    input_type: ClassVar[str] = "text"  # HTML <input type>, for widgets that use it
    excel_format: ClassVar[str] = "@"  # openpyxl number_format of the column and its cells; "@" is text
    excel_width: ClassVar[int] = 12  # column width in the Excel template, in characters
    # False where a value cannot come from one Excel cell (rows of a table, an uploaded file).
    importable: ClassVar[bool] = True
    # The SQLAlchemy type of a column holding one value of this type (lists, filters, sorting, reports), or
    # None where a value is not one scalar (table rows, several choices, a file). `to_sql` gives the value.
    sql_type: ClassVar[type[TypeEngine] | None] = Text
    # Parameters whose YAML holds field definitions of their own (a table's `columns`), compiled as fields.
    sub_field_params: ClassVar[tuple[str, ...]] = ()
    params_schema: ClassVar[Mapping[str, Any]] = {}
    # Generic constraints (engine/validation/rules.py) this type accepts in YAML.
    constraints: ClassVar[frozenset[str]] = frozenset()
    # Whether values are comparable with < and >, so min/max make sense.
    orderable: ClassVar[bool] = False
    # False for values the system makes (generated numbers): never typed, never "required" of a user.
    user_input: ClassVar[bool] = True
    # True where a generated value draws a number from a database sequence.
    has_sequence: ClassVar[bool] = False
    # True where typed values come from a small set (选项, 是/否, years, dates) and `clean` returns an immutable
    # value that depends on the raw input alone: the validator then remembers recent answers per field.
    repeats: ClassVar[bool] = False

    @classmethod
    def build(cls, params: Mapping[str, Any], options: Mapping[str, tuple] | None = None) -> "FieldType":
        """Make a configured instance from already schema-checked YAML parameters.

        `options` maps shared option-list keys to their values, for types that reference them.
        Raise `ValueError` with a Chinese message for a parameter problem the schema cannot see.
        """
        return cls(**{k: params[k] for k in cls.__dataclass_fields__ if k in params})

    # --- conversion and validation -------------------------------------------------------------
    def to_python(self, raw: Any) -> Any:
        """Raw input (form text, Excel cell, JSON) -> Python value, None when empty.

        Raises FieldError when the raw value cannot be converted at all.
        """
        if is_empty(raw):
            return None
        if not isinstance(raw, str):
            raw = str(raw)
        return raw.strip()

    def validate(self, value: Any) -> Iterator[Issue]:
        """Type-specific checks on a converted, non-empty value."""
        return iter(())

    def clean(self, raw: Any) -> tuple[Any, list[Issue]]:
        try:
            value = self.to_python(raw)
        except FieldError as exc:
            return None, [exc.issue]
        if value is None:
            return None, []
        return value, list(self.validate(value))

    def cleaner(self) -> Clean:
        """`clean`, answered from recent calls where values repeat (`repeats`); the validator's plan holds one per field.

        The memo's key holds the raw value's type: 1, 1.0 and True are equal dict keys but not the same input."""
        if not self.repeats:
            return self.clean
        clean = self.clean
        memo: dict[tuple[type, Any], tuple[Any, tuple[Issue, ...]]] = {}

        def remembered(raw: Any) -> tuple[Any, list[Issue]]:
            key = (type(raw), raw)
            try:
                known = memo.get(key)
            except TypeError:  # unhashable input (a list posted for a single value): not worth remembering
                return clean(raw)
            if known is None:
                value, issues = clean(raw)
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                known = memo[key] = (value, tuple(issues))
            return known[0], list(known[1])

        return remembered

    def parse_limit(self, name: str, raw: Any) -> Limit:
        """A YAML `min`/`max` value as a bound of this type; ValueError with a Chinese message if it is not one."""
        value, issues = self.clean(raw)
        if issues or value is None or isinstance(raw, bool):
            raise ValueError(f"“{name}”应为{self.title}，例如 {self.to_text(self.sample())}，而不是“{raw}”")
        return Limit(self.to_text(value), value)

    # --- storage ---------------------------------------------------------------------------------
    def to_json(self, value: Any) -> Any:
        return value

    def from_json(self, stored: Any) -> Any:
        return stored

    def to_sql(self, value: Any) -> Any:
        """The value as a column of `sql_type` holds it (None for types without one)."""
        return None if value is None or self.sql_type is None else self.to_json(value)

    # --- presentation ----------------------------------------------------------------------------
    def to_text(self, value: Any) -> str:
        """The value as people read it, and as a text input shows it."""
        return "" if value is None else str(value)

    def mask(self, text: str) -> str:
        """Masked display for roles that may not see a sensitive value: a short head and tail stay
        recognisable (张**, G11010*********0018), the middle never shows."""
        if not text:
            return ""
        head, tail = max(1, min(6, len(text) // 3)), min(4, len(text) // 4)
        return text[:head] + "*" * (len(text) - head - tail) + text[len(text) - tail:]

    @property
    def widget(self) -> Widget:
        """How the field is entered in an HTML form, bound to this type (Django's `Field.widget`)."""
        return self.widget_type(self)

    def widget_context(self) -> dict[str, Any]:
        """Extra, type-specific values for the widget template (options, accept, ...)."""
        return {}

    def sub_fields(self) -> tuple["FieldSpec", ...]:
        """Fields inside each value (a table's columns); empty for a value that is one thing."""
        return ()

    def referenced_fields(self) -> tuple[str, ...]:
        """Other fields this type reads (generated numbers); the compiler checks they exist."""
        return ()

    def computed(self, value: Any) -> Any:
        """A formula's result as this type takes it before it is cleaned (a decimal rounds to its places)."""
        return value

    def sample(self) -> Any:
        """A valid value, used at load time to check that expressions evaluate to booleans."""
        return "示例"

    # --- Excel ----------------------------------------------------------------------------------
    def to_cell(self, value: Any) -> Any:
        """Value as written into an export/template cell."""
        return self.to_text(value) if value is not None else None

    def from_cell(self, cell: Any) -> Any:
        """Excel cell value -> raw input for `to_python` (undoing Excel's number/date habits)."""
        return cell

    def cell_reader(self) -> Callable[[Any], Any] | None:
        """`from_cell`, or None where the type takes cells as they are: an import then skips the call per cell."""
        return None if type(self).from_cell is FieldType.from_cell else self.from_cell

    def format_hint(self) -> str:
        """Plain-Chinese description of the accepted format, for the 填写说明 sheet and docs."""
        return self.title

    def excel_hint(self) -> str:
        """The 填写说明 sheet's 格式要求 for the column; choices list every option there."""
        return self.format_hint()

    def excel_choices(self) -> ExcelChoices | None:
        """The dropdown of the type's Excel column (data validation), if it has one."""
        return None

    def example_text(self, limits: Mapping[str, Any]) -> str:
        """An example for the 填写说明 sheet, within the field's `min`/`max` where the sample is not."""
        return self.to_text(self.sample())
