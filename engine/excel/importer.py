"""One pass over an upload: rows read (engine/excel/rows.py, possibly in a helper process), each batch planned
(engine/excel/planning.py), written through the record service's batch write (the one write path, in one
transaction per batch), and reported (engine/excel/reporting.py). `write=False` is the dry run: the preview, or
the all-or-nothing check before anything is written.

Only what is Excel's lives here and in those modules: reading rows, mapping columns, planning by natural key,
repeats within the file, reporting. Numbering, unique values, audit, scope and permission checks are the record
service's.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Callable, Iterator

from sqlalchemy.orm import Session as DbSession

from engine.excel.layout import header_text, map_header, read_key_sheet
from engine.excel.limits import FileRejected
from engine.excel.parallel import helper_possible, prepared_batches
from engine.excel.planning import Context, Plan, Planner
from engine.excel.reader import Row, Table
from engine.excel.reporting import OUTCOMES, CellError, PassResult, Reporter, Sink
from engine.excel.rows import RowInput, RowReader, cell_text, filled, find_header
from engine.excel.values import MAX_LISTED

__all__ = ["OUTCOMES", "CellError", "Context", "ImportPass", "Interrupted", "PassResult", "Plan", "RowInput", "cell_text"]
ERROR_MODES = ("all_or_nothing", "skip_invalid")


class Interrupted(Exception):
    """The worker is stopping; the job keeps its last committed row and continues when re-run."""


class ImportPass:
    """Reads a table once. `write=False` is the dry run (preview, or the all-or-nothing check)."""

    def __init__(self, ctx: Context, *, write: bool, sink: Sink, known_duplicates: dict[str, dict[str, list[int]]] | None = None,
                 start_after: int = 0, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.ctx, self.form, self.write, self.sink = ctx, ctx.form, write, sink
        self.known = known_duplicates
        self.start_after = start_after
        self.should_stop = should_stop
        self.result = PassResult()
        self.data_rows = 0

    def run(self, table: Table) -> PassResult:
        keys = read_key_sheet(table.keys)
        if keys.form_key and keys.form_key != self.form.key:
            raise FileRejected("import_wrong_form", other=keys.form_key, target=self.form.title)
        keys.headers.update({header_text(h): k for h, k in self.ctx.mapping.items() if k and header_text(h)})
        ignored = {header_text(h) for h, k in self.ctx.mapping.items() if not k}
        (header_row, header), rest = find_header(self.form, table.rows, keys, self.ctx.limits.header_scan_rows)
        header = [None if header_text(c) in ignored else c for c in header]  # columns the user chose to ignore
        columns = map_header(self.form, self.ctx.found, header, header_row, keys, self.ctx.mode, self.ctx.unit_required,
                             self.ctx.org_levels)
        self.result.unknown = columns.unknown
        self.result.header_row = header_row
        self.result.warnings = list(columns.warnings)
        self.reader = RowReader(self.form, columns, self.ctx.defaults, validate_as_new=self.ctx.mode != "update",
                                values=self.ctx.values)
        self.reporter = Reporter(self.form, columns, self.result)
        self.planner = Planner(self.ctx, self.reader, self.reporter, self.result, self.write, self.known)
        self.planner.sheet = table.sheet or ""
        helper = 0 < self.ctx.limits.helper_rows <= table.last_row and helper_possible()
        with fewer_collections(), prepared_batches(self, self._batches(rest, table.rows), helper) as batches:
            for rows, prepared in batches:
                self._batch(rows, prepared)
        if not self.data_rows and not self.start_after:
            raise FileRejected("import_no_data_rows", row=header_row)
        self.result.warnings += self.reporter.closing_warnings(table)
        return self.result

    def prepare(self, rows: list[Row]) -> list[RowInput]:
        """What the helper process runs for a batch (engine/excel/parallel.py)."""
        return self.reader.prepare(rows)

    def _batches(self, first: list[Row], rest: Iterator[Row]) -> Iterator[list[Row]]:
        batch: list[Row] = []
        data_rows = 0
        for row in _chain(first, rest):
            is_filled = filled(row[1])
            data_rows += is_filled
            self.data_rows = data_rows
            if data_rows > self.ctx.limits.max_rows:
                raise FileRejected("import_file_rows", limit=self.ctx.limits.max_rows, count=f"{data_rows}+")
            if row[0] <= self.start_after:
                continue  # committed before the interruption; its progress was saved with it
            if not is_filled:
                self.result.empty_rows += 1
                self.result.processed += 1
                continue
            batch.append(row)
            if len(batch) >= self.ctx.limits.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _batch(self, rows: list[Row], inputs: list[RowInput]) -> None:
        if self.should_stop():
            raise Interrupted()
        for row, (_number, cells) in zip(inputs, rows):
            row.cells = cells
        self.result.formula_text += sum(row.formulas for row in inputs)
        for row in inputs:
            for key, text in row.unknown_values:
                found = self.result.unknown_values.setdefault(key, {})
                if text in found or len(found) < MAX_LISTED:
                    found[text] = found.get(text, 0) + 1
        if self.write:
            with self.ctx.db.write() as s:
                plans = self.planner.plan(s, inputs)
                self._write(s, plans)
                self._report(s, plans, rows[-1][0])
                s.commit()
        else:
            with self.ctx.db.read() as s:
                plans = self.planner.plan(s, inputs)
            with self.ctx.db.write() as s:
                self._report(s, plans, rows[-1][0])
                s.commit()

    def _write(self, s: DbSession, plans: list[Plan]) -> None:
        writes = [p.write for p in plans if p.action in ("new", "updated") and p.write is not None]
        if writes:
            self.ctx.records.write_batch(s, self.ctx.principal, self.form, writes)
            self.planner.take_refusals(plans)

    def _report(self, s: DbSession, plans: list[Plan], last_row: int) -> None:
        errors: dict[int, list[CellError]] = {}
        self.planner.settle(plans)
        for plan in plans:
            self.result.counts[plan.action] += 1
            if plan.action == "invalid":
                errors[plan.row.number] = self.reporter.cell_errors(plan.row, plan.issues)
            elif not self.write and plan.write is not None:
                self.reporter.count_normalised(plan.row, plan.write.values)  # a note for the preview only
        self.result.processed += len(plans)
        self.result.last_row = last_row
        self.sink.batch(s, plans, errors, self.result)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """An import allocates millions of short-lived objects and keeps few of them; with the default threshold (a
    young-generation collection every 700 allocations) about a tenth of its time went to the garbage collector
    scanning them (bench/RESULTS.md). Process-wide, and harmless to other requests meanwhile."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], 50_000), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _chain(first: list[Row], rest: Iterator[Row]) -> Iterator[Row]:
    yield from first
    yield from rest
