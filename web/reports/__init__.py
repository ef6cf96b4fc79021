"""Report pages (统计报表): the list of reports a user may run, a report with its chart, its .xlsx export and
print view, and the home page's dashboard. The rules and numbers are engine/reports/service.py's."""
from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from litestar import Controller, Request, get
from litestar.params import FromPath
from litestar.response import Response, Template

from engine.permissions import policy, scope
from engine.reports.export import report_workbook
from engine.reports.service import ReportResult, ReportService
from web.auth import app_state, current_principal
from web.features import Feature
from web.pages import NavItem, page
from web.presenter import field_view
from web.reports.charts import build_chart
from web.state import AppState

BEIJING = dt.timezone(dt.timedelta(hours=8))
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def report_service(state: AppState) -> ReportService:
    return ReportService(state.db, state.records)


def list_href(form_key: str, params: dict[str, str] | None) -> str:
    return "" if params is None else f"/f/{form_key}/?{urlencode(params)}"


def shown(value: Any, percent: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value}%" if percent else str(value)


class ReportController(Controller):
    """`opt={"report": ...}` tells the permission matrix (tests/web/test_permissions.py) that the route runs one
    report: ReportService decides who may."""

    path = "/reports"

    @get("/", name="reports:index")
    async def index(self, request: Request) -> Template:
        state, principal = app_state(request), current_principal(request)
        reports = report_service(state).available(state.definitions, principal)
        return page(request, "reports/index.html", reports=reports, forms=state.definitions.forms, title="统计报表")

    @get("/{key:str}", name="reports:view", opt={"report": "one"})
    async def view(self, request: Request, key: FromPath[str]) -> Template:
        return await _report_page(request, key, printing=False)

    @get("/{key:str}/print", name="reports:print", opt={"report": "one"})
    async def print_view(self, request: Request, key: FromPath[str]) -> Template:
        return await _report_page(request, key, printing=True)

    @get("/{key:str}/xlsx", name="reports:export", opt={"report": "one"})
    async def export(self, request: Request, key: FromPath[str]) -> Response:
        state, principal = app_state(request), current_principal(request)
        result = await _run(request, key)
        content = report_workbook(result, principal.display_name, dt.datetime.now(BEIJING))
        name = quote(f"{result.report.title}.xlsx")
        return Response(content, media_type=XLSX, headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})


async def _run(request: Request, key: str) -> ReportResult:
    state, principal = app_state(request), current_principal(request)
    picked = dict(request.query_params)
    # Grouping a large district is database work of up to a second: off the event loop.
    return await anyio.to_thread.run_sync(lambda: report_service(state).run(state.definitions, principal, key, picked))


async def _report_page(request: Request, key: str, printing: bool) -> Template:
    state, principal = app_state(request), current_principal(request)
    result = await _run(request, key)
    form = result.form
    found = policy(principal, form)
    picks = [field_view(form, form.fields[k], found, raw=result.params.get(k, ""))
             for k in report_service(state).picks(state.definitions, principal, result.report)]
    reach = scope(principal, "read", form)
    units = [u for u in state.units() if reach.everything or any(u.path.startswith(p) for p in reach.paths)]
    query = urlencode({k: v for k, v in request.query_params.items()})
    return page(request, "reports/report.html", result=result, view=report_view(result), picks=picks, units=units,
                chosen_unit=request.query_params.get("unit", ""), query=query, printing=printing,
                title=result.report.title)


