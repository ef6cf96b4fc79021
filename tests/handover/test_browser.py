"""升学衔接 in Debian Chromium against the real `dangan serve`: the receiving school's registrar, on a phone (390 px),
finds the incoming archive in 升学衔接, reads it with its 综合素质评价, confirms the admission into a class; the
sending school, on a laptop (1366 px), finds what it sent in its log. No page scrolls sideways."""
from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from engine.loader import load_definitions
from engine.org import build_principal, unit_by_path
from engine.records import RecordService
from engine.storage.db import Database
from engine.storage.models import ApplicationTask, User
from engine.workflows.service import WorkflowService
from tests.browser_fixtures import change_password, log_in
from tests.handover.support import FINAL_GRADE
from tests.support import CLASS_1, DEFINITIONS, DISTRICT, SCHOOL, valid_student

pytestmark = pytest.mark.browser

FIRST, SECOND = "Start#2026a", "Chosen#2026b"
RECEIVING_SCHOOL = "滨江区教育局/滨江中学"
RECEIVING_CLASS = "滨江区教育局/滨江中学/高一/高一(1)班"


def graduate_to_receiving_school(db_url: str) -> int:
    """A student with an evaluation, graduated by the bureau to the receiving school, straight through the engine
    (the 毕业 application's pages have their own tests): the student's id."""
    definitions = load_definitions(DEFINITIONS)
    db = Database(db_url)
    try:
        records = RecordService(db, lambda: definitions.forms)
        workflows = WorkflowService(db, records)
        with db.read() as s:
            sender = build_principal(s, s.scalar(select(User).where(User.username == "sender")), definitions)
            bureau = build_principal(s, s.scalar(select(User).where(User.username == "bureau")), definitions)
            unit, school = unit_by_path(s, CLASS_1).id, unit_by_path(s, RECEIVING_SCHOOL).id
        student = records.create(definitions.forms["student"], sender, unit, valid_student(grade=FINAL_GRADE)).record_id
        made = records.create(definitions.forms["evaluation"], sender, None, {
            "student": student, "term": "2023-2024学年第二学期", "grade": FINAL_GRADE, "moral": "A", "academic": "B", "health": "A",
            "art": "C", "practice": "B", "conduct": "乐于助人"})
        assert made.ok, made.issues
        started = workflows.start(definitions, definitions.workflows["graduate"], sender, student, {
            "graduation_date": "2026-06-30", "destination": "升学", "school_name": "滨江中学"}, chosen_unit_id=school)
        assert started.ok, started.issues
        with db.read() as s:
            task = s.scalar(select(ApplicationTask.id).where(ApplicationTask.application_id == started.application_id))
        workflows.decide(definitions, bureau, started.application_id, task, "approve")
        return student  # type: ignore[return-value]
    finally:
        db.dispose()


def signed_in(browser: Browser, base: str, username: str, width: int) -> Page:
    context = browser.new_context(locale="zh-CN", viewport={"width": width, "height": 844 if width < 500 else 768})
    context.set_default_timeout(15_000)
    page = context.new_page()
    log_in(page, base, username, FIRST)
    change_password(page, FIRST, SECOND)
    return page


def page_width(page: Page) -> int:
    return page.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")


def test_receiver_confirms_on_a_phone__sender_sees_its_log(browser: Browser, start_server, shot, fresh_db_url: str) -> None:
    backend = "pg" if fresh_db_url.startswith("postgresql") else "sqlite"
    server = start_server(fresh_db_url)
    base = server.base_url
    for username, role, unit in (("sender", "registrar", SCHOOL), ("receiver", "registrar", RECEIVING_SCHOOL),
                                 ("bureau", "bureau", DISTRICT)):
        server.cli("create-user", "--username", username, "--role", role, "--unit", unit, "--password", FIRST)
    student = graduate_to_receiving_school(fresh_db_url)

    page = signed_in(browser, base, "receiver", 390)
    try:
        expect(page.locator("#nav-count-handovers")).to_have_text("1")
        page.goto(base + "/handovers/")
        expect(page.locator("#handovers tbody tr")).to_have_count(1)
        assert page_width(page) <= 390
        shot(page, f"handover-{backend}-390-incoming")
        with page.expect_navigation():
            page.locator("#handovers a", has_text="张三").click()
        expect(page.locator("#handover-status")).to_have_text("待确认")
        expect(page.locator("#v-name")).to_have_text("张三")
        page.locator("#c-evaluation summary").click()
        expect(page.locator("#c-evaluation details")).to_contain_text("乐于助人")
        assert page_width(page) <= 390
        shot(page, f"handover-{backend}-390-view")
        page.select_option("#in-unit", label=RECEIVING_CLASS)
        with page.expect_navigation():
            page.click("#confirm-form button[type=submit]")
        expect(page.locator(".flash")).to_have_text(f"已确认录取：张三 的档案已转入 {RECEIVING_CLASS}")
        assert page.url.endswith(f"/f/student/{student}")
        expect(page.locator("#v-status")).to_have_text("在读")
        expect(page.locator("#c-evaluation")).to_contain_text("（1）")  # the evaluation came along
        assert page_width(page) <= 390
        shot(page, f"handover-{backend}-390-confirmed")
    finally:
        page.context.close()

    page = signed_in(browser, base, "sender", 1366)
    try:
        page.goto(base + "/handovers/?tab=sent")
        row = page.locator("#handovers tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text(RECEIVING_SCHOOL)
        expect(row).to_contain_text("已确认录取")
        assert page_width(page) <= 1366
        shot(page, f"handover-{backend}-1366-sent")
        page.goto(f"{base}/f/student/{student}")
        expect(page.locator("h1")).not_to_have_text("张三")  # no longer the sender's
    finally:
        page.context.close()
    log = (server.var_dir / "server.log").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-3000:]
