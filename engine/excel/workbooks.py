"""Workbooks we write with openpyxl: import templates, exports in the same layout, and error workbooks."""
from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any, Iterable, Iterator

from openpyxl import Workbook
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.datavalidation import DataValidation

from engine.excel.conditions import required_note
from engine.excel.layout import FORM_MARK, UNIT_KEY, VERSION_MARK, Column
from engine.excel.reader import INSTRUCTIONS_SHEET, KEYS_SHEET
from engine.fields.base import ExcelChoices
from engine.spec import FieldSpec, FormSpec

LISTS_SHEET = "_lists"
DATE_FORMAT = "yyyy-mm-dd"
TIME_FORMAT = "hh:mm"
UNIT_WIDTH = 36
REQUIRED_FILL = PatternFill("solid", fgColor="FFF4B183")
HEADER_FILL = PatternFill("solid", fgColor="FFDDEBF7")
ERROR_FILL = PatternFill("solid", fgColor="FFFF9999")
HEADER_FONT = Font(bold=True)
ERROR_FONT = Font(bold=True, color="FFC00000")
LAST_ROW = 1048576
AUTHOR = "Dangan"
# Text Excel would read as a formula when typed, pasted or re-entered (OWASP CSV injection list).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")


def sheet_title(form: FormSpec) -> str:
    return _SHEET_NAME_BAD.sub("_", form.title)[:31] or "Sheet1"


