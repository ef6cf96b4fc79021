"""The student archive as a person uses it, in Debian Chromium against the real `dangan serve`.

Main scenario (SQLite and PostgreSQL): first admin login with the forced password change, the new-student
form with an inline (htmx) ID-number check that does not reload the page, a conditional field that
htmx shows and makes required, save, find it in the list, edit, and the change in 修改历史.
Without JavaScript the same form works as a plain POST: the full page comes back with the summary,
the field error and everything typed.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from engine.loader import load_definitions
from engine.messages import MESSAGES
from tests.browser_fixtures import change_password, log_in
from tests.support import DEFINITIONS

pytestmark = pytest.mark.browser

STUDENT = load_definitions(DEFINITIONS).forms["student"]
ADMIN_NEW_PASSWORD = "Dangan#2026ok"  # must not contain the username
REG_PASSWORD = "Xueji#2026pw"  # "Reg#pass2026" would be refused: it contains "reg"
REG_NEW_PASSWORD = "Xueji#2026new"
SCHOOL = "示范区教育局/示范区第一中学"
RED = "rgb(198, 40, 40)"  # var(--error) in web/static/app.css
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def gb11643(first17: str) -> str:
    """The check character of an 18-digit ID number (GB 11643-1999), computed here independently of the engine."""
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, WEIGHTS)) % 11]


def id_pair(first17: str) -> tuple[str, str]:
    """(a number with a wrong check character, the valid number)."""
    right = gb11643(first17)
    wrong = next(c for c in "0123456789" if c != right)
    return first17 + wrong, first17 + right


def check_message(valid: str) -> str:
    """The inline message as the catalogue words it for the form's 身份证号 label."""
    return MESSAGES["id_card_check"].format(label=STUDENT.fields["id_card"].label, expected=valid[-1])


def choose_unit(page: Page, class_name: str) -> None:
    option = page.locator("#in-_unit option", has_text=class_name).first
    page.select_option("#in-_unit", value=option.get_attribute("value"))


def fill_student(page: Page, name: str, id_card: str, gender: str, birth: str, address: str) -> None:
    page.fill("#in-name", name)
    page.select_option("#in-gender", gender)
    page.fill("#in-birth_date", birth)
    page.fill("#in-enrol_year", "2023")
    page.select_option("#in-grade", "高一")
    page.fill("#in-address", address)
    page.fill("#in-guardian_name", "王建国")
    page.fill("#in-guardian_phone", "13812345678")
    page.fill("#in-id_card", id_card)


def htmx_settled(page: Page) -> None:
    """No htmx request in flight (htmx marks the requesting element with .htmx-request)."""
    page.wait_for_function("() => !document.querySelector('.htmx-request')")


def border_color(page: Page, selector: str) -> str:
    return page.locator(selector).evaluate("e => getComputedStyle(e).borderTopColor")


