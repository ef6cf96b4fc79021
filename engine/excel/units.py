"""The units an import may put records in, found by full path ("…/高一/高一(1)班") or a unique tail of it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session as DbSession

from engine.fields.normalise import remove_spaces, to_halfwidth
from engine.issues import Issue
from engine.org import Unit, all_units
from engine.permissions import Principal, placeable_units
from engine.spec import FormSpec

SEPARATORS = ("/", "\\", "／", ">", "＞")


def _parts(text: str) -> list[str]:
    text = remove_spaces(to_halfwidth(text))
    for separator in SEPARATORS[1:]:
        text = text.replace(separator, "/")
    return [part for part in text.split("/") if part]


@dataclass
class UnitChoices:
    """Units by every tail of their path: "高一(1)班", "高一/高一(1)班", … up to the full path."""

    units: list[Unit]
    by_tail: dict[tuple[str, ...], list[Unit]] = field(default_factory=dict)
    # Answers by cell text: a file names a few units many thousands of times.
    _answers: dict[str, tuple[int | None, Issue | None]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for unit in self.units:
            parts = _parts(unit.full_name)
            for start in range(len(parts)):
                self.by_tail.setdefault(tuple(parts[start:]), []).append(unit)

    @property
    def only(self) -> Unit | None:
        return self.units[0] if len(self.units) == 1 else None

    def resolve(self, raw: Any, label: str) -> tuple[int | None, Issue | None]:
        text = "" if raw is None else str(raw).strip()
        if not text:
            return None, None
        answer = self._answers.get(text)
        if answer is None:
            if len(self._answers) >= 10_000:
                self._answers.clear()
            answer = self._answers[text] = self._resolve(text)
        return answer

    def _resolve(self, text: str) -> tuple[int | None, Issue | None]:
        found = self.by_tail.get(tuple(_parts(text)), [])
        if len(found) == 1:
            return found[0].id, None
        if found:
            return None, Issue("import_unit_ambiguous", {"value": text, "example": found[0].full_name})
        return None, Issue("import_unit_unknown", {"value": text})


def unit_choices(s: DbSession, principal: Principal, form: FormSpec, action: str) -> UnitChoices:
    return UnitChoices(placeable_units(all_units(s), principal, form, action))
