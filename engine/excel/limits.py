"""Caps that keep an import's memory and time bounded, and the file-level rejection they raise."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.fields.files import MB, human_size
from engine.issues import Issue
from engine.messages import render

GB = 1024 * MB


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 20 * MB
    max_rows: int = 200_000  # data rows in one file
    max_columns: int = 200
    max_uncompressed: int = 1 * GB  # all parts of an .xlsx together, as declared by the zip
    max_ratio: int = 100  # uncompressed / compressed, for parts over 1 MB
    max_members: int = 2000
    # Address space of the xlsx reader process: python-calamine builds the whole sheet as one dense
    # grid, so a 1 KB file naming cell XFD1048576 would otherwise allocate hundreds of gigabytes.
    reader_memory: int = 3 * GB
    reader_start_timeout: float = 300.0  # seconds the reader process may take to read the whole sheet
    header_scan_rows: int = 30
    batch_size: int = 500  # rows per write transaction
    # Files with at least this many rows are read and validated in a helper process while this one
    # writes (engine/excel/parallel.py); 0 = never.
    helper_rows: int = 2000


class FileRejected(Exception):
    """The whole file is refused before anything is written; `issue` renders the Chinese reason."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.issue = Issue(code, params)

    @property
    def message(self) -> str:
        return render(self.issue)


def size_text(size: int) -> str:
    return human_size(size)