def assert_clean_log(var_dir: Path) -> None:
    log = (var_dir / "server.log").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def test_student_flow_with_htmx(browser: Browser, start_server, shot, fresh_db_url: str) -> None:
    backend = "pg" if fresh_db_url.startswith("postgresql") else "sqlite"
    server = start_server(fresh_db_url)
    base = server.base_url
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        # 1. first login as admin → forced password change → home
        page.goto(base + "/")
        expect(page).to_have_url(re.compile(r"/login\?next=/$"))
        shot(page, f"{backend}-01-login")
        log_in(page, base, "admin", server.initial_password)
        change_password(page, server.initial_password, ADMIN_NEW_PASSWORD)
        expect(page.locator(f'a.card[href="/f/{STUDENT.key}/"]')).to_be_visible()

        # 3. the new-student form: a wrong check digit is reported inline, without a page load
        page.goto(base + "/f/student/new")
        expect(page.locator("h1")).to_have_text(f"新增{STUDENT.title}")
        wrong, valid = id_pair("11010520080512001")
        assert valid == "110105200805120018"
        choose_unit(page, "高一(1)班")
        fill_student(page, "王小明", wrong, "男", "2008-05-12", "北京市东城区和平里一号")
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
        page.evaluate("window.__danganMarker = 'same-page'")
        url_before = page.url
        # Filling fired checks for the other fields; hx-sync="closest form:abort" drops a check while
        # another is in flight, so let those finish first.
        htmx_settled(page)
        with page.expect_response(lambda r: "/f/student/check?field=id_card" in r.url) as checked:
            page.press("#in-id_card", "Tab")
        assert checked.value.status == 200
        message = check_message(valid)
        expect(page.locator("#f-id_card #err-id_card .error")).to_have_text(message)
        expect(page.locator("#f-id_card #err-id_card .error")).to_be_visible()
        assert navigations == [], navigations
        assert page.url == url_before
        assert page.evaluate("window.__danganMarker") == "same-page"
        assert page.input_value("#in-id_card") == wrong  # what was typed stays in the box
        assert border_color(page, "#in-id_card") == RED  # the box turns red with its message
        shot(page, f"{backend}-02-form-inline-error")

        # 3b. two fields left in quick succession: each keeps its own inline message (a check sent while
        # another is in flight must not be dropped)
        page.evaluate("""() => {
            for (const [id, value] of [["in-name", "王1"], ["in-enrol_year", "1999"]]) {
                const input = document.getElementById(id);
                input.value = value;
                input.dispatchEvent(new Event("change", {bubbles: true}));
            }
        }""")
        expect(page.locator("#err-name .error")).to_have_text(STUDENT.fields["name"].messages["pattern"])
        year = STUDENT.fields["enrol_year"]
        expect(page.locator("#err-enrol_year .error")).to_have_text(
            MESSAGES["min_value"].format(label=year.label, limit=year.constraints["min"]))
        page.fill("#in-name", "王小明")
        page.fill("#in-enrol_year", "2023")
        page.press("#in-enrol_year", "Tab")
        expect(page.locator("#err-name .error")).to_have_count(0)
        expect(page.locator("#err-enrol_year .error")).to_have_count(0)
        htmx_settled(page)

        # 4. 健康状况 = 残疾 brings up the note as required (visible_if / required_if), and back
        note = page.locator("#f-disability_note")
        expect(note).to_be_hidden()
        with page.expect_response(lambda r: "/f/student/check?field=health" in r.url):
            page.select_option("#in-health", "残疾")
        expect(note).to_be_visible()
        mark = note.locator("label .req")
        expect(mark).to_be_visible()
        expect(mark).to_have_text("*")
        assert mark.evaluate("e => getComputedStyle(e).color") == RED
        expect(note.locator("textarea")).to_be_visible()
        shot(page, f"{backend}-03-form-disability")
        with page.expect_response(lambda r: "/f/student/check?field=health" in r.url):
            page.select_option("#in-health", "健康或良好")
        expect(note).to_be_hidden()
        assert navigations == [], navigations

        # 5. fix the number, save, find it in the list, edit, see the change in the history
        page.fill("#in-id_card", valid)
        htmx_settled(page)
        with page.expect_response(lambda r: "/f/student/check?field=id_card" in r.url):
            page.press("#in-id_card", "Tab")
        expect(page.locator("#err-id_card .error")).to_have_count(0)
        assert border_color(page, "#in-id_card") != RED
        with page.expect_navigation():
            page.click("button[name=_action][value=save]:not(.implicit-submit)")
        expect(page).to_have_url(re.compile(r"/f/student/\d+$"))
        expect(page.locator(".flash")).to_have_text("保存成功")
        record_url = page.url

        page.goto(base + "/f/student/")
        page.fill("#q", "王小明")
        with page.expect_navigation():
            page.click("form.filters button[type=submit]")
        expect(page.locator("p.muted", has_text="共")).to_have_text("共 1 条")
        link = page.locator("table.list a", has_text="王小明")
        expect(link).to_be_visible()
        shot(page, f"{backend}-04-list")
        with page.expect_navigation():
            link.click()
        assert page.url == record_url
        expect(page.locator("#v-address")).to_contain_text("北京市东城区和平里一号")
        expect(page.locator("#v-student_no")).to_contain_text("G" + valid)
        shot(page, f"{backend}-05-view")

        with page.expect_navigation():
            page.click("a.button:has-text('编辑')")
        expect(page.locator("h1")).to_have_text(f"编辑{STUDENT.title}")
        page.fill("#in-address", "北京市西城区金融街八号")
        with page.expect_navigation():
            page.click("button[name=_action][value=save]:not(.implicit-submit)")
        assert page.url == record_url
        expect(page.locator(".flash")).to_have_text("保存成功")
        expect(page.locator("#v-address")).to_contain_text("北京市西城区金融街八号")

        with page.expect_navigation():
            page.click("a.button:has-text('修改历史')")
        address_label = STUDENT.fields["address"].label
        row = page.locator("table.changes tr", has=page.locator("td", has_text=address_label)).first
        expect(row.locator("td")).to_have_text([address_label, "北京市东城区和平里一号", "北京市西城区金融街八号"])
        expect(page.locator(".timeline > li")).to_have_count(2)  # 修改 (newest first) and 创建
        shot(page, f"{backend}-06-history")
    finally:
        context.close()
    assert_clean_log(server.var_dir)


