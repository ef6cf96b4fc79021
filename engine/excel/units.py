"""The units an import may put records in, found by full path ("…/高一/高一(1)班") or a unique tail of it — or, when
the file writes only a number ("5班", "(5)", "五班") next to columns naming the levels above (a 年级 column), by that
number among the units under the named ones."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy.orm import Session as DbSession

from engine.fields.normalise import remove_spaces, to_halfwidth
from engine.issues import Issue
from engine.org import Unit, all_units
from engine.permissions import Principal, placeable_units
from engine.spec import FormSpec, OrgLevel

SEPARATORS = ("/", "\\", "／", ">", "＞")
_DIGITS = re.compile(r"\d+")
_HAN_NUMERAL = re.compile(r"[零〇一二两三四五六七八九十百]+")
_HAN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _parts(text: str) -> list[str]:
    text = remove_spaces(to_halfwidth(text))
    for separator in SEPARATORS[1:]:
        text = text.replace(separator, "/")
    return [part for part in text.split("/") if part]


def comparable(text: str) -> str:
    return remove_spaces(to_halfwidth(str(text))).casefold()


def han_number(text: str) -> int:
    """"五" 5, "十二" 12, "二十" 20, "一百零一" 101; digits without a unit ("一二") read as written (12)."""
    total, current = 0, 0
    for char in text:
        if char == "百":
            total, current = total + (current or 1) * 100, 0
        elif char == "十":
            total, current = total + (current or 1) * 10, 0
        else:
            current = current * 10 + _HAN_DIGITS[char]
    return total + current


def _letters(text: str) -> set[str]:
    """What is left of a name without its numbers and brackets: "(5)班" → {"班"}."""
    return set(_HAN_NUMERAL.sub("", _DIGITS.sub("", to_halfwidth(text)))) - set("()[]【】-_.# ")


def number_in(text: str) -> int | None:
    """The first number in the text: Arabic digits (full-width too), else Chinese numerals."""
    text = to_halfwidth(text)
    found = _DIGITS.search(text)
    if found:
        return int(found.group())
    found = _HAN_NUMERAL.search(text)
    return han_number(found.group()) if found else None


@dataclass(frozen=True)
class LevelCell:
    """A cell naming a unit of a level above the record's (年级 “七年级”): the names it stands for (the text, and the
    option it is a value, label or alias of: 初一), its column, for the error that names it."""

    level: str
    label: str  # the level's label (年级)
    text: str
    names: frozenset[str]  # comparable()
    column: str  # "C"


@dataclass
class UnitChoices:
    """Units by every tail of their path: "高一(1)班", "高一/高一(1)班", … up to the full path."""

    units: list[Unit]
    tree: list[Unit] = field(default_factory=list)  # every unit, for the levels above
    levels: tuple[OrgLevel, ...] = ()
    by_tail: dict[tuple[str, ...], list[Unit]] = field(default_factory=dict)
    # Answers by cell text: a file names a few units many thousands of times.
    _answers: dict[Any, tuple[int | None, Issue | None]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for unit in self.units:
            parts = _parts(unit.full_name)
            for start in range(len(parts)):
                self.by_tail.setdefault(tuple(parts[start:]), []).append(unit)
        self.by_id = {u.id: u for u in self.tree or self.units}
        self.patterns = {level.key: re.compile(level.number) for level in self.levels if level.number}
        self._numbers: dict[int, int | None] = {}

    @property
    def only(self) -> Unit | None:
        return self.units[0] if len(self.units) == 1 else None

    def resolve(self, raw: Any, label: str, within: tuple[LevelCell, ...] = ()) -> tuple[int | None, Issue | None]:
        text = "" if raw is None else str(raw).strip()
        if not text:
            return None, None
        key = (text, within) if within else text
        answer = self._answers.get(key)
        if answer is None:
            if len(self._answers) >= 10_000:
                self._answers.clear()
            answer = self._answers[key] = self._resolve(text, within)
        return answer

    def _resolve(self, text: str, within: tuple[LevelCell, ...]) -> tuple[int | None, Issue | None]:
        found = self.by_tail.get(tuple(_parts(text)), [])
        if len(found) == 1:
            return found[0].id, None
        if within and (found or self._numbered(text, within)):
            # The cells of the levels above narrow a name several units share, or find the unit by its number.
            narrowed = [u for u in found if self._fits(u, within)] if found else self._by_number(text, within)
            if len(narrowed) == 1:
                return narrowed[0].id, None
            params = {"value": text, "within": "、".join(f"{c.label}“{c.text}”" for c in within),
                      "columns": "、".join(f"{c.column} 列" for c in within)}
            if narrowed:
                return None, Issue("import_unit_within_ambiguous", params | {
                    "examples": "、".join(u.full_name for u in narrowed[:3])})
            return None, Issue("import_unit_within_unknown", params | {"number": self._wanted(text, within) or "—"})
        if found:
            return None, Issue("import_unit_ambiguous", {"value": text, "example": found[0].full_name})
        return None, Issue("import_unit_unknown", {"value": text})

    def _short(self, text: str, within: tuple[LevelCell, ...]) -> str:
        """The cell once the names of the levels above are taken off its front (高一5班 → 5班)."""
        rest = comparable(text)
        for cell in within:
            for name in sorted(cell.names, key=len, reverse=True):
                if name and rest.startswith(name):
                    rest = rest[len(name):]
                    break
        return rest

    def _wanted(self, text: str, within: tuple[LevelCell, ...]) -> int | None:
        return number_in(self._short(text, within))

    def _numbered(self, text: str, within: tuple[LevelCell, ...]) -> bool:
        """Whether the cell is written as a number the way units are named ("5班", "(5)", "五班"), not a name of its own
        ("高三(9)班"): then a unit not found is reported with the level cells that were looked in."""
        if len(_parts(text)) != 1:
            return False
        short = self._short(text, within)
        if number_in(short) is None:
            return False
        extra = _letters(short)
        return any(extra <= _letters(self._rest(u)) for u in self.units)

    def _by_number(self, text: str, within: tuple[LevelCell, ...]) -> list[Unit]:
        """Units under the named ones with the cell's number, whose names hold every other character of the cell
        ("5班", "(5)", "五班" find 高一(5)班; "高三(9)班" or a path naming another unit finds nothing)."""
        if len(_parts(text)) != 1:
            return []
        short = self._short(text, within)
        wanted = number_in(short)
        if wanted is None:
            return []
        extra = _letters(short)
        return [u for u in self.units
                if self._fits(u, within) and self.number_of(u) == wanted and extra <= _letters(self._rest(u))]

    def _rest(self, unit: Unit) -> str:
        name = comparable(unit.name)
        parent = self.by_id.get(unit.parent_id) if unit.parent_id is not None else None
        prefix = comparable(parent.name) if parent is not None else ""
        return name[len(prefix):] if prefix and name.startswith(prefix) else name

    def _fits(self, unit: Unit, within: tuple[LevelCell, ...]) -> bool:
        """Each level cell names the unit's ancestor of that level."""
        ancestors = {}
        parent = self.by_id.get(unit.parent_id) if unit.parent_id is not None else None
        while parent is not None:
            ancestors.setdefault(parent.level, parent)
            parent = self.by_id.get(parent.parent_id) if parent.parent_id is not None else None
        return all(cell.level in ancestors and comparable(ancestors[cell.level].name) in cell.names for cell in within)

    def number_of(self, unit: Unit) -> int | None:
        """The unit's number: the level's `number` pattern's first group, else the first number after the parent's
        name (高一(5)班 under 高一 → 5; the 一 of 高一 is not it)."""
        if unit.id not in self._numbers:
            name = to_halfwidth(remove_spaces(unit.name))
            pattern = self.patterns.get(unit.level)
            if pattern is not None:
                match = pattern.search(name)
                number = number_in(match.group(1)) if match and match.group(1) else None
            else:
                parent = self.by_id.get(unit.parent_id) if unit.parent_id is not None else None
                prefix = to_halfwidth(remove_spaces(parent.name)) if parent is not None else ""
                number = number_in(name[len(prefix):] if prefix and name.startswith(prefix) else name)
            self._numbers[unit.id] = number
        return self._numbers[unit.id]


def unit_choices(s: DbSession, principal: Principal, form: FormSpec, action: str,
                 levels: Iterable[OrgLevel] = ()) -> UnitChoices:
    tree = all_units(s)
    return UnitChoices(placeable_units(tree, principal, form, action), tree, tuple(levels))
