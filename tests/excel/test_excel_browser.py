"""Excel import as staff do it, in Debian Chromium against the real `dangan serve`: download the template,
fill it in Excel (openpyxl here), upload, read the preview, 确认导入, watch the progress bar, see the result."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest
from playwright.sync_api import Browser, Page, expect

from engine.messages import MESSAGES
from tests.browser_fixtures import change_password, log_in
from tests.excel.helpers import id_number

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Dangan#2026ok"
CLASS = "示范区教育局/示范区第一中学/高一/高一(1)班"


def sign_in_first_time(page: Page, base: str, password: str) -> None:
    log_in(page, base, "admin", password)
    change_password(page, password, NEW_PASSWORD)


def fill_template(template: Path, target: Path) -> list[str]:
    """Two good rows and one with an unknown 民族, typed into the downloaded template."""
    book = openpyxl.load_workbook(template)
    sheet = book["学生档案"]
    header = [str(c.value).rstrip("*") for c in sheet[1]]
    numbers = [id_number(dt.date(2009, 4, 1), 301), id_number(dt.date(2009, 4, 2), 302), id_number(dt.date(2009, 4, 3), 303)]
    people = [("浏览器甲", "男", "汉族"), ("浏览器乙", "女", "01"), ("浏览器丙", "男", "火星族")]
    for number, (name, gender, ethnicity), day in zip(numbers, people, (1, 2, 3)):
        values = {"所属班级": CLASS, "姓名": name, "性别": gender, "出生日期": dt.date(2009, 4, day), "民族": ethnicity,
                  "身份证号": number, "入学年份": 2024, "年级": "高一", "家长姓名": "家长", "家长联系电话": "13912345678"}
        sheet.append([values.get(label) for label in header])
    book.save(target)
    return numbers


def test_template_fill_upload_preview_confirm(browser: Browser, start_server, fresh_db_url: str, tmp_path: Path) -> None:  # noqa: F811
    server = start_server(fresh_db_url)
    context = browser.new_context(accept_downloads=True, locale="zh-CN")
    page = context.new_page()
    try:
        sign_in_first_time(page, server.base_url, server.initial_password)
        page.goto(server.base_url + "/f/student/")
        with page.expect_download() as download:
            page.click("text=下载导入模板")
        template = tmp_path / "template.xlsx"
        download.value.save_as(template)
        filled = tmp_path / "新生.xlsx"
        fill_template(template, filled)

        page.click("text=Excel 导入")
        expect(page.locator("h1")).to_contain_text("Excel 导入")
        page.set_input_files("#in-file", str(filled))
        page.check("input[name=error_mode][value=skip_invalid]")
        with page.expect_navigation():
            page.click("form[action='/f/student/imports'] button[type=submit]")

        # The preview: the page polls (htmx, every second) and reloads itself once the dry run is done.
        expect(page.locator("#import-result h2")).to_have_text("预览结果（尚未保存任何数据）", timeout=20_000)
        expect(page.locator("progress.progress")).to_be_visible()
        expect(page.locator("#count-new")).to_have_text("2")
        expect(page.locator("#count-invalid")).to_have_text("1")
        expect(page.locator("#import-errors")).to_contain_text(MESSAGES["choice"].format(label="民族", value="火星族"))
        expect(page.locator("#error-workbook")).to_be_visible()

        with page.expect_navigation():
            page.click("#commit-form button[type=submit]")
        expect(page.locator("progress.progress")).to_be_visible()
        expect(page.locator("#import-result h2")).to_have_text("导入结果", timeout=20_000)
        progress = page.locator("progress.progress")
        assert progress.get_attribute("value") == progress.get_attribute("max") == "3"
        expect(page.locator("#count-new")).to_have_text("2")
        expect(page.locator("#import-status")).to_have_text("已完成")

        page.click("text=查看学生档案列表")
        expect(page.locator("table.list")).to_contain_text("浏览器甲")
        expect(page.locator("table.list")).to_contain_text("浏览器乙")
        expect(page.locator("table.list")).not_to_contain_text("浏览器丙")
        page.goto(server.base_url + "/f/student/imports")
        expect(page.locator("#import-jobs")).to_contain_text("新生.xlsx")
    finally:
        context.close()
