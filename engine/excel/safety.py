"""Checks on an upload before any spreadsheet parser reads it: size, real type, zip structure, XML prologs.

Everything here is cheap (the zip's central directory and the first bytes of each XML part), so a
file is refused with a clear reason in milliseconds, before the reader spends memory on it.
"""
from __future__ import annotations

import codecs
import posixpath
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser, ParseError
from openpyxl.utils.cell import range_boundaries

from engine.excel.limits import FileRejected, Limits, size_text
from engine.fields.files import MB

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and password-protected .xlsx
ZIP_MAGIC = b"PK\x03\x04"
SPREADSHEET_EXTENSIONS = frozenset({".xlsx", ".xlsm", ".xls"})
TEXT_EXTENSIONS = frozenset({".csv", ".txt"})
XML_SUFFIXES = (".xml", ".rels", ".vml")
PROLOG_LIMIT = 1 * MB  # an XML part must reach its root element within this many bytes
CHUNK = 64 * 1024

MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
PKG_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
OFFICE_DOCUMENT = "/officeDocument"


@dataclass(frozen=True)
class SheetInfo:
    name: str
    state: str  # visible | hidden | veryHidden
    part: str  # zip member, e.g. "xl/worksheets/sheet1.xml"
    rows: int | None = None  # from <dimension ref>, when the file declares it
    columns: int | None = None

    @property
    def visible(self) -> bool:
        return self.state == "visible"


@dataclass(frozen=True)
class Inspection:
    kind: str  # "xlsx" | "csv"
    sheets: tuple[SheetInfo, ...] = ()
    encoding: str = ""  # CSV only


def extension(filename: str) -> str:
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[1].lower() if "." in base else ""


def inspect_upload(path: Path, filename: str, limits: Limits) -> Inspection:
    """What the file really is, or FileRejected with the reason; never trusts the extension alone."""
    size = path.stat().st_size
    if size == 0:
        raise FileRejected("import_file_empty")
    if size > limits.max_file_bytes:
        raise FileRejected("import_file_too_large", limit=size_text(limits.max_file_bytes), size=size_text(size))
    ext = extension(filename)
    if ext not in SPREADSHEET_EXTENSIONS | TEXT_EXTENSIONS:
        raise FileRejected("import_file_type", name=filename)
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(OLE_MAGIC):
        raise FileRejected("import_file_xls")
    if head.startswith(ZIP_MAGIC) or head.startswith(b"PK\x05\x06"):
        if ext in TEXT_EXTENSIONS:
            raise FileRejected("import_file_fake", ext=ext)
        return Inspection("xlsx", sheets=inspect_xlsx(path, limits))
    if ext in SPREADSHEET_EXTENSIONS:
        raise FileRejected("import_file_fake", ext=ext)
    return Inspection("csv", encoding=detect_encoding(path))


# --- xlsx -------------------------------------------------------------------------------------------
def inspect_xlsx(path: Path, limits: Limits) -> tuple[SheetInfo, ...]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise FileRejected("import_file_corrupt") from None
    with archive:
        check_archive(archive, limits)
        try:
            for info in archive.infolist():
                if info.filename.lower().endswith(XML_SUFFIXES):
                    check_prolog(archive, info)
            return read_sheets(archive)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, ValueError):
            raise FileRejected("import_file_corrupt") from None


