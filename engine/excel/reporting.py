"""What an import pass tells people: counts per outcome, each refused row's cells with their messages, and the
notes of a preview (values stored differently than typed, merged cells, formula-like text, empty rows)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from sqlalchemy.orm import Session as DbSession

from engine.excel.layout import UNIT_KEY, ColumnMap
from engine.excel.reader import Table
from engine.excel.rows import RowInput, cell_text
from engine.issues import Issue
from engine.messages import render
from engine.spec import FormSpec

if TYPE_CHECKING:
    from engine.excel.planning import Plan

OUTCOMES = ("new", "updated", "unchanged", "invalid")
NORMALISED_MEMO = 50_000


@dataclass
class CellError:
    column: int | None  # index in the uploaded row; None when the field has no column in the file
    label: str
    value: str
    message: str


@dataclass
class PassResult:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    processed: int = 0  # data rows seen, empty ones included
    last_row: int = 0
    header_row: int = 0
    duplicates: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    late_errors: dict[int, list[CellError]] = field(default_factory=dict)  # first rows of duplicates
    warnings: list[Issue] = field(default_factory=list)
    normalised: dict[str, list[Any]] = field(default_factory=dict)  # field → [count, before, after]
    formula_text: int = 0
    empty_rows: int = 0
    unknown: dict[str, str] = field(default_factory=dict)  # header matching no field → suggested field key or ""
    unknown_values: dict[str, dict[str, int]] = field(default_factory=dict)  # field key → {value that is no option: rows}


class Sink(Protocol):
    """Where a pass reports each batch: inside the batch's own transaction when it writes."""

    def batch(self, s: DbSession, plans: list[Plan], errors: dict[int, list[CellError]], result: PassResult) -> None: ...


class Reporter:
    """Turns a pass's issues into cells people can find, and collects the preview's notes."""

    def __init__(self, form: FormSpec, columns: ColumnMap, result: PassResult) -> None:
        self.form, self.columns, self.result = form, columns, result
        self._normal: dict[tuple[str, str], str | None] = {}
        # A link names a record: the record it found is not a "normalised" spelling of the cell.
        self._named = {k for k, f in self.form.fields.items() if f.kind.name == "link"}

    def cell_errors(self, row: RowInput, issues: Iterable[Issue]) -> list[CellError]:
        errors = []
        for issue in issues:
            head = issue.path.split(".")[0]
            label, overrides = self.label_of(head)
            column = self.columns.column_of(head) if head else None
            value = cell_text(row.cells[column]) if column is not None and column < len(row.cells) else ""
            errors.append(CellError(column, label, value, render(issue, label, overrides)))
        return errors

    def late_error(self, number: int, key: str, issue: Issue) -> None:
        """An error found for a row of an earlier batch (the first row of a repeat) that is already reported."""
        label, overrides = self.label_of(key)
        self.result.late_errors.setdefault(number, []).append(
            CellError(self.columns.column_of(key), label, issue.params.get("value", ""), render(issue, label, overrides)))

    def label_of(self, key: str) -> tuple[str, Any]:
        if key == UNIT_KEY:
            return self.form.unit_label, {}
        if key in self.form.fields:
            return self.form.fields[key].label, self.form.fields[key].messages
        return "", {}

    def count_normalised(self, row: RowInput, values: dict[str, Any]) -> None:
        """Typed text the field stored differently ("２０２３" → "2023", "Y" → "是"), for the preview's notes."""
        cells, memo = row.cells, self._normal
        for key, index in self.columns.fields.items():
            cell = cells[index] if index < len(cells) else None
            if not isinstance(cell, str) or cell == "" or key in self._named:
                continue
            if (key, cell) in memo:
                after = memo[(key, cell)]
            else:
                value = values.get(key)
                text = None if value is None else self.form.fields[key].kind.to_text(value)
                after = text if text is not None and text != cell else None
                if len(memo) > NORMALISED_MEMO:
                    memo.clear()
                memo[(key, cell)] = after
            if after is not None:
                entry = self.result.normalised.setdefault(key, [0, cell, after])
                entry[0] += 1

    def closing_warnings(self, table: Table) -> list[Issue]:
        warnings = []
        for key, (count, before, after) in self.result.normalised.items():
            warnings.append(Issue("import_normalised", {"label": self.form.fields[key].label, "count": count,
                                                        "before": before.replace("\u00a0", "␣"), "after": after}))
        if table.stats.get("merged"):
            warnings.append(Issue("import_merged", {"count": table.stats["merged"]}))
        if self.result.formula_text:
            warnings.append(Issue("import_formula_text", {"count": self.result.formula_text}))
        if self.result.empty_rows:
            warnings.append(Issue("import_empty_rows", {"count": self.result.empty_rows}))
        return warnings
