"""The contract every field type fulfils: convert, validate, store, render and round-trip to Excel."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping

from engine.issues import FieldError, Issue


def is_empty(raw: Any) -> bool:
    if raw is None:
        return True
    if isinstance(raw, str):
        return raw.strip() == ""
    if isinstance(raw, (list, tuple, dict)):
        return len(raw) == 0
    return False


@dataclass(frozen=True)
class FieldType:
    """Base of all field types; one subclass per YAML `type:` value, registered in `FIELD_TYPES`.

    A subclass is a frozen dataclass whose fields are its type-specific YAML parameters
    (e.g. `options` for choice, `accept`/`max_size` for file). `params_schema` is the JSON Schema
    of those parameters; the loader checks them before `build` is called.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # Chinese name of the type, shown in docs and the Excel 填写说明
    widget: ClassVar[str] = "text"  # web/templates/widgets/<widget>.html
    input_type: ClassVar[str] = "text"  # HTML <input type>, for widgets that use it
    excel_format: ClassVar[str] = "@"  # openpyxl number_format of the column; "@" is text
    params_schema: ClassVar[Mapping[str, Any]] = {}
    # Generic constraints (engine/validation/rules.py) this type accepts in YAML.
    constraints: ClassVar[frozenset[str]] = frozenset()
    # Whether values are comparable with < and >, so list sorting and min/max make sense.
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

    # --- storage ---------------------------------------------------------------------------------
    def to_json(self, value: Any) -> Any:
        return value

    def from_json(self, stored: Any) -> Any:
        return stored

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

    def widget_context(self) -> dict[str, Any]:
        """Extra, type-specific values for the widget template (options, accept, ...)."""
        return {}

    def referenced_fields(self) -> tuple[str, ...]:
        """Other fields this type reads (generated numbers); the compiler checks they exist."""
        return ()

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

    def format_hint(self) -> str:
        """Plain-Chinese description of the accepted format, for the 填写说明 sheet and docs."""
        return self.title
