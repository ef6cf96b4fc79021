"""A whole school day in Debian Chromium against the real `dangan serve`, on a 390×844 phone and a 1366×768 desktop
(issue 15, "Done when"), with the shipped definitions:

1. the registrar imports the school's own workbook (班级 with "2班" next to 年级, 学生联系电话, a 家长手机 column
   the mapping step maps to 家长联系电话, 很好 in 健康状况 and 独生/非独生 in 是否独生子女 that the value step maps),
   then confirms it;
2. enters a student through the form: 添加一行 for 家庭成员 keeps everything typed, Enter in the row's text box saves;
3. starts a 转学, refused once (the date missing: the chosen class, reason and proof file stay), submitted; the
   receiving school approves, the sending district's bureau returns it with a reason; the applicant finds it in
   我的申请 (first, with its badge and the reason) and the reason at the top of the application, changes the date
   and resubmits; the approval resumes at 教育局审批 and both bureaus approve;
4. the receiving school prints the student's record: no navigation, the 学籍卡 on at most two A4 pages.

Every page visited is checked for sideways scrolling (document width ≤ viewport width)."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import openpyxl
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.test_daily_use import ID_CARD, fill_valid_student, page_width
from tests.browser_fixtures import change_password, log_in
from tests.excel.helpers import id_number
from tests.support import DISTRICT, OTHER_DISTRICT, SCHOOL
from tests.workflows.test_browser import RECEIVING_SCHOOL, assert_clean_log

pytestmark = pytest.mark.browser

FIRST, CHOSEN = "Start#2026a", "Chosen#2026b"
PEOPLE = (("reg", "registrar", SCHOOL), ("reg_in", "registrar", RECEIVING_SCHOOL), ("bureau", "bureau", DISTRICT),
          ("bureau_in", "bureau", OTHER_DISTRICT))
TARGET_CLASS = "滨江中学/高一/高一(1)班"
REASON = "请补充户籍证明原件扫描件"
# The school's own sheet: its headers, not the template's.
HEADER = ["序号", "班级", "年级", "姓名", "性别", "出生日期", "民族", "身份证号", "入学年份", "家长姓名", "家长手机",
          "学生联系电话", "健康状况", "是否独生子女"]
PUPILS = [
    {"序号": 1, "班级": "2班", "年级": "高一", "姓名": "王小明", "性别": "男", "出生日期": dt.date(2008, 3, 15), "民族": "汉族",
     "身份证号": id_number(dt.date(2008, 3, 15), 11), "入学年份": 2023, "家长姓名": "王大明", "家长手机": "13812340001",
     "学生联系电话": "13900001111", "健康状况": "很好", "是否独生子女": "独生"},
    {"序号": 2, "班级": "2班", "年级": "高一", "姓名": "李小红", "性别": "女", "出生日期": dt.date(2008, 7, 2), "民族": "汉族",
     "身份证号": id_number(dt.date(2008, 7, 2), 12), "入学年份": 2023, "家长姓名": "李大红", "家长手机": "13812340002",
     "学生联系电话": "13900002222", "健康状况": "良好", "是否独生子女": "非独生"},
]


class Walk:
    """One user's browser at the test's viewport; `fits` checks the page does not scroll sideways."""

    def __init__(self, context: BrowserContext, base: str, width: int) -> None:
        self.page, self.base, self.width = context.new_page(), base, width

    def fits(self) -> None:
        width = page_width(self.page)
        assert width <= self.width, f"{self.page.url} is {width} px wide on a {self.width} px screen"

    def goto(self, path: str) -> Page:
        self.page.goto(self.base + path)
        self.fits()
        return self.page

    def click(self, selector: str) -> None:
        """Click something that loads a page; the caller checks the page once it shows what it waits for."""
        with self.page.expect_navigation():
            self.page.click(selector)


def sign_in(browser: Browser, base: str, username: str, viewport: tuple[int, int]) -> tuple[BrowserContext, Walk]:
    context = browser.new_context(locale="zh-CN", viewport={"width": viewport[0], "height": viewport[1]})
    context.set_default_timeout(15_000)
    walk = Walk(context, base, viewport[0])
    log_in(walk.page, base, username, FIRST)
    walk.fits()
    change_password(walk.page, FIRST, CHOSEN)
    walk.fits()
    return context, walk


def school_workbook(path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "高一学生"
    sheet.append(HEADER)
    for pupil in PUPILS:
        sheet.append([pupil[h] for h in HEADER])
    book.save(path)


def import_school_file(reg: Walk, tmp_path: Path) -> None:
    page = reg.page
    path = tmp_path / "高一新生名单.xlsx"
    school_workbook(path)
    reg.goto("/f/student/imports/new")
    page.set_input_files("#in-file", str(path))
    reg.click("form[action='/f/student/imports'] button[type=submit]")

    # 对应列: 家长手机 is no field's name; the required 家长联系电话 is missing until the user maps it.
    expect(page.locator("#column-mapping")).to_be_visible(timeout=30_000)
    expect(page.locator("#missing-columns")).to_have_text("家长联系电话")
    reg.fits()
    page.select_option("select[aria-label='“家长手机”对应的字段']", "guardian_phone")
    reg.click("#apply-mapping")

    # 对应选项值: 很好 is no 健康状况 (良好 is an alias of 健康或良好: not asked); 独生/非独生 are no 是/否.
    values = page.locator("#value-mapping")
    expect(values).to_be_visible(timeout=30_000)
    expect(page.locator("#count-invalid")).to_have_text("2")
    reg.fits()
    expect(values.locator("input[name=value_text]")).to_have_count(3)  # 很好, 独生, 非独生
    expect(values.locator("input[name=value_text][value='良好']")).to_have_count(0)
    expect(page.locator("select[aria-label='是否独生子女“独生”对应的选项']")).to_have_value("是")
    expect(page.locator("select[aria-label='是否独生子女“非独生”对应的选项']")).to_have_value("否")
    page.select_option("select[aria-label='健康状况“很好”对应的选项']", "健康或良好")
    reg.click("#apply-values")

    expect(page.locator("#import-result h2")).to_have_text("预览结果（尚未保存任何数据）", timeout=30_000)
    expect(page.locator("#count-new")).to_have_text("2")
    expect(page.locator("#count-invalid")).to_have_text("0")
    expect(page.locator("#value-mapping")).to_have_count(0)
    reg.fits()
    reg.click("#commit-form button[type=submit]")
    expect(page.locator("#import-result h2")).to_have_text("导入结果", timeout=30_000)
    expect(page.locator("#count-new")).to_have_text("2")
    reg.fits()

    reg.goto("/f/student/?q=王小明")
    reg.click("table.list a:has-text('王小明')")
    reg.fits()
    expect(page.locator("main > p.muted").first).to_contain_text("高一(2)班")  # "2班" next to 年级 高一
    expect(page.locator("#v-health")).to_have_text("健康或良好")
    expect(page.locator("#v-is_only_child")).to_have_text("是")
    expect(page.locator("#v-guardian_phone")).to_contain_text("13812340001")
    expect(page.locator("#v-student_phone")).to_contain_text("13900001111")


def enter_student(reg: Walk) -> str:
    """The student form: a 家庭成员 row added (a round trip that keeps what was typed), then Enter in it saves."""
    page = reg.page
    reg.goto("/f/student/new")
    fill_valid_student(page)
    page.fill("#in-address", "滨江路 1 号")
    unit = page.locator("#in-_unit").input_value()
    reg.click("button[name=_action][value='add:family']")
    reg.fits()
    typed = {"#in-_unit": unit, "#in-name": "林小雨", "#in-gender": "女", "#in-birth_date": "2009-03-01",
             "#in-enrol_year": "2023", "#in-grade": "高一", "#in-guardian_name": "林建国",
             "#in-guardian_phone": "13812345678", "#in-id_card": ID_CARD, "#in-address": "滨江路 1 号"}
    for selector, value in typed.items():
        expect(page.locator(selector)).to_have_value(value)
    expect(page.locator("#in-family tbody tr")).to_have_count(1)
    expect(page.locator("#in-family tbody tr.empty")).to_have_count(0)
    page.select_option("[id='in-family.0.relation']", "母亲")
    page.fill("[id='in-family.0.name']", "林母")
    page.fill("[id='in-family.0.employer']", "滨江医院")
    with page.expect_navigation():
        page.press("[id='in-family.0.employer']", "Enter")
    expect(page).to_have_url(re.compile(r"/f/student/\d+$"))
    reg.fits()
    expect(page.locator("#v-name")).to_have_text("林小雨")
    expect(page.locator("#v-address")).to_have_text("滨江路 1 号")
    expect(page.locator("#v-family")).to_contain_text("母亲")
    expect(page.locator("#v-family")).to_contain_text("滨江医院")
    return page.url.removeprefix(reg.base)


def start_transfer(reg: Walk, record_path: str, proof: Path) -> str:
    page = reg.page
    reg.goto(record_path)
    reg.click("a.button:has-text('办理转学')")
    reg.fits()
    target = page.locator("#in-_unit option", has_text=TARGET_CLASS).get_attribute("value")
    assert target
    page.select_option("#in-_unit", value=target)
    page.select_option("#in-reason", "随迁")
    page.set_input_files("#in-proof", str(proof))
    reg.click("#wf-form button[type=submit]")  # 拟转学日期 is missing: refused, nothing chosen lost
    expect(page.locator("#summary")).to_contain_text("拟转学日期")
    reg.fits()
    expect(page.locator("#in-_unit")).to_have_value(target)
    expect(page.locator("#in-reason")).to_have_value("随迁")
    expect(page.locator("#kept-proof")).to_contain_text(proof.name)
    page.fill("#in-transfer_date", "2026-09-01")
    reg.click("#wf-form button[type=submit]")
    expect(page.locator(".flash")).to_have_text("申请已提交，等待“转入学校审核”")
    expect(page.locator("#v-proof")).to_contain_text(proof.name)
    reg.fits()
    return page.url.removeprefix(reg.base)


def decide(walk: Walk, decision: str, comment: str, flash: str) -> None:
    page = walk.page
    walk.goto("/wf/todo")
    walk.click("#wf-list a:has-text('林小雨')")
    walk.fits()
    page.fill("#wf-decide textarea[name=comment]", comment)
    walk.click(f"#wf-decide button[value={decision}]")
    expect(page.locator(".flash")).to_have_text(flash)
    expect(page.locator("#wf-decide")).to_have_count(0)
    walk.fits()


def find_it_returned_and_resubmit(reg: Walk, application: str) -> None:
    page = reg.page
    reg.goto("/")
    expect(page.locator("#nav-count-wf_mine")).to_have_text("1")
    reg.goto("/wf/mine")
    row = page.locator("#wf-list tbody tr.returned")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("林小雨")
    expect(row.locator(".badge")).to_have_text("待修改")
    expect(row.locator(".returned-reason")).to_have_text(f"退回原因：{REASON}")
    with page.expect_navigation():
        row.locator(f"a[href='{application}']").first.click()
    reg.fits()
    returned = page.locator("#wf-returned")
    expect(returned).to_contain_text(REASON)
    expect(returned).to_contain_text("将从“教育局审批”继续审批")
    top = returned.bounding_box()
    assert top is not None
    for below in ("#wf-target", "#wf-data", "#wf-timeline"):
        box = page.locator(below).bounding_box()
        assert box is not None and top["y"] < box["y"], below  # the reason comes first, not under the timeline

    reg.click("#wf-edit")
    reg.fits()
    expect(page.locator("#in-reason")).to_have_value("随迁")
    expect(page.locator("#in-transfer_date")).to_have_value("2026-09-01")
    expect(page.locator("#in-_unit option:checked")).to_contain_text(TARGET_CLASS)
    page.fill("#in-transfer_date", "2026-09-15")
    reg.click("#wf-form button[type=submit]")
    expect(page.locator(".flash")).to_have_text("申请已提交，等待“教育局审批”")
    expect(page.locator("#wf-step")).to_have_text("教育局审批")  # resumed at the step that returned it
    expect(page.locator("#v-transfer_date")).to_contain_text("2026-09-15")
    expect(page.locator("#v-proof")).to_contain_text("转学证明.pdf")  # the file sent first is still there
    expect(page.locator("#wf-returned")).to_have_count(0)
    reg.fits()


def print_record(walk: Walk) -> None:
    page = walk.page
    walk.goto("/f/student/?q=林小雨")
    walk.click("table.list a:has-text('林小雨')")
    walk.fits()
    page.emulate_media(media="print")
    try:
        for hidden in ("header.top", "nav.main-nav", ".page-head .actions"):
            assert page.locator(hidden).first.evaluate("e => getComputedStyle(e).display") == "none", hidden
        for shown, text in (("#v-name", "林小雨"), ("#v-student_no", "G" + ID_CARD), ("#v-family", "林母")):
            expect(page.locator(shown)).to_be_visible()
            expect(page.locator(shown)).to_contain_text(text)
        expect(page.locator("main > p.muted").first).to_contain_text("高一(1)班")
        pdf = page.pdf(format="A4")
        assert 1 <= pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") <= 2
    finally:
        page.emulate_media(media="screen")


@pytest.mark.parametrize("viewport", [(390, 844), (1366, 768)], ids=["phone", "desktop"])
def test_a_school_day(browser: Browser, start_server, shot, fresh_db_url: str, tmp_path: Path,
                      viewport: tuple[int, int]) -> None:
    server = start_server(fresh_db_url)
    base = server.base_url
    for username, role, unit in PEOPLE:
        server.cli("create-user", "--username", username, "--role", role, "--unit", unit, "--password", FIRST)
    proof = tmp_path / "转学证明.pdf"
    proof.write_bytes(b"%PDF-1.4 receiving school letter")
    name = f"day-{viewport[0]}-{'pg' if fresh_db_url.startswith('postgresql') else 'sqlite'}"
    contexts: list[BrowserContext] = []
    try:
        context, reg = sign_in(browser, base, "reg", viewport)
        contexts.append(context)
        import_school_file(reg, tmp_path)
        shot(reg.page, f"{name}-1-imported")
        record = enter_student(reg)
        shot(reg.page, f"{name}-2-entered")
        application = start_transfer(reg, record, proof)

        context, receiving = sign_in(browser, base, "reg_in", viewport)
        contexts.append(context)
        decide(receiving, "approve", "同意接收", "已同意")
        expect(receiving.page.locator("#wf-step")).to_have_text("教育局审批")
        context, bureau = sign_in(browser, base, "bureau", viewport)
        contexts.append(context)
        decide(bureau, "return", REASON, "已退回申请人修改")

        find_it_returned_and_resubmit(reg, application)
        shot(reg.page, f"{name}-3-resubmitted")
        decide(bureau, "approve", "同意", "已同意")
        expect(bureau.page.locator("#wf-status")).to_have_text("审批中")
        context, bureau_in = sign_in(browser, base, "bureau_in", viewport)
        contexts.append(context)
        decide(bureau_in, "approve", "同意", "已同意")
        expect(bureau_in.page.locator("#wf-status")).to_have_text("已通过")

        reg.goto("/wf/moves")
        expect(reg.page.locator("#wf-moves")).to_contain_text("林小雨")
        print_record(receiving)
        shot(receiving.page, f"{name}-4-printed")
    finally:
        for context in contexts:
            context.close()
    assert_clean_log(server.var_dir)
