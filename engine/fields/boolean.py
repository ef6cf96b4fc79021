"""Yes/no answers in the many spellings Chinese spreadsheets and web forms use."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean

from engine.fields.base import ExcelChoices, FieldType, is_empty
from engine.fields.choice import ChoiceField, Option
from engine.fields.normalise import normalise_code
from engine.fields.widgets import Widget
from engine.issues import FieldError

# Compared after casefold(); "on" is what an HTML checkbox sends. Ticks and crosses are how paper forms and
# many school spreadsheets mark yes and no (✓ U+2713, ✔ U+2714, √ U+221A; ✗ U+2717, ✘ U+2718, × U+00D7, ✕ U+2715).
# A letter X is not among them: some mark a ticked box with it, others a "no".
_TRUE = frozenset({"是", "y", "yes", "true", "1", "on", "对", "✓", "✔", "√", "☑"})
_FALSE = frozenset({"否", "n", "no", "false", "0", "off", "错", "✗", "✘", "×", "✕", "☒"})
_SHOWN = {True: "是", False: "否"}
# The two answers as options, every spelling above an alias: an import's value step (engine/excel/values.py) offers
# these for a yes/no column, so only text none of them covers (有/无, 独生/非独生) is listed there.
YES_NO = ChoiceField(options=(Option("是", "是", tuple(sorted(_TRUE - {"是"}))),
                              Option("否", "否", tuple(sorted(_FALSE - {"否"})))))


class YesNoRadios(Widget):
    """Two radio buttons, 是 and 否: a missing answer stays distinguishable from 否."""

    name = "boolean"

    def selected(self, value: Any, raw: Any) -> frozenset[str]:
        source = raw if raw is not None else value
        if isinstance(source, bool):
            return frozenset({_SHOWN[source]})
        return frozenset() if source is None else frozenset({str(source)})


@dataclass(frozen=True)
class BooleanField(FieldType):
    name = "boolean"
    title = "是/否"
    widget_type = YesNoRadios
    input_type = "checkbox"
    sql_type = Boolean
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
        return _SHOWN[bool(value)]

    def excel_choices(self) -> ExcelChoices:
        return ExcelChoices(("是", "否"), inline=True)

    def sample(self) -> bool:
        return True

    def format_hint(self) -> str:
        return "填写“是”或“否”（也可写 √/×、对/错、Y/N）"