def report_view(result: ReportResult) -> dict[str, Any]:
    """The table as rows of (text, href, counts records) cells, and the chart, from a result. Every number links to
    the list of the records it is computed from; a number that counts them is marked (the list shows as many)."""
    form_key = result.form.key
    href = lambda *headers: list_href(form_key, result.drill(*headers))  # noqa: E731
    if result.completeness:
        head = [result.rows_label, "记录数", *(c.label for c in result.columns)]
        body = []
        for row in result.rows:
            line = [(row.label, "", False), (shown(result.row_totals.get(row.key, {}).get("count")), href(row), True)]
            for column in result.columns:
                cell = result.cell(row, column)
                text = f"{shown(cell.get('share'), True)}（缺 {cell.get('count', 0)}）" if column.key != ("incomplete",) \
                    else str(cell.get("count", 0))
                line.append((text, href(row, column) if cell.get("count") else "", False))
            body.append(line)
        foot = [("合计", "", False), (shown(result.total.get("count")), href(), True)]
        for column in result.columns:
            total = result.column_totals.get(column.key, {})
            text = str(total.get("count", 0)) if column.key == ("incomplete",) else f"{shown(total.get('share'), True)}（缺 {total.get('count', 0)}）"
            foot.append((text, href(column) if total.get("count") else "", False))
        return {"head": head, "body": body, "foot": foot, "chart": None}
    measures = result.measures
    first = measures[0]
    if result.columns:
        head = [f"{result.rows_label} \\ {result.columns_label}", *(c.label for c in result.columns), "合计"]
        counts = first.kind == "count"
        body = [[(row.label, "", False)] + [(shown(result.cell(row, c).get(first.key), first.percent), href(row, c), counts)
                                            if result.cell(row, c) else ("0" if counts else "—", "", False) for c in result.columns]
                + [(shown(result.row_totals.get(row.key, {}).get(first.key), first.percent), href(row), counts)] for row in result.rows]
        foot = [("合计", "", False)] + [(shown(result.column_totals.get(c.key, {}).get(first.key), first.percent), href(c), counts)
                                        for c in result.columns] + [(shown(result.total.get(first.key), first.percent), href(), counts)]
        series = [c.label for c in result.columns]
        values = [[result.cell(row, c).get(first.key) for c in result.columns] for row in result.rows]
        chart_href = lambda i, j: href(result.rows[i], result.columns[j]) if j >= 0 else href(result.rows[i])  # noqa: E731
    else:
        head = [result.rows_label, *(m.label for m in measures)]
        body = [[(row.label, "", False)] + [(shown(result.cell(row).get(m.key), m.percent), href(row), m.kind == "count")
                                            for m in measures] for row in result.rows]
        foot = [("合计", "", False)] + [(shown(result.total.get(m.key), m.percent), href(), m.kind == "count") for m in measures]
        series = [first.label]
        values = [[result.cell(row).get(first.key)] for row in result.rows]
        chart_href = lambda i, _j: href(result.rows[i])  # noqa: E731
    chart = build_chart(result.report.chart, result.report.title, [r.label for r in result.rows], series, values,
                        chart_href, lambda v: shown(v, first.percent))
    return {"head": head, "body": body, "foot": foot, "chart": chart}


def dashboard_context(request: Request) -> dict[str, Any] | None:
    """The home page's dashboard for the principal's roles: its number cards and charts (None: no dashboard)."""
    state, principal = app_state(request), current_principal(request)
    service = report_service(state)
    dashboard = service.dashboard_for(state.definitions, principal)
    if dashboard is None:
        return None
    todo = next((item for item in request.app.state.get("nav_extra", []) if item.key == "wf_todo"), None)
    numbers, results = service.dashboard_numbers(state.definitions, principal, dashboard)
    cards = []
    for card, number, params in numbers:
        if card.tasks:
            if todo is None or not todo.visible(principal):
                continue
            cards.append({"label": card.label, "number": todo.count(principal) if todo.count else 0, "href": todo.href, "help": card.help})
        else:
            cards.append({"label": card.label, "number": number, "href": list_href(card.form, params), "help": card.help})
    charts = [{"report": result.report, "view": report_view(result)} for result in results]
    return {"title": dashboard.title, "cards": cards, "charts": charts}


def reports_feature() -> Feature:
    def nav(state: AppState) -> list[NavItem]:
        def visible(principal: Any) -> bool:
            service, definitions = report_service(state), state.definitions  # on every page: stop at the first
            return any(service.may(definitions, principal, r) for r in definitions.reports.values())
        return [NavItem("reports", "/reports/", "统计报表", "在校生、学籍状态、完整性等统计，可导出 Excel", visible=visible)]

    return Feature("reports", routes=(ReportController,), nav=nav)

