"""The compiled, frozen report model: what `definitions/reports/*.yaml` and `definitions/dashboards/*.yaml` say,
checked against the forms, roles and org levels they name."""
from __future__ import annotations

import datetime as dt

from dataclasses import dataclass, field
from typing import Any

from engine.spec import FieldSpec, Origin

MEASURE_LABELS = {"count": "人数", "share": "占比", "count_distinct": "不同值数", "sum": "合计", "avg": "平均",
                  "min": "最低", "max": "最高", "rate": "达标率"}
PERCENT = frozenset({"share", "rate"})


@dataclass(frozen=True)
class Filter:
    """A condition on one field, as a list's query string says it (engine/records/model.py ListQuery.parse):
    `equals` (text the field's type reads), or `low` ≤ value < `high`, or `empty`."""

    key: str
    equals: str | None = None
    low: str | None = None
    high: str | None = None
    empty: bool = False

    def params(self) -> dict[str, str]:
        if self.empty:
            return {f"{self.key}__empty": "1"}
        if self.equals is not None:
            return {self.key: self.equals}
        found = {}
        if self.low is not None:
            found[f"{self.key}__ge"] = self.low
        if self.high is not None:
            found[f"{self.key}__lt"] = self.high
        return found


@dataclass(frozen=True)
class Dimension:
    """What rows or columns are grouped by. `kind`: "field" (its values), "level" (the unit a record sits under
    at an org level), "date" (year or month of a date field), "bands" (ranges of a number field), "age" (bands
    of age in whole years from a date field, worked out on the day the report runs)."""

    kind: str
    label: str
    key: str  # the field key, or the org level key
    spec: FieldSpec | None = None
    by: str = ""  # date: "year" | "term" (学期: September–January, February–August) | "month"
    bands: tuple[Any, ...] = ()  # bands / age: the edges, ascending
    origin: Origin | None = field(default=None, compare=False)

    @property
    def fields(self) -> tuple[str, ...]:
        return () if self.kind == "level" else (self.key,)


@dataclass(frozen=True)
class Measure:
    """One number per cell: `kind` in MEASURE_LABELS; `of` the field it reads (count and share read none)."""

    key: str  # m0, m1 …: its place in the report
    kind: str
    label: str
    of: str = ""
    spec: FieldSpec | None = None
    at_least: Any = None  # rate: the value that passes
    places: int = 1

    @property
    def percent(self) -> bool:
        return self.kind in PERCENT


@dataclass(frozen=True)
class ReportSpec:
    key: str
    title: str
    form: str
    kind: str = "table"  # "table" | "completeness"
    description: str = ""
    roles: tuple[str, ...] = ()  # () = whoever may read the form
    filters: tuple[Filter, ...] = ()
    pick: tuple[str, ...] = ()  # fields the user may filter by on the page (the unit is always offered)
    rows: Dimension | None = None
    columns: Dimension | None = None
    measures: tuple[Measure, ...] = ()
    fields: tuple[str, ...] = ()  # completeness: the fields counted
    chart: str = "bar"
    path: str = ""
    origin: Origin | None = field(default=None, compare=False)

    @property
    def read_fields(self) -> frozenset[str]:
        """Every field whose values the report's numbers depend on: a principal who may not see one of them in
        full does not get the report (its numbers would tell what the masks hide)."""
        names = {f.key for f in self.filters} | {m.of for m in self.measures if m.of}
        for dimension in (self.rows, self.columns):
            if dimension is not None:
                names |= set(dimension.fields)
        return frozenset(names)


@dataclass(frozen=True)
class Card:
    """A number on a dashboard: the records of `form` matching `filters` (or incomplete ones) in the user's read
    scope, linked to that list; or (`tasks`) the user's 待办."""

    label: str
    form: str = ""
    filters: tuple[Filter, ...] = ()
    incomplete: bool = False
    tasks: bool = False
    help: str = ""
    current: "Current | None" = None  # and a date field in the current month or year, worked out when counted

    def all_filters(self, today: dt.date) -> tuple[Filter, ...]:
        return self.filters + ((self.current.filter(today),) if self.current is not None else ())


@dataclass(frozen=True)
class Current:
    """`current: {field: date, period: month}`: the records whose date falls in this month (or year), as a list
    filter `date__ge=<first day>&date__lt=<first day of the next>`."""

    field: str
    period: str  # "month" or "year"

    def filter(self, today: dt.date) -> Filter:
        if self.period == "year":
            low, high = dt.date(today.year, 1, 1), dt.date(today.year + 1, 1, 1)
        else:
            low = today.replace(day=1)
            high = dt.date(low.year + low.month // 12, low.month % 12 + 1, 1)
        return Filter(self.field, low=low.isoformat(), high=high.isoformat())


@dataclass(frozen=True)
class DashboardSpec:
    key: str
    title: str
    roles: tuple[str, ...]
    cards: tuple[Card, ...] = ()
    charts: tuple[str, ...] = ()  # report keys
    origin: Origin | None = field(default=None, compare=False)
