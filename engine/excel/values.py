"""The preview's value step: cells of choice columns that are neither an option nor an alias of one, and cells of
yes/no columns that are no spelling of 是 or 否, listed per column with how many rows have them and the closest option;
the user's choices (file text → option) are read as that option by every later pass and remembered for the user's next
file of the form."""
from __future__ import annotations

import difflib
from typing import Any, Mapping

from engine.fields.boolean import YES_NO, BooleanField
from engine.fields.choice import ChoiceField, MultiChoiceField, split_items
from engine.fields.normalise import normalise_code
from engine.spec import FormSpec

MAX_LISTED = 100  # distinct unknown values listed per column; a column with more is not a spelling problem
# A yes/no cell starting with one of these says no (非独生, 无, 没有, 不住校); these few say nothing either way.
_NEGATIONS = ("非", "不", "无", "没", "未", "否")
_UNSURE = frozenset({"未知", "不详", "不清楚", "不确定", "无法确定"})
_YES = frozenset({"有", "已", "是的", "需要"})


def value_key(text: str) -> str:
    """Cell text as the value step compares it (full-width, spaces and case do not matter), as options are looked up."""
    return normalise_code(str(text)).casefold()


def value_kinds(form: FormSpec) -> dict[str, ChoiceField]:
    """The fields the value step covers, each as the choice it offers: a choice field its options, a yes/no field
    是 and 否 (every spelling the field reads an alias)."""
    kinds: dict[str, ChoiceField] = {}
    for key, spec in form.fields.items():
        if isinstance(spec.kind, ChoiceField):
            kinds[key] = spec.kind
        elif isinstance(spec.kind, BooleanField):
            kinds[key] = YES_NO
    return kinds


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


def suggest_answer(label: str, text: str) -> str:
    """是 or 否 where a yes/no cell says it plainly: the subject of the field's label (独生 in 是否独生子女) or 有 is 是;
    a negation (非独生, 无) is 否; "" otherwise. Similarity would not do: 不对 is close to 对."""
    target = value_key(text)
    if not target or target in _UNSURE:
        return ""
    subject, bare = value_key(label.replace("是否", "")), target.removeprefix("是") or target
    if target in _YES or (subject and bare in subject):  # 非农 in 是否非农业户口 is 是 before 非 reads as a no
        return "是"
    if target.startswith(_NEGATIONS):
        return "否"
    return "是" if subject and subject in bare else ""


class ValueReader:
    """Reads the choice and yes/no cells of one form: a chosen mapping applied, values that are no option noted."""

    def __init__(self, form: FormSpec, chosen: Mapping[str, Mapping[str, str]]) -> None:
        self.kinds = value_kinds(form)
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
    kinds = value_kinds(form)

    def suggested(key: str, text: str) -> str:
        spec = form.fields[key]
        return suggest_answer(spec.label, text) if isinstance(spec.kind, BooleanField) else suggest_option(kinds[key], text)

    return {key: [[text, n, suggested(key, text)] for text, n in sorted(found.items(), key=lambda kv: -kv[1])]
            for key, found in counts.items() if key in kinds and found}


def merge_chosen(before: Mapping[str, Mapping[str, str]], chosen: list[tuple[str, str, str]],
                 form: FormSpec) -> dict[str, dict[str, str]]:
    """Earlier choices plus new ones (field key, file text, option value; "" forgets one); unknown fields and values
    that are no option are dropped."""
    kinds = value_kinds(form)
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