def check_archive(archive: zipfile.ZipFile, limits: Limits) -> None:
    """Decompression bombs are refused from the declared sizes; the reader's memory cap backs this up."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise FileRejected("import_file_members", count=len(infos))
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise FileRejected("import_file_xls")  # encrypted parts: a password-protected workbook
        total += info.file_size
        if info.file_size > MB and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise FileRejected("import_file_bomb", size=size_text(info.file_size), limit=size_text(limits.max_uncompressed))
    if total > limits.max_uncompressed:
        raise FileRejected("import_file_bomb", size=size_text(total), limit=size_text(limits.max_uncompressed))
    names = {info.filename for info in infos}
    if "[Content_Types].xml" not in names:
        raise FileRejected("import_file_fake", ext=".xlsx")


class _Stop(Exception):
    pass


class _Collect:
    """An ElementTree parser target that records what `wanted` asks for and stops at `stop_at`."""

    def __init__(self, wanted: set[str] | None = None, stop_at: set[str] | None = None) -> None:
        self.wanted, self.stop_at = wanted, stop_at
        self.found: list[tuple[str, dict[str, str]]] = []

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if self.wanted is None:
            raise _Stop  # only the prolog mattered
        if tag in self.wanted:
            self.found.append((tag, dict(attrs)))
        if self.stop_at and tag in self.stop_at:
            raise _Stop

    def end(self, tag: str) -> None:
        pass

    def data(self, data: str) -> None:
        pass

    def close(self) -> None:
        return None


def _parse(stream: IO[bytes], target: _Collect, limit: int | None) -> None:
    """Feed a defused parser (no DTDs, no entities) until the target stops it or the stream ends."""
    parser = DefusedXMLParser(target=target, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    read = 0
    try:
        while chunk := stream.read(CHUNK):
            parser.feed(chunk)
            read += len(chunk)
            if limit is not None and read > limit:
                raise FileRejected("import_file_corrupt")
        parser.close()
    except _Stop:
        return
    except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden):
        raise FileRejected("import_file_dtd") from None
    except ParseError:
        raise FileRejected("import_file_corrupt") from None


def check_prolog(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """XML entity expansion needs a DTD, and a DTD can only stand before the root element."""
    with archive.open(info) as stream:
        _parse(stream, _Collect(), PROLOG_LIMIT)


def _elements(archive: zipfile.ZipFile, name: str, wanted: set[str], stop_at: set[str] | None = None) -> list[tuple[str, dict[str, str]]]:
    target = _Collect(wanted, stop_at)
    with archive.open(name) as stream:
        _parse(stream, target, None if stop_at else 4 * MB)
    return target.found


def _rels(archive: zipfile.ZipFile, name: str) -> dict[str, tuple[str, str]]:
    if name not in archive.NameToInfo:
        return {}
    return {a.get("Id", ""): (a.get("Type", ""), a.get("Target", ""))
            for _tag, a in _elements(archive, name, {PKG_REL_NS + "Relationship"})}


def _resolve(base_dir: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(base_dir, target))


def read_sheets(archive: zipfile.ZipFile) -> tuple[SheetInfo, ...]:
    """Sheet names, states and parts from the workbook, with each sheet's declared dimension."""
    root = _rels(archive, "_rels/.rels")
    workbook = next((_resolve("", t) for typ, t in root.values() if typ.endswith(OFFICE_DOCUMENT)), "xl/workbook.xml")
    if workbook not in archive.NameToInfo:
        raise FileRejected("import_file_fake", ext=".xlsx")
    base = posixpath.dirname(workbook)
    rels = _rels(archive, posixpath.join(base, "_rels", posixpath.basename(workbook) + ".rels"))
    sheets = []
    for _tag, attrs in _elements(archive, workbook, {MAIN_NS + "sheet"}):
        typ, target = rels.get(attrs.get(REL_NS + "id", ""), ("", ""))
        if not typ.endswith("/worksheet"):
            continue  # chart sheets and dialog sheets hold no rows
        part = _resolve(base, target)
        rows, columns = declared_dimension(archive, part)
        sheets.append(SheetInfo(attrs.get("name", ""), attrs.get("state", "visible"), part, rows, columns))
    return tuple(sheets)


def declared_dimension(archive: zipfile.ZipFile, part: str) -> tuple[int | None, int | None]:
    if part not in archive.NameToInfo:
        raise FileRejected("import_file_corrupt")
    found = _elements(archive, part, {MAIN_NS + "dimension"}, stop_at={MAIN_NS + "sheetData"})
    ref = found[0][1].get("ref", "") if found else ""
    try:
        _min_col, _min_row, max_col, max_row = range_boundaries(ref.replace("$", ""))
    except (ValueError, TypeError):
        return None, None
    return max_row, max_col


# --- CSV ------------------------------------------------------------------------------------------
def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else GBK (decoded as its superset GB18030)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "gb18030"):
        if _decodes(path, encoding):
            return encoding
    raise FileRejected("import_file_encoding")


def _decodes(path: Path, encoding: str) -> bool:
    decoder: Any = codecs.getincrementaldecoder(encoding)()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                if "\x00" in decoder.decode(chunk):
                    raise FileRejected("import_file_binary")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True
