"""Workflows as people use them, in Debian Chromium against the real `dangan serve`.

1. A transfer across districts with four users: the sending school's registrar starts it from the student's
   page (picking the receiving class and uploading proof), the receiving school's registrar approves from 待办,
   then both district bureaus approve; the student ends up in the receiving school's list and out of the
   sending school's.
2. A head teacher's edit of a student's name becomes a change request; the registrar sees the old → new diff
   and approves it.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from engine.loader import load_definitions
from engine.org import build_principal, unit_by_path
from engine.records import RecordService
from engine.storage.db import Database
from engine.storage.models import User
from tests.browser_fixtures import change_password, log_in
from tests.support import CLASS_1, DEFINITIONS, DISTRICT, OTHER_DISTRICT, SCHOOL, valid_student

pytestmark = pytest.mark.browser

FIRST = "Start#2026a"  # initial passwords given to `dangan create-user`
SECOND = "Chosen#2026b"  # what each user sets at the forced first-login change
RECEIVING_SCHOOL = "滨江区教育局/滨江中学"


def new_user(server, username: str, role: str, unit: str) -> None:
    done = server.cli("create-user", "--username", username, "--role", role, "--unit", unit, "--password", FIRST)
    assert f"已创建用户 {username}" in done.stdout


def seed_student(db_url: str, username: str) -> int:
    """A student created by `username` straight through the engine (the student form has its own browser test)."""
    definitions = load_definitions(DEFINITIONS)
    db = Database(db_url)
    try:
        with db.read() as s:
            principal = build_principal(s, s.scalar(select(User).where(User.username == username)), definitions)
            unit = unit_by_path(s, CLASS_1).id
        result = RecordService(db).create(definitions.forms["student"], principal, unit, valid_student())
        assert result.ok, result.issues
        return result.record_id  # type: ignore[return-value]
    finally:
        db.dispose()


def signed_in(chromium: Browser, base: str, username: str) -> tuple[BrowserContext, Page]:
    """A browser of its own for one user: log in, then the forced password change."""
    context = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    log_in(page, base, username, FIRST)
    change_password(page, FIRST, SECOND)
    return context, page


def approve_from_inbox(page: Page, base: str, comment: str = "") -> None:
    page.goto(base + "/")
    expect(page.locator("#nav-count-wf_todo")).to_have_text("1")
    with page.expect_navigation():
        page.click(".main-nav a[href='/wf/todo']")
    with page.expect_navigation():
        page.locator("#wf-list a", has_text="张三").first.click()
    expect(page.locator("#wf-decide")).to_be_visible()
    if comment:
        page.fill("#wf-decide textarea[name=comment]", comment)
    with page.expect_navigation():
        page.click("#wf-decide button[value=approve]")
    expect(page.locator(".flash")).to_have_text("已同意")
    expect(page.locator("#wf-decide")).to_have_count(0)


def assert_clean_log(var_dir: Path) -> None:
    log = (var_dir / "server.log").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def test_transfer_across_four_users(browser: Browser, start_server, shot, fresh_db_url: str, tmp_path: Path) -> None:  # noqa: F811
    backend = "pg" if fresh_db_url.startswith("postgresql") else "sqlite"
    server = start_server(fresh_db_url)
    base = server.base_url
    for username, role, unit in (("sender", "registrar", SCHOOL), ("receiver", "registrar", RECEIVING_SCHOOL),
                                 ("bureau_out", "bureau", DISTRICT), ("bureau_in", "bureau", OTHER_DISTRICT)):
        new_user(server, username, role, unit)
    student = seed_student(fresh_db_url, "sender")
    proof = tmp_path / "转学证明.pdf"
    proof.write_bytes(b"%PDF-1.4 receiving school letter")
    contexts = []
    try:
        # 1. the sending school's registrar starts 转学 from the student's page
        context, page = signed_in(browser, base, "sender")
        contexts.append(context)
        page.goto(f"{base}/f/student/{student}")
        with page.expect_navigation():
            page.click("a.button:has-text('办理转学')")
        options = page.locator("#in-_unit option").all_inner_texts()
        assert "滨江区教育局/滨江中学/高一/高一(1)班" in options
        assert not [o for o in options if o.startswith("示范区教育局/示范区第一中学/")]  # not the own school
        target = page.locator("#in-_unit option", has_text="滨江中学/高一/高一(1)班").get_attribute("value")
        page.select_option("#in-_unit", value=target)
        page.select_option("#in-reason", "随迁")
        page.fill("#in-transfer_date", "2026-09-01")
        page.set_input_files("#in-proof", str(proof))
        shot(page, f"wf-{backend}-01-transfer-form")
        with page.expect_navigation():
            page.click("#wf-form button[type=submit]")
        expect(page.locator(".flash")).to_have_text("申请已提交，等待“转入学校审核”")
        expect(page.locator("#wf-status")).to_have_text("审批中")
        expect(page.locator("#wf-decide")).to_have_count(0)  # the applicant cannot approve
        application_url = page.url

        # 2. the receiving school's registrar, from 待办
        context, page = signed_in(browser, base, "receiver")
        contexts.append(context)
        approve_from_inbox(page, base, comment="同意接收")
        expect(page.locator("#wf-step")).to_have_text("教育局审批")
        shot(page, f"wf-{backend}-02-received")

        # 3. both bureaus, in parallel: the first approval leaves the step open, the second completes it
        context, page = signed_in(browser, base, "bureau_out")
        contexts.append(context)
        approve_from_inbox(page, base)
        expect(page.locator("#wf-status")).to_have_text("审批中")
        context, page = signed_in(browser, base, "bureau_in")
        contexts.append(context)
        approve_from_inbox(page, base)
        expect(page.locator("#wf-status")).to_have_text("已通过")
        expect(page.locator("#wf-timeline li")).to_have_count(5)  # 提交, 3 × 同意, 生效
        expect(page.locator("#wf-timeline li[data-action=effects]")).to_contain_text("滨江中学")
        shot(page, f"wf-{backend}-03-approved")

        # 4. the student is now the receiving school's, and no longer the sending school's
        receiver = contexts[1].pages[0]
        receiver.goto(base + "/f/student/")
        expect(receiver.locator("table.list a", has_text="张三")).to_be_visible()
        shot(receiver, f"wf-{backend}-04-receiving-list")
        sender = contexts[0].pages[0]
        sender.goto(base + "/f/student/")
        expect(sender.locator("table.list a", has_text="张三")).to_have_count(0)
        sender.goto(application_url)
        expect(sender.locator("#wf-status")).to_have_text("已通过")
    finally:
        for context in contexts:
            context.close()
    assert_clean_log(server.var_dir)


def test_change_registration_shows_the_diff(browser: Browser, start_server, shot, tmp_path: Path) -> None:  # noqa: F811
    db_url = f"sqlite:///{tmp_path / 'change.db'}"
    server = start_server(db_url)
    base = server.base_url
    new_user(server, "registrar1", "registrar", SCHOOL)
    new_user(server, "head1", "head_teacher", CLASS_1)
    student = seed_student(db_url, "registrar1")
    proof = tmp_path / "户口簿.pdf"
    proof.write_bytes(b"%PDF-1.4 household register")
    contexts = []
    try:
        # the head teacher edits the name (protected) and the address (not protected)
        context, page = signed_in(browser, base, "head1")
        contexts.append(context)
        page.goto(f"{base}/f/student/{student}/edit")
        page.fill("#in-name", "张叁")
        page.fill("#in-address", "新街口一号")
        with page.expect_navigation():
            page.click("button[name=_action][value=save]:not(.implicit-submit)")
        expect(page.locator(".flash")).to_contain_text("姓名的修改须经审核，未直接保存")
        expect(page.locator("#current-name")).to_have_text("档案中的当前值：张三")
        page.fill("#in-reason", "户口簿姓名更正")
        page.set_input_files("#in-proof", str(proof))
        with page.expect_navigation():
            page.click("#wf-form button[type=submit]")
        expect(page.locator("#wf-status")).to_have_text("审批中")
        page.goto(f"{base}/f/student/{student}")
        expect(page.locator("#v-name")).to_contain_text("张三")  # not written yet
        expect(page.locator("#v-address")).to_contain_text("新街口一号")  # saved directly

        # the registrar reviews the diff and approves
        context, page = signed_in(browser, base, "registrar1")
        contexts.append(context)
        page.goto(base + "/wf/todo")
        with page.expect_navigation():
            page.locator("#wf-list a", has_text="张三").first.click()
        expect(page.locator("#diff-name td")).to_have_text(["姓名", "张三", "张叁"])
        shot(page, "wf-sqlite-05-change-diff")
        with page.expect_navigation():
            page.click("#wf-decide button[value=approve]")
        expect(page.locator("#wf-status")).to_have_text("已通过")
        page.goto(f"{base}/f/student/{student}")
        expect(page.locator("#v-name")).to_contain_text("张叁")
        with page.expect_navigation():
            page.click("a.button:has-text('修改历史')")
        expect(page.locator(".timeline > li").first).to_contain_text("信息变更申请")
    finally:
        for context in contexts:
            context.close()
    assert_clean_log(server.var_dir)
