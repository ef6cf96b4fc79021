"""Reads one sheet with python-calamine in its own memory-capped process and streams the rows back.

Started by `engine.excel.reader` as `python -I reader_child.py PATH SHEET KEYS_SHEET MEMORY_BYTES SPOOL`.
calamine builds a sheet as one dense grid in native memory and aborts the process when an
allocation fails, so it must never run inside the server. This script imports nothing from the
engine. It writes the rows to the SPOOL file as fast as it can and exits, so the grid's memory is
given back early; the parent reads the frames as they arrive. Frames are pickled tuples, each
preceded by its length (8 bytes, little-endian):
  ("keys", rows)                      the hidden `_keys` sheet, when asked for
  ("sheet", first_column, last_row)   0-based first column of every row list; last 1-based row number
  ("rows", [(row_number, cells), ...])
  ("end", rows_sent, merged_cells_filled, peak_rss_kb)
  ("error", "corrupt" | "memory", detail)
"""
from __future__ import annotations

import pickle
import resource
import struct
import sys

BATCH = 1000
KEYS_LIMIT = 2000


def send(out, frame) -> None:  # type: ignore[no-untyped-def]
    # Length first: the parent reads the frames while this process is still writing them.
    body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(struct.pack("<Q", len(body)) + body)
    out.flush()


def merge_starts(merged, first_column):  # type: ignore[no-untyped-def]
    """Vertical merges only: the value of the top cell is repeated down the merge's first column."""
    starts: dict[int, list[tuple[int, int]]] = {}
    for (top, left), (bottom, _right) in merged or ():
        if bottom > top and left >= first_column:
            starts.setdefault(top, []).append((left - first_column, bottom))
    return starts


def stream(sheet, out) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    first_column = sheet.start[1]
    starts = merge_starts(sheet.merged_cell_ranges, first_column)
    pending: list[tuple[int, int, object]] = []  # (column, last row index, value)
    filled = sent = 0
    batch = []
    # iter_rows pads the rows above the first used row with empty rows, so index == row number - 1.
    for index, cells in enumerate(sheet.iter_rows()):
        if pending:
            pending = [p for p in pending if p[1] >= index]
            for column, _last, value in pending:
                if column < len(cells) and cells[column] == "":
                    cells[column] = value
                    filled += 1
        for column, last in starts.get(index, ()):
            if column < len(cells) and cells[column] != "":
                pending.append((column, last, cells[column]))
        batch.append((index + 1, cells))
        if len(batch) >= BATCH:
            send(out, ("rows", batch))
            sent += len(batch)
            batch = []
    if batch:
        send(out, ("rows", batch))
        sent += len(batch)
    return sent, filled


def peak_kb() -> int:
    """VmHWM: this process's own peak (ru_maxrss would include what the parent had before exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def die_with_parent() -> None:
    """SIGKILL when the importing process dies (engine/processes.py says why; this script imports nothing of ours)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG, Linux only
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    die_with_parent()
    path, sheet_name, keys_name, memory, spool = argv[1], argv[2], argv[3], int(argv[4]), argv[5]
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    with open(spool, "wb") as out:
        return read(path, sheet_name, keys_name, out)


def read(path: str, sheet_name: str, keys_name: str, out) -> int:  # type: ignore[no-untyped-def]
    try:
        from python_calamine import CalamineWorkbook

        workbook = CalamineWorkbook.from_path(path)
        if keys_name:
            keys = workbook.get_sheet_by_name(keys_name)
            send(out, ("keys", keys.to_python()[:KEYS_LIMIT] if keys.start is not None else []))
        sheet = workbook.get_sheet_by_name(sheet_name)
    except MemoryError:
        send(out, ("error", "memory", ""))
        return 3
    except Exception as exc:  # noqa: BLE001 — any reader failure means an unreadable file
        send(out, ("error", "corrupt", f"{type(exc).__name__}: {exc}"[:500]))
        return 2
    if sheet.start is None or sheet.end is None:
        send(out, ("sheet", 0, 0))
        send(out, ("end", 0, 0, peak_kb()))
        return 0
    send(out, ("sheet", sheet.start[1], sheet.end[0] + 1))
    try:
        sent, filled = stream(sheet, out)
    except MemoryError:
        send(out, ("error", "memory", ""))
        return 3
    send(out, ("end", sent, filled, peak_kb()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