def test_student_form_without_javascript(browser: Browser, start_server, shot, tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'nojs.db'}")
    base = server.base_url
    # 2. a registrar made with the CLI, against the same database
    done = server.cli("create-user", "--username", "reg", "--role", "registrar", "--unit", SCHOOL, "--password", REG_PASSWORD)
    assert "已创建用户 reg" in done.stdout
    context = browser.new_context(java_script_enabled=False, locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        log_in(page, base, "reg", REG_PASSWORD)
        change_password(page, REG_PASSWORD, REG_NEW_PASSWORD)

        page.goto(base + "/f/student/new")
        assert page.evaluate("1 + 1") == 2  # Playwright's own world still runs; the page's scripts do not
        expect(page.locator("html")).not_to_have_class(re.compile(r"\bjs\b"))
        wrong, valid = id_pair("33010620090301002")  # 女 (17th digit even), born 2009-03-01
        choose_unit(page, "高一(2)班")
        fill_student(page, "李小红", wrong, "女", "2009-03-01", "浙江省杭州市西湖区文三路")
        page.fill("#in-remarks", "无脚本提交测试")
        with page.expect_navigation() as sent:
            page.click("button[name=_action][value=save]:not(.implicit-submit)")
        assert sent.value.status == 422
        expect(page).to_have_url(re.compile(r"/f/student/new$"))
        message = check_message(valid)
        expect(page.locator("#summary")).to_contain_text("请修改以下")
        expect(page.locator("#summary li", has_text=message)).to_have_count(1)
        expect(page.locator("#f-id_card.has-error #err-id_card .error")).to_have_text(message)
        # Everything typed comes back.
        assert page.input_value("#in-id_card") == wrong
        assert page.input_value("#in-name") == "李小红"
        assert page.input_value("#in-gender") == "女"
        assert page.input_value("#in-birth_date") == "2009-03-01"
        assert page.input_value("#in-address") == "浙江省杭州市西湖区文三路"
        assert page.input_value("#in-guardian_phone") == "13812345678"
        assert page.input_value("#in-remarks") == "无脚本提交测试"
        unit_label = page.locator("#in-_unit option:checked").inner_text()
        assert unit_label.endswith("高一(2)班"), unit_label
        shot(page, "nojs-01-form-error")

        page.fill("#in-id_card", valid)
        with page.expect_navigation() as sent:
            page.click("button[name=_action][value=save]:not(.implicit-submit)")
        expect(page).to_have_url(re.compile(r"/f/student/\d+$"))
        expect(page.locator(".flash")).to_have_text("保存成功")
        expect(page.locator("h1")).to_have_text("李小红")
        shot(page, "nojs-02-saved")
    finally:
        context.close()
    assert_clean_log(server.var_dir)
