"""A report as a bureau or school uses it, in Debian Chromium against the real `dangan serve`: the home dashboard,
the report page, a click on a bar that lands on the filtered list of exactly that many records, the .xlsx export
opened with openpyxl."""
from __future__ import annotations

import re
from pathlib import Path

import openpyxl
import pytest
from playwright.sync_api import Browser, expect

from tests.browser_fixtures import change_password, log_in
from tests.engine.helpers import principal_of, student_values
from tests.support import CLASS_1, CLASS_2, build, unit_id

pytestmark = pytest.mark.browser
NEW_PASSWORD = "Dangan#2026ok"


def _seed(db_url: str, tmp: Path) -> None:
    _app, state = build(db_url, tmp=tmp)
    admin = principal_of(state, "admin")  # the first administrator, made by the server's start
    student = state.definitions.forms["student"]
    for serial, (path, grade) in enumerate([(CLASS_1, "高一"), (CLASS_1, "高一"), (CLASS_1, "高一"), (CLASS_2, "高二"),
                                            (CLASS_2, "高二")], start=1):
        values = {k: v for k, v in student_values(serial, grade=grade).items() if k in student.fields}
        assert state.records.create(student, admin, unit_id(state, path), values).ok
    state.db.dispose()


def test_report__click_a_bar_then_export(browser: Browser, start_server, fresh_db_url: str, tmp_path: Path) -> None:  # noqa: F811
    server = start_server(fresh_db_url)
    _seed(fresh_db_url, tmp_path)
    context = browser.new_context(accept_downloads=True, locale="zh-CN")
    page = context.new_page()
    try:
        log_in(page, server.base_url, "admin", server.initial_password)
        change_password(page, server.initial_password, NEW_PASSWORD)
        expect(page.locator(".dashboard .number-card").first).to_be_visible()  # the home dashboard
        page.goto(server.base_url + "/reports/")
        page.click("text=在校生统计（年级 × 性别）")
        expect(page.locator("h1")).to_have_text("在校生统计（年级 × 性别）")
        bar = page.locator("svg.chart a.mark").first
        shown = bar.locator("title").text_content()
        number = int(re.search(r"：(\d+)$", shown)[1])
        with page.expect_navigation():
            bar.click()
        expect(page).to_have_url(re.compile(r"/f/student/\?"))
        expect(page.locator("p.muted", has_text="共")).to_have_text(f"共 {number} 条")

        page.go_back()
        with page.expect_download() as download:
            page.click("text=导出 Excel")
        target = tmp_path / "report.xlsx"
        download.value.save_as(target)
        sheet = openpyxl.load_workbook(target).active
        rows = list(sheet.iter_rows(values_only=True))
        assert rows[0][0] == "在校生统计（年级 × 性别）"
        assert ("学籍状态：在读",) == tuple(r[0] for r in rows if r[0] and str(r[0]).startswith("学籍状态"))
        total = next(r for r in rows if r[0] == "合计")
        assert total[-1] == 5
    finally:
        context.close()
