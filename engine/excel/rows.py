"""Reading an upload's rows: the header found, each cell through its field type's `from_cell`, each row validated
as a new record by the one validator. Needs no database: this is what the helper process runs
(engine/excel/parallel.py) while the importing process plans and writes."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from engine.excel.layout import ColumnMap, KeySheet, header_score, key_lookup
from engine.excel.limits import FileRejected
from engine.excel.reader import Row
from engine.excel.values import ValueReader
from engine.excel.workbooks import FORMULA_PREFIXES
from engine.fields import LinkRef
from engine.fields.normalise import integral_text
from engine.issues import FieldError, Issue
from engine.spec import FormSpec
from engine.validation import CleanResult, clean_field, clean_record

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_FORMULA_STARTS = FORMULA_PREFIXES[:4]  # "=", "+", "-", "@"; tab and CR are stripped away before the test


@dataclass
class RowInput:
    number: int
    cells: list[Any]
    submitted: dict[str, Any] = field(default_factory=dict)  # writable fields; None = empty cell
    key: str | None = None  # the natural key as JSON, when every part is valid
    key_text: str = ""
    unit_text: str = ""
    unit_within: dict[str, str] = field(default_factory=dict)  # org level → the text of its column (年级: 高一)
    issues: list[Issue] = field(default_factory=list)  # cells their field type could not read
    unknown_values: list[tuple[str, str]] = field(default_factory=list)  # (field key, text): no option, no alias
    formulas: int = 0  # text cells that look like formulas, kept as inert text
    # clean_record of the row as a new record (defaults + the row), made while rows are prepared;
    # a row that turns out to update a stored record is cleaned again with the stored values.
    as_new: CleanResult | None = None


def find_header(form: FormSpec, rows: Iterator[Row], keys: KeySheet, limit: int) -> tuple[Row, list[Row]]:
    """The header is the row among the first `limit` that names the most fields (a title row may sit above)."""
    names = key_lookup(form)
    scanned: list[Row] = []
    best: tuple[int, int] = (0, -1)
    for row in rows:
        scanned.append(row)
        score = header_score(row[1], names, keys)
        if score > best[0]:
            best = (score, len(scanned) - 1)
        if len(scanned) >= limit:
            break
    if best[1] < 0:
        if not any(filled(cells) for _n, cells in scanned):
            raise FileRejected("import_no_rows")
        example = "、".join(f.label for f in list(form.fields.values())[:3])
        raise FileRejected("import_no_header", rows=limit, example=example)
    return scanned[best[1]], scanned[best[1] + 1:]


def filled(cells: list[Any]) -> bool:
    return any(not blank(cell) for cell in cells)


def blank(cell: Any) -> bool:
    # str.strip() already removes NBSP and the ideographic space; the reader gives "" for empty cells.
    return cell is None or cell == "" or (isinstance(cell, str) and not cell.strip().strip(_ZERO_WIDTH).strip())


def cell_text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float):
        return integral_text(cell) or repr(cell)
    if isinstance(cell, (dt.date, dt.datetime)):
        return cell.isoformat()
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    return str(cell)


class RowReader:
    """Turns a mapped file's rows into RowInputs: cells read, natural key found, each row validated as new."""

    def __init__(self, form: FormSpec, columns: ColumnMap, defaults: dict[str, Any], validate_as_new: bool,
                 values: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.form, self.columns, self.defaults = form, columns, defaults
        self.validate_as_new = validate_as_new
        self.values = ValueReader(form, values or {})
        self.readers = [(key, index, form.fields[key].kind.cell_reader(), key in self.values.kinds)
                        for key, index in columns.fields.items()]

    def prepare(self, rows: list[Row]) -> list[RowInput]:
        """The rows read and validated; they come back without their cells, which the caller already has (a
        helper process need not send them back)."""
        prepared = []
        for number, cells in rows:
            row = self.convert(number, cells)
            if self.validate_as_new:
                row.as_new = clean_record(self.form, self.new_raw(row))
            row.cells = []
            prepared.append(row)
        return prepared

    def new_raw(self, row: RowInput) -> dict[str, Any]:
        """The row as a new record's raw values: the form's defaults, then every filled cell."""
        raw = dict(self.defaults)
        raw.update({k: v for k, v in row.submitted.items() if v is not None})
        return raw

    def convert(self, number: int, cells: list[Any]) -> RowInput:
        row = RowInput(number, cells)
        width = len(cells)
        submitted = row.submitted
        for key, index, from_cell, choice in self.readers:
            cell = cells[index] if index < width else None
            if isinstance(cell, str):
                text = cell.strip()
                # The full blank test only for text that starts or ends with something strip() keeps.
                if not text or ((text[0] in _ZERO_WIDTH or text[-1] in _ZERO_WIDTH) and blank(text)):
                    submitted[key] = None
                    continue
                if text.startswith(_FORMULA_STARTS):
                    row.formulas += 1
            elif cell is None:
                submitted[key] = None
                continue
            if choice:  # the value step's choices applied; values that are no option noted for the preview
                cell = self.values.read(key, cell, row.unknown_values)
            if from_cell is None:  # the type takes cells as they are
                submitted[key] = cell
                continue
            try:
                submitted[key] = from_cell(cell)
            except FieldError as exc:
                row.issues.append(exc.issue.at(key))
        if self.columns.unit is not None and self.columns.unit < width:
            row.unit_text = cell_text(cells[self.columns.unit]).strip()
            for level, index in self.columns.levels.items():
                text = cell_text(cells[index]).strip() if index < width else ""
                if text:
                    row.unit_within[level] = text
        self._natural_key(row)
        return row

    def _natural_key(self, row: RowInput) -> None:
        parts, texts = [], []
        for key in self.form.natural_key:
            spec = self.form.fields[key]
            if key in row.submitted:
                raw = row.submitted[key]
            else:
                index = self.columns.match_only.get(key)
                cell = row.cells[index] if index is not None and index < len(row.cells) else None
                try:
                    raw = None if blank(cell) else spec.kind.from_cell(cell)
                except FieldError:
                    return
            value, issues = clean_field(spec, raw)
            if issues or value is None:
                return
            # A link named by a unique value of its target (学号) stays a name here: the planner resolves it.
            parts.append({"ref": value.text} if isinstance(value, LinkRef) else spec.kind.to_json(value))
            texts.append(spec.kind.to_text(value))
        if parts:
            row.key = json.dumps(parts, ensure_ascii=False)
            row.key_text = "、".join(texts)

    def key_cell_filled(self, row: RowInput) -> bool:
        return any(row.submitted.get(k) is not None or self._match_cell(row, k) for k in self.form.natural_key)

    def _match_cell(self, row: RowInput, key: str) -> bool:
        index = self.columns.match_only.get(key)
        return index is not None and index < len(row.cells) and not blank(row.cells[index])
