"""Daily use in Debian Chromium against the real `dangan serve` (issue 15): Enter in a text box saves instead of
pressing a table's 添加一行 and keeps the chosen photo; at 390 px no page scrolls sideways; a record prints without
navigation."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser_fixtures import change_password, log_in
from tests.engine.helpers import png_bytes

pytestmark = pytest.mark.browser

SCHOOL = "示范区教育局/示范区第一中学"
PASSWORD, NEW_PASSWORD = "Xueji#2026pw", "Xueji#2026new"
ADMIN_PASSWORD = "Dangan#2026ok"


WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
FIRST17 = "33010620090301002"  # 女, born 2009-03-01
ID_CARD = FIRST17 + "10X98765432"[sum(int(c) * w for c, w in zip(FIRST17, WEIGHTS)) % 11]


def fill_valid_student(page: Page) -> None:
    option = page.locator("#in-_unit option", has_text="高一(1)班").first
    page.select_option("#in-_unit", value=option.get_attribute("value"))
    page.fill("#in-name", "林小雨")
    page.select_option("#in-gender", "女")
    page.fill("#in-birth_date", "2009-03-01")
    page.fill("#in-enrol_year", "2023")
    page.select_option("#in-grade", "高一")
    page.fill("#in-guardian_name", "林建国")
    page.fill("#in-guardian_phone", "13812345678")
    page.fill("#in-id_card", ID_CARD)


def page_width(page: Page) -> int:
    return page.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")


def test_enter_saves_keeps_the_photo__and_phone_width__and_print(browser: Browser, start_server, shot, tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'daily.db'}")
    base = server.base_url
    server.cli("create-user", "--username", "reg", "--role", "registrar", "--unit", SCHOOL, "--password", PASSWORD)
    context = browser.new_context(locale="zh-CN", viewport={"width": 1366, "height": 768})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        log_in(page, base, "reg", PASSWORD)
        change_password(page, PASSWORD, NEW_PASSWORD)

        # Item 9: Enter in a text box is 保存 (here refused: the ID number is missing), not 添加一行; the photo stays.
        page.goto(base + "/f/student/new")
        fill_valid_student(page)
        page.fill("#in-id_card", "")
        photo = tmp_path / "证件照.png"
        photo.write_bytes(png_bytes(4, 4))
        page.set_input_files("#in-photo", str(photo))
        with page.expect_navigation():
            page.press("#in-name", "Enter")
        expect(page.locator("#summary")).to_contain_text("请修改以下")
        expect(page.locator("#in-family tbody tr.empty")).to_have_count(1)  # no row was added
        expect(page.locator("#kept-photo")).to_contain_text("证件照.png")
        page.fill("#in-id_card", ID_CARD)
        with page.expect_navigation():
            page.press("#in-id_card", "Enter")
        expect(page).to_have_url(re.compile(r"/f/student/\d+$"))
        record_url = page.url
        expect(page.locator("img.thumb, img[src^='/files/']").first).to_be_visible()

        # Item 19: at 390 px, no page is wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        widths = {}
        for path in ("/", "/f/student/", "/f/student/new", record_url.removeprefix(base), f"{record_url.removeprefix(base)}/edit",
                     f"{record_url.removeprefix(base)}/history", "/f/student/imports/new", "/f/student/imports", "/wf/todo", "/wf/mine"):
            page.goto(base + path)
            widths[path] = page_width(page)
        shot(page, "daily-390-last")
        admin = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
        admin_page = admin.new_page()
        log_in(admin_page, base, "admin", server.initial_password)
        change_password(admin_page, server.initial_password, ADMIN_PASSWORD)
        for path in ("/admin/", "/admin/users", "/admin/users/new", "/admin/units"):
            admin_page.goto(base + path)
            widths[path] = page_width(admin_page)
        admin.close()
        assert {p: w for p, w in widths.items() if w > 390} == {}

        # Item 20: the record prints without navigation, on one or two A4 pages.
        page.set_viewport_size({"width": 1366, "height": 768})
        page.goto(record_url)
        page.emulate_media(media="print")
        assert page.locator("nav, header").first.evaluate("e => getComputedStyle(e).display") == "none"
        pdf = page.pdf(format="A4")
        assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") <= 2
    finally:
        context.close()
