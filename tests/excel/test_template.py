"""Templates and exports as openpyxl reads them back: columns per role, formats, dropdowns, instructions."""
from __future__ import annotations

import io
from pathlib import Path

import openpyxl
import pytest
from python_calamine import CalamineWorkbook

from engine.excel.conditions import describe
from engine.excel.layout import export_columns, template_columns
from engine.excel.workbooks import build_workbook
from engine.loader import load_definitions
from engine.permissions import Principal, policy
from engine.spec import Definitions
from tests.support import DEFINITIONS

UNITS = ["示范区教育局/示范区第一中学/高一/高一(1)班", "示范区教育局/示范区第一中学/高一/高一(2)班"]


@pytest.fixture(scope="module")
def definitions() -> Definitions:
    return load_definitions(DEFINITIONS)


def template(definitions: Definitions, role: str, units: list[str] = UNITS) -> openpyxl.Workbook:
    form = definitions.forms["student"]
    principal = Principal(1, "u", "u", (definitions.roles[role],))
    columns = template_columns(form, policy(principal, form), unit_required=len(units) != 1)  # type: ignore[arg-type]
    return openpyxl.load_workbook(io.BytesIO(build_workbook(form, columns, units)))


def header(sheet) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.value for c in sheet[1] if c.value is not None]


def column_of(sheet, text: str) -> str:  # type: ignore[no-untyped-def]
    return next(c.column_letter for c in sheet[1] if c.value == text)


def test_sheets__data_first_then_instructions_and_hidden_lists(definitions: Definitions) -> None:
    book = template(definitions, "registrar")
    assert book.sheetnames[0] == "学生档案"
    states = {s.title: s.sheet_state for s in book.worksheets}
    assert states == {"学生档案": "visible", "_lists": "hidden", "填写说明": "visible", "_keys": "veryHidden"}


def test_columns__writable_fields_in_form_order_required_marked(definitions: Definitions) -> None:
    sheet = template(definitions, "registrar")["学生档案"]
    assert header(sheet) == ["所属班级*", "姓名*", "性别*", "出生日期*", "民族*", "身份证号*", "籍贯", "政治面貌", "入学年份*",
                             "年级*", "专业", "录取类型", "家庭住址", "家长姓名*", "家长联系电话*", "学生本人联系电话",
                             "健康状况", "残疾类别及说明", "是否独生子女", "备注"]
    assert sheet["B1"].fill.fgColor.rgb != sheet["G1"].fill.fgColor.rgb  # required highlighted
    assert sheet.freeze_panes == "A2"


def test_generated_readonly_table_and_file_fields__not_in_template(definitions: Definitions) -> None:
    labels = header(template(definitions, "registrar")["学生档案"])
    for label in ("学籍号", "学号", "学籍状态", "家庭成员", "照片"):
        assert not any(h.startswith(label) for h in labels)


def test_head_teacher__no_id_card_column(definitions: Definitions) -> None:
    labels = header(template(definitions, "head_teacher")["学生档案"])
    assert "身份证号*" not in labels and "姓名*" in labels


def test_key_sheet__header_text_to_field_key(definitions: Definitions) -> None:
    rows = [tuple(r) for r in template(definitions, "registrar")["_keys"].iter_rows(values_only=True)]
    assert rows[0] == ("_form", "student")
    assert ("身份证号*", "id_card") in rows and ("所属班级*", "_unit") in rows


def test_formats__text_for_ids_and_phones_dates_as_dates(definitions: Definitions) -> None:
    sheet = template(definitions, "registrar")["学生档案"]
    fmt = lambda label: sheet.column_dimensions[column_of(sheet, label)].number_format  # noqa: E731
    assert fmt("身份证号*") == "@" and fmt("家长联系电话*") == "@"
    assert fmt("出生日期*") == "yyyy-mm-dd"
    assert fmt("入学年份*") == "0"


def test_dropdowns__choices_via_hidden_list_booleans_inline(definitions: Definitions) -> None:
    book = template(definitions, "registrar")
    sheet = book["学生档案"]
    by_column = {str(v.sqref).split(":")[0][:-1]: v for v in sheet.data_validations.dataValidation}
    ethnicity = by_column[column_of(sheet, "民族*")]
    assert ethnicity.type == "list" and ethnicity.formula1 == "list_ethnicity"
    target = book.defined_names["list_ethnicity"].attr_text
    assert target.startswith("'_lists'!$")
    lists = book["_lists"]
    letter = target.split("!$")[1].split("$")[0]
    values = [c.value for c in lists[letter] if c.value]
    assert len(values) == 56 and values[0] == "汉族"
    assert by_column[column_of(sheet, "是否独生子女")].formula1 == '"是,否"'
    assert by_column[column_of(sheet, "所属班级*")].formula1 == "list_unit"


def test_instructions__every_column_with_conditions_in_chinese(definitions: Definitions) -> None:
    book = template(definitions, "registrar")
    rows = {r[0]: r for r in book["填写说明"].iter_rows(values_only=True) if r and r[0]}
    assert rows["残疾类别及说明"][5] == "当 健康状况 = 残疾 时必填；仅当 健康状况 = 残疾 时填写，否则留空"
    assert rows["身份证号*"][1:5] == ("必填", "居民身份证号码", "18位居民身份证号码，末位可为X；请将该列设为文本格式", "11010519491231002X")
    assert rows["入学年份*"][4] == "2000"
    assert "汉族、蒙古族" in rows["民族*"][3]
    for label in header(book["学生档案"]):
        assert label in rows


def test_condition_description__and_or_in(definitions: Definitions) -> None:
    form = definitions.forms["student"]
    spec = form.fields["disability_note"]
    assert describe(form, spec.required_if) == "健康状况 = 残疾"


def test_export__formula_like_text_written_as_inert_text(definitions: Definitions, tmp_path: Path) -> None:
    form = definitions.forms["student"]
    principal = Principal(1, "u", "u", (definitions.roles["registrar"],))
    columns = export_columns(form, policy(principal, form), True)  # type: ignore[arg-type]
    row = [UNITS[0], "=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)"] + [None] * (len(columns) - 5)
    data = build_workbook(form, columns, UNITS, [row])
    sheet = openpyxl.load_workbook(io.BytesIO(data))["学生档案"]
    for letter, text in zip("BCDE", row[1:5]):
        cell = sheet[f"{letter}2"]
        assert (cell.value, cell.data_type, cell.quotePrefix) == (text, "s", True)
    (tmp_path / "e.xlsx").write_bytes(data)
    values = CalamineWorkbook.from_path(str(tmp_path / "e.xlsx")).get_sheet_by_name("学生档案").to_python()
    assert values[1][1:5] == row[1:5]  # text, not formulas or their results
