"""The preview's value step: cells of choice columns that are neither an option nor an alias of one, listed per
column with how many rows have them and the closest option; the user's choices (file text → option) are read as that
option by every later pass and remembered for the user's next file of the form."""
from __future__ import annotations

import difflib
from typing import Any, Mapping

from engine.fields.choice import ChoiceField, MultiChoiceField, split_items
from engine.fields.normalise import normalise_code
from engine.spec import FormSpec

MAX_LISTED = 100  # distinct unknown values listed per column; a column with more is not a spelling problem


def value_key(text: str) -> str:
    """Cell text as the value step compares it (full-width, spaces and case do not matter), as options are looked up."""
    return normalise_code(str(text)).casefold()


def choice_kinds(form: FormSpec) -> dict[str, ChoiceField]:
    return {key: spec.kind for key, spec in form.fields.items() if isinstance(spec.kind, ChoiceField)}


def suggest_option(kind: ChoiceField, text: str) -> str:
    """The option a value most likely means (很好 → 健康或良好 through its alias 良好); "" when none is close."""
    target = value_key(text)
    best, best_value = 0.0, ""
    for option in kind.options:
        for name in (option.label, option.value, *option.aliases):
            other = value_key(name)
            score = difflib.SequenceMatcher(None, target, other).ratio()
            if target and other and (target in other or other in target):
                score = max(score, 0.75)
            if score > best:
                best, best_value = score, option.value
    return best_value if best >= 0.5 else ""


class ValueReader:
    """Reads the choice cells of one form: a chosen mapping applied, values that are no option noted."""

    def __init__(self, form: FormSpec, chosen: Mapping[str, Mapping[str, str]]) -> None:
        self.kinds = choice_kinds(form)
        self.chosen = {key: {value_key(text): value for text, value in found.items() if value}
                       for key, found in chosen.items() if key in self.kinds}

    def read(self, key: str, cell: Any, unknown: list[tuple[str, str]]) -> Any:
        """The cell as the field should read it; values that are still no option are appended to `unknown`."""
        kind = self.kinds.get(key)
        if kind is None or isinstance(cell, bool) or not isinstance(cell, (str, int, float)):
            return cell
        text = cell.strip() if isinstance(cell, str) else kind.from_cell(cell)
        chosen = self.chosen.get(key, {})
        if isinstance(kind, MultiChoiceField):
            items = [chosen.get(value_key(item), item) for item in split_items(text)]
            unknown += [(key, item) for item in items if kind.resolve(item) is None]
            return "、".join(items)
        mapped = chosen.get(value_key(text)) if chosen else None
        if mapped is not None:
            return mapped
        if kind.resolve(text) is None:
            unknown.append((key, text))
        return cell


def listed(form: FormSpec, counts: Mapping[str, Mapping[str, int]]) -> dict[str, list[list[Any]]]:
    """The preview's list: field key → [[value, rows, suggested option value], …], most frequent first."""
    kinds = choice_kinds(form)
    return {key: [[text, n, suggest_option(kinds[key], text)] for text, n in sorted(found.items(), key=lambda kv: -kv[1])]
            for key, found in counts.items() if key in kinds and found}


def merge_chosen(before: Mapping[str, Mapping[str, str]], chosen: list[tuple[str, str, str]],
                 form: FormSpec) -> dict[str, dict[str, str]]:
    """Earlier choices plus new ones (field key, file text, option value; "" forgets one); unknown fields and values
    that are no option are dropped."""
    kinds = choice_kinds(form)
    merged = {key: dict(found) for key, found in before.items() if key in kinds}
    for key, text, value in chosen:
        kind = kinds.get(key)
        if kind is None or not text:
            continue
        resolved = kind.resolve(value) if value else None
        found = merged.setdefault(key, {})
        if resolved is None:
            found.pop(text, None)
        else:
            found[text] = resolved
    return {key: found for key, found in merged.items() if found}
