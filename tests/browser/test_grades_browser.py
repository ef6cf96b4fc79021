"""学业管理 in Debian Chromium against the real `dangan serve` (shipped definitions): a head teacher fills a 45 × 9
grade grid with the keyboard and a block pasted from Excel, saves, and sees totals and ranks; a parent signs in on
a phone-sized page and sees only their own child."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from engine.linked_accounts import LinkedAccounts
from tests.browser_fixtures import change_password, log_in
from tests.engine.helpers import principal_of, student_values
from tests.support import CLASS_1, PASSWORD, SCHOOL, add_user, build, unit_id

pytestmark = pytest.mark.browser
STUDENTS = 45
SUBJECTS = 9


def _seed(db_url: str, tmp: Path) -> tuple[int, int, str]:
    _app, state = build(db_url, tmp=tmp)
    add_user(state, "reg", "registrar", SCHOOL)
    add_user(state, "head", "head_teacher", CLASS_1)
    reg = principal_of(state, "reg")
    forms = state.definitions.forms
    for i in range(STUDENTS):
        made = state.records.create(forms["student"], reg, unit_id(state, CLASS_1),
                                    student_values(501 + 2 * i, name=f"王{'子涵浩宇欣怡梓轩雨泽'[i % 10]}{'明哲若曦'[i // 10 % 4]}",
                                                   guardian_phone=f"139{i:08d}", guardian_name="家长"))
        assert made.ok, made.issues
    exam = state.records.create(forms["exam"], reg, unit_id(state, SCHOOL), {
        "name": "期中考试", "term": "2026-2027学年第一学期", "kind": "期中", "grade": "高一", "start_date": "2026-11-10"})
    accounts = LinkedAccounts(state.db, state.records).create(reg, state.definitions, forms["student"], "parent", "guardian_phone", "guardian_name")
    first = next(a for a in accounts if a.username == "13900000000")
    class_id = unit_id(state, CLASS_1)
    state.db.dispose()
    return class_id, exam.record_id, first.password  # type: ignore[return-value]


def test_a_teacher_fills_a_class_grid_and_a_parent_sees_only_their_child(browser: Browser, start_server, shot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db_url = f"sqlite:///{tmp_path / 'dangan.db'}"
    class_id, exam_id, parent_password = _seed(db_url, tmp_path)
    server = start_server(db_url)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, server.base_url, "head", PASSWORD)
    page.goto(f"{server.base_url}/f/score/grid?unit={class_id}&exam={exam_id}")
    cells = page.locator("table[data-grid] tbody input:not([type=hidden])")
    expect(cells).to_have_count(STUDENTS * SUBJECTS)
    # Keyboard: type, move down with Enter, right with the arrow key.
    first = cells.nth(0)
    first.click()
    page.keyboard.type("88")
    page.keyboard.press("Enter")
    page.keyboard.type("77")
    page.keyboard.press("ArrowRight")
    page.keyboard.type("66")
    assert cells.nth(SUBJECTS).input_value() == "77" and cells.nth(SUBJECTS + 1).input_value() == "66"
    # A 45 × 9 block pasted from Excel (tab-separated lines) fills the grid from the first cell.
    block = "\n".join("\t".join(str(50 + (row * 7 + col * 3) % 51) for col in range(SUBJECTS)) for row in range(STUDENTS))
    first.focus()
    page.evaluate("""text => { const data = new DataTransfer(); data.setData('text', text);
                      document.activeElement.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true})); }""",
                  block)
    assert cells.nth(0).input_value() == "50" and cells.nth(STUDENTS * SUBJECTS - 1).input_value() == str(50 + (44 * 7 + 8 * 3) % 51)
    with page.expect_navigation():
        page.click("form.grid-form button[type=submit]")
    expect(page.locator(".flash")).to_contain_text(f"已保存 {STUDENTS} 行")
    first_row = page.locator("table[data-grid] tbody tr").first
    expected_total = sum(50 + (0 * 7 + col * 3) % 51 for col in range(SUBJECTS))
    expect(first_row).to_contain_text(f"{expected_total}.0")
    headers = [h.strip() for h in page.locator("table[data-grid] thead th").all_inner_texts()]
    column = headers.index("班级排名")
    ranks = [int(row.locator("th, td").nth(column).inner_text()) for row in page.locator("table[data-grid] tbody tr").all()]
    assert min(ranks) == 1 and max(ranks) <= STUDENTS and len(ranks) == STUDENTS
    shot(page, "grades-grid")
    page.close()

    phone = browser.new_page(viewport={"width": 390, "height": 844})
    log_in(phone, server.base_url, "13900000000", parent_password)
    change_password(phone, parent_password, "Jiazhang#2026ok")
    phone.goto(server.base_url + "/f/student/")
    expect(phone.locator("table.list tbody tr")).to_have_count(1)
    phone.locator("table.list tbody tr a").first.click()
    expect(phone.locator("#c-score")).to_contain_text("期中考试")
    width = phone.evaluate("document.documentElement.scrollWidth")
    shot(phone, "parent-phone")
    assert width <= 390, width
    phone.close()