def save(workbook: Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def text_cell(sheet: Any, value: str) -> Any:
    """A string Excel shows as text and never evaluates: an inline string with the quote-prefix style."""
    cell = WriteOnlyCell(sheet, value)
    cell.data_type = "s"
    cell.quotePrefix = True
    return cell


def cell_value(sheet: Any, value: Any, number_format: str | None = None) -> Any:
    """A value for a write-only row: formula-like text is made inert; dates and times get a format (the
    column's type's `excel_format` where given), which a write-only cell does not take from its column."""
    if isinstance(value, str):
        return text_cell(sheet, value) if value.startswith(FORMULA_PREFIXES) else value
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        cell = WriteOnlyCell(sheet, value)
        cell.number_format = number_format if number_format not in (None, "@", "General") else _date_format(value)
        return cell
    if isinstance(value, dt.timedelta):
        return str(value)
    return value


def _date_format(value: dt.date | dt.datetime | dt.time) -> str:
    if isinstance(value, dt.time):
        return TIME_FORMAT
    if isinstance(value, dt.datetime) and value.time() != dt.time():
        return "yyyy-mm-dd hh:mm"
    return DATE_FORMAT


# --- templates and exports ------------------------------------------------------------------------
def _width(column: Column) -> float:
    base = column.spec.kind.excel_width if column.spec else UNIT_WIDTH
    return max(base, len(column.header) * 2 + 4)


def _number_format(column: Column) -> str:
    return column.spec.kind.excel_format if column.spec is not None else "@"


def _choices(column: Column, unit_names: list[str]) -> ExcelChoices | None:
    if column.spec is None:
        return ExcelChoices(tuple(unit_names))
    return column.spec.kind.excel_choices()


def _layout_sheet(workbook: Workbook, form: FormSpec, columns: list[Column], unit_names: list[str]) -> Any:
    """The data sheet with formats, widths, dropdowns and the header row; rows are appended after."""
    sheet = workbook.create_sheet(sheet_title(form))
    lists = workbook.create_sheet(LISTS_SHEET)
    lists.sheet_state = "hidden"
    list_columns: list[list[str]] = []
    for index, column in enumerate(columns, start=1):
        letter = get_column_letter(index)
        dimension = sheet.column_dimensions[letter]
        dimension.width = _width(column)
        dimension.number_format = _number_format(column)
        if not column.writable:
            continue
        validation = _validation(workbook, column, _choices(column, unit_names), list_columns)
        if validation is not None:
            validation.add(f"{letter}2:{letter}{LAST_ROW}")
            sheet.data_validations.append(validation)
    for row in _transpose(list_columns):
        lists.append(row)
    sheet.freeze_panes = "A2"
    header = []
    for column in columns:
        cell = WriteOnlyCell(sheet, column.header)
        cell.font = HEADER_FONT
        cell.fill = REQUIRED_FILL if column.required else HEADER_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        header.append(cell)
    sheet.append(header)
    return sheet


def _validation(workbook: Workbook, column: Column, choices: ExcelChoices | None,
                list_columns: list[list[str]]) -> DataValidation | None:
    message = {"error": f"请从下拉列表中选择{column.label}", "errorTitle": "不在可选项中",
               "prompt": f"请从下拉列表中选择{column.label}", "promptTitle": column.label}
    if choices is None or not choices.labels:
        return None
    if choices.inline:
        return DataValidation(type="list", formula1='"' + ",".join(choices.labels) + '"', allow_blank=True,
                              showErrorMessage=True, errorStyle="warning", showInputMessage=False, **message)
    options = list(choices.labels)
    list_columns.append(options)
    letter = get_column_letter(len(list_columns))
    name = f"list_{column.key.lstrip('_')}"
    workbook.defined_names[name] = DefinedName(name, attr_text=f"'{LISTS_SHEET}'!${letter}$1:${letter}${len(options)}")
    # "warning", not "stop": codes ("01") and other spellings that the field accepts stay allowed.
    return DataValidation(type="list", formula1=name, allow_blank=True, showErrorMessage=True,
                          errorStyle="warning", showInputMessage=False, **message)


def _transpose(columns: list[list[str]]) -> Iterator[list[str | None]]:
    height = max((len(c) for c in columns), default=0)
    for row in range(height):
        yield [c[row] if row < len(c) else None for c in columns]


def _key_sheet(workbook: Workbook, form: FormSpec, columns: list[Column]) -> None:
    """Header text → field key, so a column still maps after an administrator renames its label."""
    keys = workbook.create_sheet(KEYS_SHEET)
    keys.sheet_state = "veryHidden"
    keys.append([FORM_MARK, form.key])
    keys.append([VERSION_MARK, form.version])
    for column in columns:
        keys.append([column.header, column.key])


def example_text(spec: FieldSpec) -> str:
    return spec.kind.example_text(spec.constraints)


def _instructions(workbook: Workbook, form: FormSpec, columns: list[Column], unit_names: list[str]) -> None:
    sheet = workbook.create_sheet(INSTRUCTIONS_SHEET)
    for letter, width in zip("ABCDEFG", (18, 12, 12, 60, 26, 36, 40)):
        sheet.column_dimensions[letter].width = width
    title = WriteOnlyCell(sheet, f"{form.title}导入模板 填写说明")
    title.font = Font(bold=True, size=14)
    sheet.append([title])
    for note in (
        f"在“{sheet_title(form)}”工作表第1行之下逐行填写，一行一条记录；带 * 的列必须填写（橙色表头）。",
        "列的顺序可以调整，多余的列会被忽略；请不要修改表头文字。",
        "身份证号、电话等列已设为文本格式，请直接输入，不要让 Excel 转成数字。",
        "多行表格、附件和图片不能通过 Excel 导入，请导入后在网页上填写。",
    ):
        sheet.append([note])
    sheet.append([])
    header = []
    for text in ("列名", "是否必填", "类型", "格式要求 / 可选值", "示例", "条件", "说明"):
        cell = WriteOnlyCell(sheet, text)
        cell.font = HEADER_FONT
        cell.fill = HEADER_FILL
        header.append(cell)
    sheet.append(header)
    for column in columns:
        sheet.append([cell_value(sheet, text) for text in _instruction_row(form, column, unit_names)])


def _instruction_row(form: FormSpec, column: Column, unit_names: list[str]) -> list[str]:
    if column.spec is None:
        example = unit_names[0] if unit_names else ""
        return [column.header, "必填" if column.required else "选填", "组织单位",
                "填写完整路径或唯一的名称，可从下拉列表选择，例如：" + example, example, "",
                "新增记录时必填；更新时留空表示不改变"]
    spec = column.spec
    kind = spec.kind
    condition = required_note(form, column.key)
    required = "必填" if column.required else ("条件必填" if spec.required_if is not None else "选填")
    fmt = kind.excel_hint()
    notes = [spec.help] if spec.help else []
    if column.key in form.natural_key:
        notes.append("用于识别已有记录，同一文件中不能重复")
    elif spec.unique:
        notes.append("不能与已有记录重复")
    if not column.writable:
        notes.append("只读，导入时忽略")
    return [column.header, required, kind.title, fmt, example_text(spec), condition, "；".join(notes)]


def build_workbook(form: FormSpec, columns: list[Column], unit_names: list[str],
                   rows: Iterable[list[Any]] = ()) -> bytes:
    """A template (no rows) or an export: data sheet, 填写说明, hidden option lists and field keys."""
    workbook = Workbook(write_only=True)
    sheet = _layout_sheet(workbook, form, columns, unit_names)
    formats = [column.spec.kind.excel_format if column.spec else None for column in columns]
    for row in rows:
        sheet.append([cell_value(sheet, value, formats[i] if i < len(formats) else None) for i, value in enumerate(row)])
    _instructions(workbook, form, columns, unit_names)
    _key_sheet(workbook, form, columns)
    return save(workbook)


# --- error workbooks ----------------------------------------------------------------------------
def build_error_workbook(title: str, header: list[Any], rows: Iterable[tuple[int, list[Any], dict[int, list[str]], list[str]]],
                         key_rows: list[list[Any]]) -> bytes:
    """The uploaded rows, each invalid cell filled red with a comment giving the reason, plus 错误原因.

    `rows` yields (row number in the upload, cells, {column index: [reasons]}, [reasons without a column]).
    """
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:31] or "Sheet1")
    width = len(header)
    for index in range(1, width + 2):
        sheet.column_dimensions[get_column_letter(index)].width = 16
    sheet.column_dimensions[get_column_letter(width + 1)].width = 60
    sheet.freeze_panes = "A2"
    head = [cell_value(sheet, value) for value in header]
    reason = WriteOnlyCell(sheet, "错误原因")
    reason.font = ERROR_FONT
    sheet.append(head + [reason])
    for number, cells, by_column, other in rows:
        line: list[Any] = []
        cells = list(cells) + [""] * (width - len(cells))
        for index, value in enumerate(cells):
            problems = by_column.get(index)
            if not problems:
                line.append(cell_value(sheet, value))
                continue
            made = cell_value(sheet, value)
            cell = made if isinstance(made, Cell) else WriteOnlyCell(sheet, made)
            cell.fill = ERROR_FILL
            cell.comment = Comment("\n".join(problems), AUTHOR, width=300, height=120)
            line.append(cell)
        messages = [m for problems in by_column.values() for m in problems] + other
        line.append(f"原第{number}行：" + "；".join(messages) if messages else "")
        sheet.append(line)
    if key_rows:
        keys = workbook.create_sheet(KEYS_SHEET)
        keys.sheet_state = "veryHidden"
        for row in key_rows:
            keys.append([cell_value(keys, value) for value in row])
    return save(workbook)
