"""A report as an .xlsx workbook: the title, the filters it was run with, then the table with its totals. Numbers
are numbers (a percentage is a fraction formatted as %), so that a bureau can add them up again."""
from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from engine.reports.service import ReportResult

PERCENT_FORMAT = "0.0%"


def report_workbook(result: ReportResult, who: str, at: dt.datetime) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = result.report.title[:31]
    sheet.append([result.report.title])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([f"表单：{result.form.title}", f"导出人：{who}", f"导出时间：{at:%Y-%m-%d %H:%M}"])
    for what, value in result.described or [("筛选条件", "无")]:
        sheet.append([f"{what}：{value}"])
    sheet.append([])
    for line in table_rows(result):
        sheet.append([_cell(value) for value, _percent in line])
        row = sheet.max_row
        for column, (value, percent) in enumerate(line, start=1):
            if percent and value is not None:
                sheet.cell(row=row, column=column).number_format = PERCENT_FORMAT
    for column in range(1, sheet.max_column + 1):
        sheet.column_dimensions[get_column_letter(column)].width = 16 if column > 1 else 24
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cell(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def table_rows(result: ReportResult) -> list[list[tuple[Any, bool]]]:
    """The table as the page shows it, each value with whether it is a percentage (as a fraction then)."""
    def number(value: Any, percent: bool) -> tuple[Any, bool]:
        return (None if value is None else Decimal(value) / 100, True) if percent else (value, False)

    rows: list[list[tuple[Any, bool]]] = []
    if result.completeness:
        rows.append([(result.rows_label, False), ("记录数", False), *((c.label, False) for c in result.columns)])
        for header in result.rows:
            line = [(header.label, False), (result.row_totals.get(header.key, {}).get("count", 0), False)]
            line += [number(result.cell(header, c).get("share"), True) for c in result.columns]
            rows.append(line)
        rows.append([("合计", False), (result.total.get("count", 0), False),
                     *(number(result.column_totals.get(c.key, {}).get("share"), True) for c in result.columns)])
        return rows
    measures = result.measures
    if result.columns:
        first = measures[0]
        rows.append([(f"{result.rows_label} \\ {result.columns_label}", False), *((c.label, False) for c in result.columns), ("合计", False)])
        for header in result.rows:
            line = [(header.label, False)]
            line += [number(result.cell(header, c).get(first.key), first.percent) for c in result.columns]
            line.append(number(result.row_totals.get(header.key, {}).get(first.key), first.percent))
            rows.append(line)
        line = [("合计", False)] + [number(result.column_totals.get(c.key, {}).get(first.key), first.percent) for c in result.columns]
        rows.append(line + [number(result.total.get(first.key), first.percent)])
        return rows
    rows.append([(result.rows_label, False), *((m.label, False) for m in measures)])
    for header in result.rows:
        rows.append([(header.label, False), *(number(result.cell(header).get(m.key), m.percent) for m in measures)])
    rows.append([("合计", False), *(number(result.total.get(m.key), m.percent) for m in measures)])
    return rows

