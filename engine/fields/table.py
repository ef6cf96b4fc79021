"""Repeating rows of sub-fields, such as 家庭成员 or 获奖情况."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from engine.fields.base import FieldType, is_empty
from engine.fields.widgets import Files, PostedData, Widget
from engine.issues import FieldError, Issue

if TYPE_CHECKING:
    # engine.spec imports engine.fields, so a runtime import here would be circular.
    from engine.spec import FieldSpec

Row = dict[str, Any]
MAX_TABLE_ROWS = 200  # rows a form post may carry; more is not a person typing
_CELL = re.compile(r"\.(\d{1,4})\.([a-z][a-z0-9_]*)")


class RowsInput(Widget):
    """A table of inputs, one row per value row; each cell is its column's own widget, named `table.row.column`."""

    name = "table"

    def claims(self, name: str, posted: str) -> bool:
        # The table's own name carries nothing the rows do not; a stray value under it is not a row.
        return posted == name or (posted.startswith(name + ".") and _CELL.fullmatch(posted, len(name)) is not None)

    def value_from_datadict(self, data: PostedData, files: Files, name: str) -> Any:
        indexes = set()
        for posted in (*data.names(), *files):
            cell = _CELL.fullmatch(posted, len(name)) if posted.startswith(name + ".") else None
            if cell is not None and int(cell[1]) < MAX_TABLE_ROWS:
                indexes.add(int(cell[1]))
        rows = []
        for index in sorted(indexes):
            row: Row = {}
            for column in self.kind.sub_fields():
                widget, cell_name = column.kind.widget, f"{name}.{index}.{column.key}"
                if not widget.value_omitted_from_data(data, files, cell_name):
                    row[column.key] = widget.value_from_datadict(data, files, cell_name)
            rows.append(row)
        return rows


@dataclass(frozen=True)
class TableField(FieldType):
    name = "table"
    title = "多行表格"
    widget_type = RowsInput
    importable = False
    sql_type = None  # rows, not one value
    sub_field_params = ("columns",)
    params_schema = {
        "columns": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "min_rows": {"type": "integer", "minimum": 0},
        "max_rows": {"type": "integer", "minimum": 1},
    }

    columns: tuple["FieldSpec", ...] = ()
    min_rows: int | None = None
    max_rows: int | None = None

    @classmethod
    def build(cls, params: Mapping[str, Any], options: Mapping[str, tuple] | None = None) -> "TableField":
        return cls(
            columns=tuple(params.get("columns", ())),
            min_rows=params.get("min_rows"),
            max_rows=params.get("max_rows"),
        )

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("表格至少需要一列")
        keys = [column.key for column in self.columns]
        if len(set(keys)) != len(keys):
            raise ValueError("表格的列名不能重复")
        if any(column.kind.sub_fields() for column in self.columns):
            raise ValueError("表格的列不能再是表格")
        if self.min_rows is not None and self.max_rows is not None and self.min_rows > self.max_rows:
            raise ValueError(f"表格的最少行数{self.min_rows}大于最多行数{self.max_rows}")

    # --- conversion and validation -------------------------------------------------------------
    def rows(self, raw: Any) -> list[tuple[str, Any]]:
        """(row key, raw row) pairs without blank rows; the key is where the row came from."""
        if isinstance(raw, Mapping):
            # Web forms post `family.3.name`; keys are positions, possibly with gaps after deletes.
            if not all(str(key).isdigit() for key in raw):
                raise FieldError("table_row")
            pairs = sorted(((str(k), v) for k, v in raw.items()), key=lambda kv: int(kv[0]))
        elif isinstance(raw, (list, tuple)):
            pairs = [(str(index), row) for index, row in enumerate(raw)]
        else:
            raise FieldError("table_row")
        if not all(isinstance(row, Mapping) for _, row in pairs):
            raise FieldError("table_row")
        return [(key, row) for key, row in pairs if not self._blank(row)]

    def _blank(self, row: Mapping[str, Any]) -> bool:
        return all(is_empty(row.get(column.key)) for column in self.columns)

    def to_python(self, raw: Any) -> list[Row] | None:
        if is_empty(raw):
            return None
        rows = [self._convert_row(row) for _, row in self.rows(raw)]
        return rows or None

    def _convert_row(self, row: Mapping[str, Any]) -> Row:
        converted: Row = {}
        for column in self.columns:
            value, _ = column.kind.clean(row.get(column.key))
            converted[column.key] = value
        return converted

    def clean(self, raw: Any) -> tuple[Any, list[Issue]]:
        if is_empty(raw):
            return None, []
        try:
            pairs = self.rows(raw)
        except FieldError as exc:
            return None, [exc.issue]
        if not pairs:
            return None, []
        rows: list[Row] = []
        issues: list[Issue] = []
        for key, row in pairs:
            cleaned: Row = {}
            for column in self.columns:
                value, cell_issues = column.clean(row.get(column.key))
                cleaned[column.key] = value
                issues.extend(issue.at(key) for issue in cell_issues)
            rows.append(cleaned)
        issues.extend(self._count_issues(len(rows)))
        return rows, issues

    def _count_issues(self, count: int) -> Iterable[Issue]:
        if self.min_rows is not None and count < self.min_rows:
            yield Issue("table_rows_min", {"limit": self.min_rows})
        if self.max_rows is not None and count > self.max_rows:
            yield Issue("table_rows_max", {"limit": self.max_rows})

    # --- storage ---------------------------------------------------------------------------------
    def to_json(self, value: Any) -> Any:
        if value is None:
            return None
        return [self._map_row(row, lambda kind, v: kind.to_json(v)) for row in value]

    def from_json(self, stored: Any) -> Any:
        if stored is None:
            return None
        return [self._map_row(row, lambda kind, v: kind.from_json(v)) for row in stored]

    def _map_row(self, row: Mapping[str, Any], convert: Callable[[FieldType, Any], Any]) -> Row:
        return {
            column.key: None if row.get(column.key) is None else convert(column.kind, row[column.key])
            for column in self.columns
        }

    # --- presentation ----------------------------------------------------------------------------
    def to_text(self, value: Any) -> str:
        return "" if not value else f"{len(value)}行"

    def mask(self, text: str) -> str:
        # "3行" reveals nothing about the rows themselves.
        return text

    def widget_context(self) -> dict[str, Any]:
        return {"columns": self.columns, "min_rows": self.min_rows, "max_rows": self.max_rows}

    def sub_fields(self) -> tuple["FieldSpec", ...]:
        return self.columns

    def sample(self) -> list[Row]:
        return [{column.key: column.kind.sample() for column in self.columns}]

    # --- Excel ----------------------------------------------------------------------------------
    def from_cell(self, cell: Any) -> Any:
        raise FieldError("table_not_importable")

    def format_hint(self) -> str:
        return "多行表格，请在同名工作表中逐行填写"
