"""Running reports: one grouped SELECT over the form's projection table (engine/storage/projection.py), with the
same WHERE as the form's list (RecordService.conditions: the principal's read scope, the fixed filters, what the
user picked), so that every number's drill-down list counts exactly what the number counts.

Measures are computed from parts the database adds up (count, sum, min, max, passes): the cells come from one
GROUP BY and the totals are combined from the cells, not counted again. Only a distinct count cannot be combined;
a report with one runs a grouped query per total.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import and_, case, distinct, extract, func, literal, or_, select
from sqlalchemy.sql import ColumnElement

from engine.permissions import Principal, is_masked, policy
from engine.records.model import ListQuery
from engine.refusals import NotFound, NotPermitted
from engine.reports.spec import DashboardSpec, Dimension, Measure, ReportSpec
from engine.spec import Definitions, FormSpec
from engine.storage.models import OrgUnit
from engine.storage.projection import Projection

DASHBOARD_TTL = 60.0  # seconds a dashboard's numbers are reused for the same roles and scope
EMPTY_LABEL = "（未填）"
NO_UNIT_LABEL = "（未归属）"
Key = tuple[Any, ...]


@dataclass(frozen=True)
class Header:
    """A row or column of a report: its group value(s), how it reads, and the list filters that select it
    (None: no list can select it, e.g. records under no unit of that level)."""

    key: Key
    label: str
    params: Mapping[str, str] | None
    unit_path: str = ""


@dataclass
class ReportResult:
    report: ReportSpec
    form: FormSpec
    measures: tuple[Measure, ...]
    rows: list[Header]
    columns: list[Header]  # [] without a pivot
    cells: dict[tuple[Key, Key], dict[str, Any]]  # (row key, column key or ()) -> {measure key: value}
    row_totals: dict[Key, dict[str, Any]]
    column_totals: dict[Key, dict[str, Any]]
    total: dict[str, Any]
    params: dict[str, str]  # the list filters every number shares (fixed and picked)
    unit_path: str = ""  # the picked unit's path
    described: list[tuple[str, str]] = field(default_factory=list)  # (what, value) of each filter, for export
    completeness: bool = False

    @property
    def rows_label(self) -> str:
        return self.report.rows.label if self.report.rows else "范围"

    @property
    def columns_label(self) -> str:
        return self.report.columns.label if self.report.columns else ""

    def cell(self, row: Header, column: Header | None = None) -> dict[str, Any]:
        return self.cells.get((row.key, column.key if column else ()), {})

    def drill(self, *headers: Header | None) -> dict[str, str] | None:
        """The list filters of one number: the report's, and each header's; None when a header has none."""
        params = dict(self.params)
        path = self.unit_path
        for header in headers:
            if header is None:
                continue
            if header.params is None:
                return None
            for name, value in header.params.items():
                if name == "unit":  # the deeper of two units: records under both are those under the deeper
                    if header.unit_path.startswith(path) or not path:
                        params["unit"], path = value, header.unit_path
                else:
                    params[name] = value
        return params


class ReportService:
    """Reports, the completeness report and dashboard cards for a principal; refuses reports they may not see."""

    def __init__(self, db: Any, records: Any) -> None:
        self.db, self.records = db, records

    # --- who sees what ---------------------------------------------------------------------------------
    def available(self, definitions: Definitions, principal: Principal) -> list[ReportSpec]:
        return [r for r in definitions.reports.values() if self.may(definitions, principal, r)]

    def may(self, definitions: Definitions, principal: Principal, report: ReportSpec) -> bool:
        """Whether the principal may read the report's form, has one of its roles (if it names any), and sees in
        full every field its numbers depend on."""
        form = definitions.forms[report.form]
        found = policy(principal, form)
        if found is None or "read" not in found.actions:
            return False
        if report.roles and not principal.is_admin and not {r.key for r in principal.roles} & set(report.roles):
            return False
        return all(k not in found.hidden and not is_masked(found, form.fields[k]) for k in report.read_fields)

    def report(self, definitions: Definitions, principal: Principal, key: str) -> ReportSpec:
        report = definitions.reports.get(key)
        if report is None:
            raise NotFound()
        if not self.may(definitions, principal, report):
            raise NotPermitted()
        return report

    def picks(self, definitions: Definitions, principal: Principal, report: ReportSpec) -> list[str]:
        """The fields the principal may pick on the page (those they may filter the list by)."""
        form = definitions.forms[report.form]
        found = policy(principal, form)
        return [k for k in report.pick if found is not None and k not in found.hidden and not is_masked(found, form.fields[k])]

    # --- running --------------------------------------------------------------------------------------
    def run(self, definitions: Definitions, principal: Principal, key: str, picked: Mapping[str, str]) -> ReportResult:
        report = self.report(definitions, principal, key)
        form = definitions.forms[report.form]
        params = self._params(definitions, principal, report, picked)
        query = ListQuery.parse(form, params)
        with self.db.read() as s:
            projection, conditions = self.records.conditions(s, form, principal, query)
            unit_path = s.scalar(select(OrgUnit.path).where(OrgUnit.id == query.unit)) if query.unit else ""
            described = self._described(s, definitions, form, report, query)
            if report.kind == "completeness":
                result = self._completeness(s, definitions, principal, report, form, projection, conditions)
            else:
                def titles(target: str, ids: set[int]) -> dict[int, str]:  # a link's records as the principal sees them
                    found = self.records.links.titles(s, principal, definitions.forms[target], ids)
                    return {i: str(value) for i, value in found.items()}
                result = self._table(s, report, form, projection, conditions, titles)
        result.params, result.unit_path, result.described = params, unit_path or "", described
        return result

    def _params(self, definitions: Definitions, principal: Principal, report: ReportSpec,
                picked: Mapping[str, str]) -> dict[str, str]:
        """The list's query string for the report: what the user picked among the report's `pick` fields (a value,
        or a range `__ge`/`__lt`) and a unit, then the fixed filters (which the user cannot change)."""
        allowed = set(self.picks(definitions, principal, report))
        params: dict[str, str] = {}
        for name, value in picked.items():
            key, _, op = name.partition("__")
            if value and ((key in allowed and op in ("", "ge", "lt")) or name == "unit"):
                params[name] = value
        for condition in report.filters:
            params.update(condition.params())
        return params

    def _described(self, s: Any, definitions: Definitions, form: FormSpec, report: ReportSpec,
                   query: ListQuery) -> list[tuple[str, str]]:
        lines = []
        if query.unit:
            name = s.scalar(select(OrgUnit.name).where(OrgUnit.id == query.unit))
            lines.append(("单位", name or "?"))
        for key, value in query.filters.items():
            spec = form.fields[key]
            typed, issues = spec.kind.clean(value)
            lines.append((spec.label, value if issues else spec.kind.to_text(typed)))
        for key, (low, high) in query.ranges.items():
            lines.append((form.fields[key].label, f"{low or ''} 至 {high or ''}（不含）"))
        for key in query.empty:
            lines.append((form.fields[key].label, "未填"))
        return lines

    def _table(self, s: Any, report: ReportSpec, form: FormSpec, projection: Projection,
               conditions: list[Any], titles: Callable[[str, set[int]], dict[int, str]]) -> ReportResult:
        today = dt.date.today()
        dims = [d for d in (report.rows, report.columns) if d is not None]
        grouped = [_Grouping(d, projection, today, titles) for d in dims]
        parts = _parts(report.measures, projection)
        exprs = [e.label(f"g{i}_{j}") for i, g in enumerate(grouped) for j, e in enumerate(g.exprs)]
        selected = [*exprs, *(p.expr.label(p.name) for p in parts)]
        statement = select(*selected).where(*conditions)
        if exprs:
            statement = statement.group_by(*exprs)
        found: dict[tuple[Key, Key], dict[str, Any]] = {}
        for row in s.execute(statement).mappings():
            keys = [tuple(row[f"g{i}_{j}"] for j in range(len(g.exprs))) for i, g in enumerate(grouped)]
            found[(keys[0], keys[1] if len(keys) > 1 else ())] = {p.name: row[p.name] for p in parts}
        combinable = all(p.combine is not None for p in parts)
        if combinable:
            row_parts = _combined(parts, found, lambda k: k[0])
            column_parts = _combined(parts, found, lambda k: k[1]) if report.columns else {}
            total_parts = _combined(parts, found, lambda k: ()).get((), {p.name: None for p in parts})
        else:
            row_parts = self._regroup(s, grouped[:1], parts, conditions)
            column_parts = self._regroup(s, grouped[1:], parts, conditions) if report.columns else {}
            total_parts = self._regroup(s, [], parts, conditions).get((), {})
        grand = total_parts.get("n_count") or 0
        finish = lambda values: _measures(report.measures, values, grand)  # noqa: E731
        rows = grouped[0].headers(s, {k[0] for k in found})
        columns = grouped[1].headers(s, {k[1] for k in found}) if report.columns else []
        return ReportResult(
            report, form, report.measures, rows, columns,
            cells={k: finish(v) for k, v in found.items()}, row_totals={k: finish(v) for k, v in row_parts.items()},
            column_totals={k: finish(v) for k, v in column_parts.items()}, total=finish(total_parts), params={})

    def _regroup(self, s: Any, grouped: list["_Grouping"], parts: list["_Part"], conditions: list[Any]
                 ) -> dict[Key, dict[str, Any]]:
        """The parts grouped by these dimensions alone: the totals of a report whose parts cannot be combined."""
        exprs = [e.label(f"g{j}") for g in grouped for j, e in enumerate(g.exprs)]
        statement = select(*exprs, *(p.expr.label(p.name) for p in parts)).where(*conditions)
        if exprs:
            statement = statement.group_by(*exprs)
        result = {}
        for row in s.execute(statement).mappings():
            result[tuple(row[f"g{j}"] for j in range(len(exprs)))] = {p.name: row[p.name] for p in parts}
        return result

    def _completeness(self, s: Any, definitions: Definitions, principal: Principal, report: ReportSpec,
                      form: FormSpec, projection: Projection, conditions: list[Any]) -> ReportResult:
        """Per unit (at the report's level) and field: the share of records with the field filled, and the
        number of incomplete records. Fields the principal may not see in full are left out."""
        found = policy(principal, form)
        keys = [k for k in report.fields if found is not None and k not in found.hidden and not is_masked(found, form.fields[k])]
        table = projection.table
        grouped = [_Grouping(report.rows, projection, dt.date.today())] if report.rows else []
        exprs = [e.label("g0_0") for g in grouped for e in g.exprs]
        measures = [func.count().label("n"), func.sum(case((table.c.incomplete.is_(True), 1), else_=0)).label("bad"),
                    *(func.count(projection.column(k)).label(f"f_{k}") for k in keys)]
        statement = select(*exprs, *measures).where(*conditions)
        if exprs:
            statement = statement.group_by(*exprs)
        columns = [Header(("incomplete",), "信息不完整", {"incomplete": "1"})]
        columns += [Header((k,), form.fields[k].label, {f"{k}__empty": "1"}) for k in keys]
        cells: dict[tuple[Key, Key], dict[str, Any]] = {}
        totals: dict[str, int] = {"n": 0, "bad": 0, **{k: 0 for k in keys}}
        row_totals: dict[Key, dict[str, Any]] = {}
        seen = set()
        for row in s.execute(statement).mappings():
            key = (row["g0_0"],) if grouped else ()
            seen.add(key)
            n = row["n"]
            totals["n"] += n
            totals["bad"] += int(row["bad"] or 0)
            row_totals[key] = {"count": n}
            cells[(key, ("incomplete",))] = {"count": int(row["bad"] or 0), "share": _percent(row["bad"] or 0, n, 1)}
            for k in keys:
                filled = row[f"f_{k}"]
                totals[k] += filled
                cells[(key, (k,))] = {"count": n - filled, "share": _percent(filled, n, 1)}
        rows = grouped[0].headers(s, seen) if grouped else [Header((), "全部", {})]
        column_totals = {("incomplete",): {"count": totals["bad"], "share": _percent(totals["bad"], totals["n"], 1)}}
        column_totals.update({(k,): {"count": totals["n"] - totals[k], "share": _percent(totals[k], totals["n"], 1)} for k in keys})
        return ReportResult(report, form, (), rows, columns, cells, row_totals, column_totals, {"count": totals["n"]},
                            params={}, completeness=True)

    # --- dashboards -----------------------------------------------------------------------------------
    def dashboard_for(self, definitions: Definitions, principal: Principal) -> DashboardSpec | None:
        roles = {r.key for r in principal.roles}
        return next((d for d in definitions.dashboards.values() if roles & set(d.roles)), None)

    def dashboard_numbers(self, definitions: Definitions, principal: Principal, dashboard: DashboardSpec
                          ) -> tuple[list[tuple[Any, int | None, dict[str, str] | None]], list[ReportResult]]:
        """The dashboard's cards and chart results, reused for DASHBOARD_TTL seconds by everyone with the same roles
        and scope: the home page is opened at every sign-in, and a district's numbers are a scan of a million rows
        (docs/architecture.md "Reports"). Report pages are always counted afresh."""
        own = any(role.scope == "own" for role in principal.roles)
        key = (definitions.version, dashboard.key, tuple(sorted(r.key for r in principal.roles)),
               principal.unit_paths, tuple(sorted((k, tuple(sorted(v))) for k, v in principal.anchors.items())),
               principal.user_id if own else 0)
        now = time.monotonic()
        with _DASHBOARDS_LOCK:
            cache = _DASHBOARDS.setdefault(self.db, {})
            found = cache.get(key)
        if found is not None and found[0] > now:
            return found[1]
        cards = self.card_counts(definitions, principal, dashboard)
        charts = [self.run(definitions, principal, k, {}) for k in dashboard.charts
                  if self.may(definitions, principal, definitions.reports[k])]
        with _DASHBOARDS_LOCK:
            if len(cache) > 512:
                cache.clear()
            cache[key] = (now + DASHBOARD_TTL, (cards, charts))
        return cards, charts

    def card_counts(self, definitions: Definitions, principal: Principal,
                    dashboard: DashboardSpec) -> list[tuple[Any, int | None, dict[str, str] | None]]:
        """(card, number, list filters) for every card of a form the principal may read; `tasks` cards come back
        with None for the caller to fill in."""
        shown = []
        with self.db.read() as s:
            for card in dashboard.cards:
                if card.tasks:
                    shown.append((card, None, None))
                    continue
                form = definitions.forms[card.form]
                found = policy(principal, form)
                if found is None or "read" not in found.actions:
                    continue
                filters = card.all_filters(dt.date.today())
                if any(f.key in found.hidden or is_masked(found, form.fields[f.key]) for f in filters):
                    continue
                params = {name: value for f in filters for name, value in f.params().items()}
                if card.incomplete:
                    params["incomplete"] = "1"
                _projection, conditions = self.records.conditions(s, form, principal, ListQuery.parse(form, params))
                table = _projection.table
                number = s.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one()
                shown.append((card, number, params))
        return shown


# Per database (a test process opens many): {key: (expires, numbers)}.
_DASHBOARDS: "weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[float, Any]]]" = weakref.WeakKeyDictionary()
_DASHBOARDS_LOCK = threading.Lock()


# --- grouping ------------------------------------------------------------------------------------------

class _Grouping:
    """A dimension as SQL: the expressions grouped by, and how their values become headers."""

    def __init__(self, dimension: Dimension, projection: Projection, today: dt.date,
                 titles: Callable[[str, set[int]], dict[int, str]] | None = None) -> None:
        self.dimension, self.projection, self.titles = dimension, projection, titles
        d = dimension
        if d.kind == "level":
            self.exprs: list[ColumnElement] = [projection.table.c[f"lv_{d.key}"]]
            return
        column = projection.column(d.key)
        if d.kind == "date" and d.by == "term":
            # 学年 from September; the first term is September to January, the second February to August.
            year, month = extract("year", column), extract("month", column)
            self.exprs = [case((month >= 9, year), else_=year - 1), case((or_(month >= 9, month == 1), 1), else_=2)]
        elif d.kind == "date":
            self.exprs = [extract("year", column)] + ([extract("month", column)] if d.by == "month" else [])
        elif d.kind in ("bands", "age"):
            self.ranges = _number_ranges(d.bands) if d.kind == "bands" else _age_ranges(d.bands, today)
            whens = [(_within(column, low, high), literal(i)) for i, (low, high, _label) in enumerate(self.ranges)]
            self.exprs = [case(*whens, else_=None)]
        else:
            self.exprs = [column]

    def headers(self, s: Any, keys: Iterable[Key]) -> list[Header]:
        d = self.dimension
        keys = set(keys)
        if d.kind == "level":
            ids = [k[0] for k in keys if k[0] is not None]
            units = {row.id: row for row in s.execute(select(OrgUnit.id, OrgUnit.name, OrgUnit.path).where(OrgUnit.id.in_(ids)))} if ids else {}
            found = [Header((i,), units[i].name, {"unit": str(i)}, units[i].path) for i in ids if i in units]
            found.sort(key=lambda h: (h.label, h.key))
        elif d.kind == "date":
            found = [self._date_header(k) for k in keys if k[0] is not None]
            found.sort(key=lambda h: tuple(int(v) for v in h.key))
        elif d.kind in ("bands", "age"):
            found = []
            for k in sorted((k for k in keys if k[0] is not None), key=lambda k: int(k[0])):
                low, high, label = self.ranges[int(k[0])]
                params = {}
                if low is not None:
                    params[f"{d.key}__ge"] = _text(low)
                if high is not None:
                    params[f"{d.key}__lt"] = _text(high)
                found.append(Header(k, label, params))
        elif d.spec is not None and d.spec.kind.name == "link" and self.titles is not None:
            ids = {int(k[0]) for k in keys if k[0] is not None}
            named = self.titles(d.spec.kind.form, ids) if ids else {}  # type: ignore[attr-defined]
            found = [Header((k[0],), named.get(int(k[0]), f"#{k[0]}"), {d.key: str(k[0])}) for k in keys if k[0] is not None]
            found.sort(key=lambda h: (h.label, h.key))
        else:
            found = [self._value_header(k[0]) for k in keys if k[0] is not None]
            order = _option_order(d)
            found.sort(key=lambda h: (order.get(h.key[0], len(order)), h.key[0]))
        if any(k[0] is None for k in keys):
            empty = {f"{d.key}__empty": "1"} if d.kind != "level" else None
            found.append(Header(tuple(None for _ in self.exprs), NO_UNIT_LABEL if d.kind == "level" else EMPTY_LABEL, empty))
        return found

    def _value_header(self, value: Any) -> Header:
        d = self.dimension
        kind = d.spec.kind  # type: ignore[union-attr]
        if kind.name == "boolean":
            return Header((value,), kind.to_text(bool(value)), {d.key: "true" if value else "false"})
        return Header((value,), kind.to_text(kind.from_json(value) if kind.name == "choice" else value) or str(value),
                      {d.key: str(value)})

    def _date_header(self, key: Key) -> Header:
        d = self.dimension
        year = int(key[0])
        if d.by == "term":
            first = int(key[1]) == 1
            start = dt.date(year, 9, 1) if first else dt.date(year + 1, 2, 1)
            end = dt.date(year + 1, 2, 1) if first else dt.date(year + 1, 9, 1)
            label = f"{year}–{year + 1}学年第{'一' if first else '二'}学期"
        elif d.by == "month":
            month = int(key[1])
            start = dt.date(year, month, 1)
            end = dt.date(year + (month == 12), month % 12 + 1, 1)
            label = f"{year}-{month:02d}"
        else:
            start, end, label = dt.date(year, 1, 1), dt.date(year + 1, 1, 1), f"{year}年"
        return Header(key, label, {f"{d.key}__ge": start.isoformat(), f"{d.key}__lt": end.isoformat()})


def _option_order(d: Dimension) -> dict[Any, int]:
    options = getattr(d.spec.kind, "options", ()) if d.spec is not None else ()
    return {option.value: i for i, option in enumerate(options)}


def _within(column: ColumnElement, low: Any, high: Any) -> ColumnElement:
    parts = []
    if low is not None:
        parts.append(column >= low)
    if high is not None:
        parts.append(column < high)
    return and_(*parts)


def _number_ranges(edges: tuple[Any, ...]) -> list[tuple[Any, Any, str]]:
    """Bands between the edges: below the first, from each edge to the next, from the last up."""
    whole = all(float(e).is_integer() for e in edges)
    shown = [str(int(e)) if whole else str(e) for e in edges]
    ranges: list[tuple[Any, Any, str]] = [(None, edges[0], f"<{shown[0]}")]
    for i in range(len(edges) - 1):
        upper = str(int(edges[i + 1]) - 1) if whole else f"{shown[i + 1]}（不含）"
        ranges.append((edges[i], edges[i + 1], f"{shown[i]}–{upper}"))
    ranges.append((edges[-1], None, f"≥{shown[-1]}"))
    return ranges


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _age_ranges(edges: tuple[Any, ...], today: dt.date) -> list[tuple[Any, Any, str]]:
    """Age bands as ranges of the birth date: aged at least `a` today is born on or before `a` years ago, i.e.
    before the day after. Youngest first."""
    after = [_years_before(today, int(a)) + dt.timedelta(days=1) for a in edges]
    ranges: list[tuple[Any, Any, str]] = [(after[0], None, f"{int(edges[0])}岁以下")]
    for i in range(len(edges) - 1):
        ranges.append((after[i + 1], after[i], f"{int(edges[i])}–{int(edges[i + 1]) - 1}岁"))
    ranges.append((None, after[-1], f"{int(edges[-1])}岁及以上"))
    return ranges


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)


# --- measures as parts the database adds up --------------------------------------------------------------

@dataclass(frozen=True)
class _Part:
    name: str
    expr: ColumnElement
    combine: Callable[[list[Any]], Any] | None  # how cells make a total (None: count it again)


def _sum(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _min(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _max(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _parts(measures: Iterable[Measure], projection: Projection) -> list[_Part]:
    parts: dict[str, _Part] = {"n_count": _Part("n_count", func.count(), _sum)}
    for m in measures:
        column = projection.column(m.of) if m.of else None
        if m.kind == "count_distinct":
            parts[f"d_{m.of}"] = _Part(f"d_{m.of}", func.count(distinct(column)), None)
        elif m.kind in ("sum", "avg"):
            parts[f"s_{m.of}"] = _Part(f"s_{m.of}", func.sum(column), _sum)
            parts[f"c_{m.of}"] = _Part(f"c_{m.of}", func.count(column), _sum)
        elif m.kind == "min":
            parts[f"lo_{m.of}"] = _Part(f"lo_{m.of}", func.min(column), _min)
        elif m.kind == "max":
            parts[f"hi_{m.of}"] = _Part(f"hi_{m.of}", func.max(column), _max)
        elif m.kind == "rate":
            name = f"p_{m.of}_{m.key}"
            parts[name] = _Part(name, func.sum(case((column >= m.at_least, 1), else_=0)), _sum)
            parts[f"c_{m.of}"] = _Part(f"c_{m.of}", func.count(column), _sum)
    return list(parts.values())


def _combined(parts: list[_Part], cells: Mapping[tuple[Key, Key], Mapping[str, Any]],
              by: Callable[[tuple[Key, Key]], Key]) -> dict[Key, dict[str, Any]]:
    gathered: dict[Key, dict[str, list[Any]]] = {}
    for key, values in cells.items():
        into = gathered.setdefault(by(key), {p.name: [] for p in parts})
        for p in parts:
            into[p.name].append(values[p.name])
    return {k: {p.name: p.combine(v[p.name]) for p in parts} for k, v in gathered.items()}  # type: ignore[misc]


def _measures(measures: Iterable[Measure], parts: Mapping[str, Any], grand: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for m in measures:
        if m.kind == "count":
            values[m.key] = int(parts.get("n_count") or 0)
        elif m.kind == "share":
            values[m.key] = _percent(parts.get("n_count") or 0, grand, m.places)
        elif m.kind == "count_distinct":
            values[m.key] = int(parts.get(f"d_{m.of}") or 0)
        elif m.kind == "sum":
            values[m.key] = _number(parts.get(f"s_{m.of}"), m)
        elif m.kind == "avg":
            total, n = parts.get(f"s_{m.of}"), parts.get(f"c_{m.of}") or 0
            values[m.key] = None if not n or total is None else _round(Decimal(str(total)) / Decimal(n), m.places)
        elif m.kind == "min":
            values[m.key] = _number(parts.get(f"lo_{m.of}"), m)
        elif m.kind == "max":
            values[m.key] = _number(parts.get(f"hi_{m.of}"), m)
        elif m.kind == "rate":
            values[m.key] = _percent(parts.get(f"p_{m.of}_{m.key}") or 0, parts.get(f"c_{m.of}") or 0, m.places)
    return values


def _number(value: Any, m: Measure) -> Any:
    if value is None:
        return None
    if m.spec is not None and m.spec.kind.name == "integer":
        return int(value)
    return Decimal(str(value))


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _percent(part: Any, whole: Any, places: int) -> Decimal | None:
    """part / whole as a percentage, rounded half up; None when there is nothing to divide by."""
    if not whole:
        return None
    return _round(Decimal(int(part) * 100) / int(whole), places)
