"""Rows of an upload, streamed: xlsx through python-calamine in a capped child process, CSV in-process."""
from __future__ import annotations

import csv
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from engine.excel.limits import FileRejected, Limits
from engine.excel.safety import Inspection, SheetInfo
from engine.fields.normalise import clean_spaces

CHILD = Path(__file__).resolve().with_name("reader_child.py")
KEYS_SHEET = "_keys"
INSTRUCTIONS_SHEET = "填写说明"
Row = tuple[int, list[Any]]  # (1-based row number as Excel shows it, cell values)
_FRAME_HEADER = struct.Struct("<Q")  # each frame of the reader child: its length, then the pickle


@dataclass
class Table:
    """One sheet of an upload; `rows` is a single-pass iterator."""

    kind: str
    sheet: str
    last_row: int  # the file's last row number (an estimate for CSV), for progress
    rows: Iterator[Row]
    keys: list[list[Any]] = field(default_factory=list)  # the hidden `_keys` sheet of our templates
    stats: dict[str, int] = field(default_factory=dict)  # merged cells filled, known once rows are read


def data_sheet_candidates(sheets: tuple[SheetInfo, ...]) -> list[SheetInfo]:
    """Visible sheets that are not ours (说明, _lists, _keys): where data may be."""
    return [s for s in sheets if s.visible and s.name != INSTRUCTIONS_SHEET and not s.name.startswith("_")]


def choose_sheet(sheets: tuple[SheetInfo, ...], form_title: str, chosen: str = "") -> SheetInfo:
    """The sheet chosen for the job if any, else the sheet named like the form, else the first visible sheet that is
    not ours."""
    visible = data_sheet_candidates(sheets)
    picked = [s for s in visible if s.name == chosen] if chosen else []
    if picked:
        return picked[0]
    named = [s for s in visible if clean_spaces(s.name) == form_title]
    if named:
        return named[0]
    if visible:
        return visible[0]
    raise FileRejected("import_file_no_sheet")


@contextmanager
def open_table(path: Path, inspection: Inspection, form_title: str, limits: Limits, sheet_name: str = "") -> Iterator[Table]:
    if inspection.kind == "csv":
        with _csv_table(path, inspection.encoding, limits) as table:
            yield table
        return
    sheet = choose_sheet(inspection.sheets, form_title, sheet_name)
    if sheet.rows is not None and sheet.rows > limits.max_rows + limits.header_scan_rows:
        raise FileRejected("import_file_rows", limit=limits.max_rows, count=sheet.rows - 1)
    if sheet.columns is not None and sheet.columns > limits.max_columns:
        raise FileRejected("import_file_columns", limit=limits.max_columns, count=sheet.columns)
    has_keys = any(s.name == KEYS_SHEET for s in inspection.sheets)
    with _ChildReader(path, sheet.name, KEYS_SHEET if has_keys else "", limits) as child:
        yield Table("xlsx", sheet.name, child.last_row, child.rows(), keys=child.keys, stats=child.stats)


class _ChildReader:
    """Runs reader_child.py and streams the rows it spools to a file, while it is still writing them.

    The child writes length-prefixed pickled frames to an unlinked temporary file and exits as soon as
    the sheet is written, so calamine's grid is given back early whatever the import does next; the
    rows it has written are read meanwhile, so validating and writing overlap with its work."""

    def __init__(self, path: Path, sheet: str, keys_sheet: str, limits: Limits) -> None:
        self.path, self.sheet, self.keys_sheet, self.limits = path, sheet, keys_sheet, limits
        self.keys: list[list[Any]] = []
        self.stats: dict[str, int] = {}
        self.first_column = 0
        self.last_row = 0

    def __enter__(self) -> "_ChildReader":
        self.spool = tempfile.TemporaryFile()
        args = [sys.executable, "-I", str(CHILD), str(self.path), self.sheet, self.keys_sheet,
                str(self.limits.reader_memory), f"/dev/fd/{self.spool.fileno()}"]
        self.deadline = time.monotonic() + self.limits.reader_start_timeout
        try:
            self.child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, pass_fds=(self.spool.fileno(),))
        except BaseException:
            self.spool.close()
            raise
        self.source = os.fdopen(os.dup(self.spool.fileno()), "rb", buffering=0)
        self.source.seek(0)
        try:
            frame = self._next()
            if frame[0] == "keys":
                self.keys = [list(row) for row in frame[1]]
                frame = self._next()
            if frame[0] != "sheet":
                raise FileRejected("import_file_corrupt")
            _tag, self.first_column, self.last_row = frame
        except BaseException:
            self.__exit__()
            raise
        return self

    def _read(self, size: int) -> bytes:
        """`size` bytes of the spool, waiting while the child is still writing them; b"" if it never will."""
        data = b""
        while len(data) < size:
            chunk = self.source.read(size - len(data))
            if chunk:
                data += chunk
                continue
            if self.child.poll() is not None:
                chunk = self.source.read(size - len(data))  # written just before it exited
                if not chunk:
                    return b""
                data += chunk
                continue
            if time.monotonic() > self.deadline:
                self.child.kill()
                raise FileRejected("import_file_unreadable")
            time.sleep(0.002)
        return data

    def _next(self) -> tuple:
        header = self._read(_FRAME_HEADER.size)
        body = self._read(_FRAME_HEADER.unpack(header)[0]) if len(header) == _FRAME_HEADER.size else b""
        try:
            frame = pickle.loads(body) if body else None
        except (pickle.UnpicklingError, EOFError, ValueError):
            frame = None
        if frame is None:
            code = self.child.wait()
            # A negative code is a signal: SIGABRT when calamine's allocation hit the memory cap.
            raise FileRejected("import_file_unreadable" if code < 0 or code == 3 else "import_file_corrupt")
        if frame[0] == "error":
            raise FileRejected("import_file_unreadable" if frame[1] == "memory" else "import_file_corrupt")
        return frame

    def rows(self) -> Iterator[Row]:
        while True:
            frame = self._next()
            if frame[0] == "end":
                self.stats["merged"], self.stats["reader_peak_kb"] = frame[2], frame[3]
                return
            yield from frame[1]

    def __exit__(self, *_exc: Any) -> None:
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        self.source.close()
        self.spool.close()


@contextmanager
def _csv_table(path: Path, encoding: str, limits: Limits) -> Iterator[Table]:
    with path.open("rb") as raw:
        estimate = sum(chunk.count(b"\n") for chunk in iter(lambda: raw.read(1 << 20), b"")) + 1
    with path.open("r", encoding=encoding, newline="") as handle:
        sample = handle.read(8192)
        handle.seek(0)
        delimiter = max((",", "\t", ";"), key=sample.count)
        yield Table("csv", "", estimate, _csv_rows(handle, delimiter, limits))


def _csv_rows(handle: io.TextIOBase, delimiter: str, limits: Limits) -> Iterator[Row]:
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        for number, cells in enumerate(reader, start=1):
            if len(cells) > limits.max_columns:
                raise FileRejected("import_file_columns", limit=limits.max_columns, count=len(cells))
            yield number, cells
    except UnicodeDecodeError:
        raise FileRejected("import_file_encoding") from None
    except csv.Error:
        raise FileRejected("import_file_corrupt") from None
