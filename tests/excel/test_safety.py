"""Whole-file rejections before anything is parsed or written: type, size, zip structure, XML, caps."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from engine.excel.limits import FileRejected, Limits
from engine.excel.reader import open_table
from engine.excel.safety import detect_encoding, inspect_upload
from engine.messages import MESSAGES
from tests.excel.helpers import replace_part, student, xlsx

SHEET = "xl/worksheets/sheet1.xml"


def _file(tmp_path: Path, data: bytes, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rejected(tmp_path: Path, data: bytes, name: str = "学生.xlsx", limits: Limits | None = None) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        inspection = inspect_upload(_file(tmp_path, data, name), name, limits or Limits())
        with open_table(tmp_path / name, inspection, "学生档案", limits or Limits()) as table:
            list(table.rows)
    return caught.value


def test_empty_file__rejected(tmp_path: Path) -> None:
    assert rejected(tmp_path, b"").issue.code == "import_file_empty"


def test_file_over_the_size_limit__rejected(tmp_path: Path) -> None:
    error = rejected(tmp_path, xlsx([student(101)]), limits=Limits(max_file_bytes=1000))
    assert error.issue.code == "import_file_too_large"
    assert "1000B" in error.message


def test_other_file_type__rejected(tmp_path: Path) -> None:
    error = rejected(tmp_path, b"%PDF-1.4 ...", name="学生.pdf")
    assert error.issue.code == "import_file_type"


def test_xlsx_that_is_really_an_image__rejected(tmp_path: Path) -> None:
    assert rejected(tmp_path, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100).issue.code == "import_file_fake"


def test_zip_that_is_not_a_workbook__rejected(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w/>")
    assert rejected(tmp_path, buffer.getvalue()).issue.code == "import_file_fake"


def test_old_xls_or_password_protected__rejected(tmp_path: Path) -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500
    assert rejected(tmp_path, data, name="学生.xls").issue.code == "import_file_xls"


def test_truncated_file__rejected(tmp_path: Path) -> None:
    data = xlsx([student(101)])
    assert rejected(tmp_path, data[: len(data) // 2]).issue.code == "import_file_corrupt"


def test_corrupt_sheet_data__rejected(tmp_path: Path) -> None:
    data = xlsx([student(101 + 2 * i) for i in range(200)])
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(SHEET)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200  # inside the compressed stream
    broken = data[:start] + bytes(b ^ 0xFF for b in data[start:start + 64]) + data[start + 64:]
    assert rejected(tmp_path, broken).issue.code == "import_file_corrupt"


def test_zip_bomb__rejected(tmp_path: Path) -> None:
    body = b"<row>" + b"<c/>" * 4_000_000 + b"</row>"  # 16 MB that deflate packs into a few KB
    sheet = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>' + body + b"</sheetData></worksheet>"
    data = replace_part(xlsx([student(101)]), SHEET, sheet)
    error = rejected(tmp_path, data)
    assert error.issue.code == "import_file_bomb"
    assert error.message == MESSAGES["import_file_bomb"].format(**error.issue.params)


def test_total_uncompressed_size_cap__rejected(tmp_path: Path) -> None:
    error = rejected(tmp_path, xlsx([student(101)]), limits=Limits(max_uncompressed=2000))
    assert error.issue.code == "import_file_bomb"


def test_xml_entity_expansion__rejected(tmp_path: Path) -> None:
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
              b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]>'
              b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1">'
              b'<c r="A1" t="inlineStr"><is><t>&lol3;</t></is></c></row></sheetData></worksheet>')
    assert rejected(tmp_path, replace_part(xlsx([student(101)]), SHEET, laughs)).issue.code == "import_file_dtd"


def test_external_entity__rejected(tmp_path: Path) -> None:
    external = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>&e;</t></si></sst>')
    data = replace_part(xlsx([student(101)]), "docProps/app.xml", external)
    assert rejected(tmp_path, data).issue.code == "import_file_dtd"


def test_declared_rows_over_the_cap__rejected(tmp_path: Path) -> None:
    data = xlsx([student(101 + 2 * i) for i in range(40)])
    error = rejected(tmp_path, data, limits=Limits(max_rows=5, header_scan_rows=3))
    assert error.issue.code == "import_file_rows"


def test_columns_over_the_cap__rejected(tmp_path: Path) -> None:
    assert rejected(tmp_path, xlsx([student(101)]), limits=Limits(max_columns=4)).issue.code == "import_file_columns"


def test_far_away_cell__reader_memory_capped(tmp_path: Path) -> None:
    """A 1 KB sheet naming XFD1048576 makes calamine allocate ~500 GB; the capped reader process dies, not us."""
    sparse = (b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
              b'<row r="1"><c r="A1" t="inlineStr"><is><t>a</t></is></c></row>'
              b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>b</t></is></c></row></sheetData></worksheet>')
    data = replace_part(xlsx([student(101)]), SHEET, sparse)
    error = rejected(tmp_path, data, limits=Limits(reader_memory=600 * 1024 * 1024))
    assert error.issue.code == "import_file_unreadable"


def test_csv_encodings__detected(tmp_path: Path) -> None:
    text = "姓名,性别\r\n张三,男\r\n"
    assert detect_encoding(_file(tmp_path, text.encode("utf-8"), "a.csv")) == "utf-8"
    assert detect_encoding(_file(tmp_path, b"\xef\xbb\xbf" + text.encode("utf-8"), "b.csv")) == "utf-8-sig"
    assert detect_encoding(_file(tmp_path, text.encode("gbk"), "c.csv")) == "gb18030"


def test_csv_binary__rejected(tmp_path: Path) -> None:
    assert rejected(tmp_path, b"\x00\x01\x02binary", name="a.csv").issue.code == "import_file_binary"


def test_zip_named_csv__rejected(tmp_path: Path) -> None:
    assert rejected(tmp_path, xlsx([student(101)]), name="学生.csv").issue.code == "import_file_fake"
