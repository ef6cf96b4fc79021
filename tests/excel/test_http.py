"""The Excel pages over HTTP on both databases: rights per role, preview, 确认导入, error modes, error workbook,
exports masked per role, round trip, scope, and the background worker's resume."""
from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openpyxl
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import func, select, update

from engine.documents import read_values
from engine.excel.jobs import create_job
from engine.messages import MESSAGES
from engine.storage.models import AuditEntry, ImportJob, Record, utcnow
from tests.excel.conftest import OTHER_SCHOOL
from tests.excel.helpers import HEADER, commit as run_commit, id_number, import_file, preview as run_preview, principal_of
from tests.excel.helpers import errors_of, new_student, record_by_id_card, student, wait_job, xlsx
from tests.support import CLASS_1, DISTRICT, SCHOOL, add_user, build, login
from web.state import AppState

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def web(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[Litestar, AppState]]:
    app, state = build(fresh_db_url, tmp=tmp_path)
    add_user(state, "reg", "registrar", SCHOOL)
    add_user(state, "reg_b", "registrar", OTHER_SCHOOL)
    add_user(state, "teacher", "teacher", CLASS_1)
    add_user(state, "bureau", "bureau", DISTRICT)
    yield app, state
    state.db.dispose()


@contextmanager
def signed_in(app: Litestar, username: str) -> Iterator[tuple[TestClient, str]]:
    with TestClient(app=app, base_url="http://testserver.local") as client:
        yield client, login(client, username)


def upload(client: TestClient, csrf: str, data: bytes, mode: str = "upsert", error_mode: str = "all_or_nothing",
           filename: str = "学生.xlsx", form: str = "student") -> str:
    response = client.post(f"/f/{form}/imports", data={"_csrf": csrf, "mode": mode, "error_mode": error_mode},
                           files={"file": (filename, data, XLSX_TYPE)}, follow_redirects=False)
    assert response.status_code == 303, response.text[:1000]
    return response.headers["location"]


def job_id_of(location: str) -> int:
    return int(location.rstrip("/").rsplit("/", 1)[1])


def confirm(client: TestClient, csrf: str, location: str, error_mode: str | None = None) -> None:
    data = {"_csrf": csrf} | ({"error_mode": error_mode} if error_mode else {})
    assert client.post(location + "/commit", data=data, follow_redirects=False).status_code == 303


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def records(state: AppState) -> int:
    with state.db.read() as s:
        return s.scalar(select(func.count()).select_from(Record)) or 0


def rows(n: int, start: int = 101, **changes: object) -> list[dict]:
    return [student(start + 2 * i, **changes) for i in range(n)]


# --- rights ---------------------------------------------------------------------------------------------
def test_template__registrar_gets_every_writable_column(web) -> None:  # type: ignore[no-untyped-def]
    app, _state = web
    with signed_in(app, "reg") as (client, _csrf):
        listing = client.get("/f/student/")
        assert "下载导入模板" in listing.text and "导出 Excel" in listing.text
        response = client.get("/f/student/excel/template")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(XLSX_TYPE)
    sheet = openpyxl.load_workbook(io.BytesIO(response.content))["学生档案"]
    assert [c.value for c in sheet[1]][:6] == ["所属班级*", "姓名*", "性别*", "出生日期*", "民族*", "身份证号*"]


@pytest.mark.parametrize("username", ["teacher", "bureau"])
def test_import_pages__roles_without_import_get_403(web, username: str) -> None:  # type: ignore[no-untyped-def]
    app, _state = web
    with signed_in(app, username) as (client, csrf):
        assert "下载导入模板" not in client.get("/f/student/").text
        assert client.get("/f/student/excel/template").status_code == 403
        assert client.get("/f/student/imports/new").status_code == 403
        posted = client.post("/f/student/imports", data={"_csrf": csrf, "mode": "upsert", "error_mode": "all_or_nothing"},
                             files={"file": ("a.xlsx", xlsx(rows(1)), XLSX_TYPE)})
        assert posted.status_code == 403


def test_template__head_teacher_with_import_right_lacks_read_only_id_card(tmp_definitions: Path, fresh_db_url: str,
                                                                          tmp_path: Path) -> None:
    role = tmp_definitions / "roles" / "head_teacher.yaml"
    role.write_text(role.read_text(encoding="utf-8").replace("actions: [read, update, export]",
                                                             "actions: [read, update, export, import]"), encoding="utf-8")
    app, state = build(fresh_db_url, definitions=tmp_definitions, tmp=tmp_path)
    add_user(state, "head", "head_teacher", CLASS_1)
    with signed_in(app, "head") as (client, _csrf):
        response = client.get("/f/student/excel/template")
    state.db.dispose()
    assert response.status_code == 200
    labels = [c.value for c in openpyxl.load_workbook(io.BytesIO(response.content))["学生档案"][1]]
    assert "姓名*" in labels
    assert not any(str(label).startswith("身份证号") for label in labels)


# --- preview and commit ----------------------------------------------------------------------------------
def test_preview_then_commit__all_or_nothing(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, xlsx(rows(3)))
        wait_job(state, job_id_of(location))
        page = client.get(location)
        assert "预览结果（尚未保存任何数据）" in page.text and "确认导入" in page.text
        assert re.search(r'id="count-new">3<', page.text)
        assert records(state) == 0
        confirm(client, csrf, location)
        job = wait_job(state, job_id_of(location), ("done",))
        assert "导入结果" in client.get(location).text
    assert (job.count_new, job.count_invalid) == (3, 0)
    assert records(state) == 3
    values = read_values(state.definitions.forms["student"], record_by_id_card(state, rows(1)[0]["身份证号"]).data)  # type: ignore[union-attr]
    assert values["student_no"] == "G" + rows(1)[0]["身份证号"] and values["school_no"].startswith("2023")
    with state.db.read() as s:
        notes = list(s.scalars(select(AuditEntry.note).where(AuditEntry.action == "create")))
    assert len(notes) == 3 and all(n.startswith(f"Excel 导入 #{job.id}") for n in notes)


def test_all_or_nothing__one_invalid_row_writes_nothing(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    data = xlsx(rows(2) + [student(501, 民族="火星族")])
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, data)
        wait_job(state, job_id_of(location))
        page = text_of(client.get(location).text)
        assert MESSAGES["choice"].format(label="民族", value="火星族") in page
        confirm(client, csrf, location)
        job = wait_job(state, job_id_of(location), ("aborted",))
        page = text_of(client.get(location).text)
    assert job.count_invalid == 1
    assert job.message == MESSAGES["import_aborted"].format(count=1)
    assert records(state) == 0
    # Nothing was imported: said first, and the counts are what the check found, not what was written.
    assert page.index("没有导入任何数据") < page.index("可新增")
    assert "导入结果" not in page and "已完成" not in page


def test_skip_invalid__valid_rows_saved(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    data = xlsx(rows(2) + [student(501, 民族="火星族")])
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, data, error_mode="all_or_nothing")
        wait_job(state, job_id_of(location))
        confirm(client, csrf, location, error_mode="skip_invalid")
        job = wait_job(state, job_id_of(location), ("done",))
    assert (job.count_new, job.count_invalid) == (2, 1)
    assert records(state) == 2


def test_same_file_twice__no_duplicates_second_run_unchanged(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    data = xlsx(rows(4))
    with signed_in(app, "reg") as (client, csrf):
        for expected in ((4, 0), (0, 4)):
            location = upload(client, csrf, data)
            wait_job(state, job_id_of(location))
            confirm(client, csrf, location)
            job = wait_job(state, job_id_of(location), ("done",))
            assert (job.count_new, job.count_unchanged) == expected
    assert records(state) == 4


def test_error_workbook__red_cells_with_comments_and_reason_column(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    bad_id = student(503)
    bad_id["身份证号"] = bad_id["身份证号"][:-1] + ("1" if bad_id["身份证号"][-1] != "1" else "2")
    data = xlsx(rows(1) + [student(501, 民族="火星族"), bad_id])
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, data, error_mode="skip_invalid")
        wait_job(state, job_id_of(location))
        response = client.get(location + "/errors.xlsx")
        listing = client.get("/f/student/imports")
    assert response.status_code == 200
    assert f"/imports/{job_id_of(location)}/errors.xlsx" in listing.text
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header == HEADER + ["错误原因"]
    assert sheet.max_row == 3  # skip_invalid: the rows that were not imported
    ethnicity = sheet.cell(row=2, column=HEADER.index("民族") + 1)
    assert ethnicity.value == "火星族"
    assert ethnicity.fill.fgColor.rgb == "FFFF9999"
    assert ethnicity.comment.text == MESSAGES["choice"].format(label="民族", value="火星族")
    assert sheet.cell(row=2, column=HEADER.index("姓名") + 1).fill.fgColor.rgb != "FFFF9999"
    id_cell = sheet.cell(row=3, column=HEADER.index("身份证号") + 1)
    assert id_cell.fill.fgColor.rgb == "FFFF9999" and "校验位错误" in id_cell.comment.text
    assert sheet.cell(row=3, column=len(HEADER) + 1).value.startswith("原第4行：身份证号校验位错误")


def test_rejected_upload__message_and_nothing_created(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    with signed_in(app, "reg") as (client, csrf):
        response = client.post("/f/student/imports", data={"_csrf": csrf, "mode": "upsert", "error_mode": "all_or_nothing"},
                               files={"file": ("学生.xlsx", b"not a workbook", XLSX_TYPE)})
    assert response.status_code == 422
    assert MESSAGES["import_file_fake"].format(ext=".xlsx") in response.text
    with state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(ImportJob)) == 0


def test_header_without_data_rows__said_and_no_job(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    with signed_in(app, "reg") as (client, csrf):
        response = client.post("/f/student/imports", data={"_csrf": csrf, "mode": "upsert", "error_mode": "all_or_nothing"},
                               files={"file": ("学生.xlsx", xlsx([], above=[["学生名单"]]), XLSX_TYPE)})
    assert response.status_code == 422
    assert MESSAGES["import_no_data_rows"].format(row=2) in response.text
    with state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(ImportJob)) == 0


def test_two_data_sheets__preview_names_the_other_and_offers_it(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    second = rows(2, start=301)

    def add_sheet(workbook: openpyxl.Workbook) -> None:
        sheet = workbook.create_sheet("高一(2)班")
        sheet.append(HEADER)
        for row in second:
            sheet.append([row.get(h) for h in HEADER])

    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, xlsx(rows(1), after=add_sheet))
        first = wait_job(state, job_id_of(location))
        page = client.get(location).text
        assert first.count_new == 1
        assert "另有 1 个工作表也带有表头和数据" in text_of(page) and "预览工作表“高一(2)班”" in page
        moved = client.post(location + "/sheet", data={"_csrf": csrf, "sheet": "高一(2)班"}, follow_redirects=False)
        assert moved.status_code == 303
        other = wait_job(state, job_id_of(moved.headers["location"]))
        assert other.count_new == 2 and other.details["sheet"] == "高一(2)班"
        assert client.post(location + "/sheet", data={"_csrf": csrf, "sheet": "没有这个"}).status_code == 404


def test_school_headers__mapping_step_then_remembered(web) -> None:  # type: ignore[no-untyped-def]
    """班级 for 所属班级 (the unit label without 所属) and 学生联系电话 (an `aliases` entry) are read as they are;
    家长电话 is offered as 家长联系电话, the user confirms, and the next file of this user is mapped the same way."""
    app, state = web
    school = {"所属班级": "班级", "家长联系电话": "家长电话"}
    header = [school.get(h, h) for h in HEADER] + ["学生联系电话", "序号"]
    data = [dict({school.get(k, k): v for k, v in row.items()}, 学生联系电话="13900001111", 序号=1) for row in rows(2)]
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, xlsx(data, header))
        job = wait_job(state, job_id_of(location))
        page = client.get(location).text
        assert job.status == "rejected"
        assert job.details["missing"] == ["家长联系电话"]  # every missing column is named
        assert job.details["unmapped"] == {"家长电话": "guardian_phone", "序号": ""}
        assert re.search(r'<option value="guardian_phone" selected>家长联系电话（建议）</option>', page)
        mapped = client.post(location + "/mapping", data={"_csrf": csrf, "header": ["家长电话", "序号"],
                                                          "field": ["guardian_phone", ""]}, follow_redirects=False)
        assert mapped.status_code == 303
        second = wait_job(state, job_id_of(mapped.headers["location"]))
        assert (second.status, second.count_new, second.count_invalid) == ("previewed", 2, 0), second.message
        confirm(client, csrf, mapped.headers["location"])
        assert wait_job(state, second.id, ("done",)).count_new == 2
        # The next upload from this user starts from the mapping chosen.
        third = wait_job(state, job_id_of(upload(client, csrf, xlsx(data, header))))
        assert (third.status, third.count_unchanged, third.count_invalid) == ("previewed", 2, 0), third.message
    stored = read_values(state.definitions.forms["student"], record_by_id_card(state, data[0]["身份证号"]).data)  # type: ignore[union-attr]
    assert stored["student_phone"] == "13900001111" and stored["guardian_phone"] == "13812345678"


def test_missing_required_column__job_rejected_on_its_page(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    header = [h for h in HEADER if h != "姓名"]
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, xlsx(rows(2), header))
        job = wait_job(state, job_id_of(location))
        page = client.get(location).text
    assert job.status == "rejected"
    assert MESSAGES["import_missing_columns"].format(columns="姓名") in page
    assert "确认导入" not in page


# --- exports ------------------------------------------------------------------------------------------
def _seed(state: AppState, n: int = 3) -> list[dict]:
    data = rows(n)
    job = import_file(state, "reg", xlsx(data))
    assert job.count_new == n
    return data


def test_export__bureau_sees_masked_values(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    seeded = _seed(state)
    with signed_in(app, "bureau") as (client, _csrf):
        response = client.get("/f/student/excel/export")
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(response.content))["学生档案"]
    header = [c.value for c in sheet[1]]
    numbers = {sheet.cell(row=r, column=header.index("身份证号") + 1).value for r in range(2, 5)}
    assert numbers == {n["身份证号"][:6] + "********" + n["身份证号"][-4:] for n in seeded}
    assert sheet.cell(row=2, column=header.index("家长联系电话") + 1).value == "138****5678"
    assert header[:3] == ["所属班级", "姓名", "性别"], header  # nothing is writable for the bureau: no "*"


def test_error_workbook__keeps_the_templates_dropdowns_styling_and_instructions(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    data = xlsx(rows(1) + [student(501, 民族="火星族")])
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, data, error_mode="skip_invalid")
        wait_job(state, job_id_of(location))
        response = client.get(location + "/errors.xlsx")
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    assert "填写说明" in book.sheetnames
    sheet = book.worksheets[0]
    letter = openpyxl.utils.get_column_letter(HEADER.index("民族") + 1)
    dropdowns = [v for v in sheet.data_validations.dataValidation if v.type == "list" and letter + "2" in str(v.sqref)]
    assert dropdowns, [str(v.sqref) for v in sheet.data_validations.dataValidation]
    name_header = sheet.cell(row=1, column=HEADER.index("姓名") + 1)
    assert name_header.font.bold and name_header.fill.fgColor.rgb == "FFF4B183"  # required: orange, as in the template
    id_letter = openpyxl.utils.get_column_letter(HEADER.index("身份证号") + 1)
    assert sheet.column_dimensions[id_letter].number_format == "@"


def test_export_csv__formula_text_made_inert(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    job = import_file(state, "reg", xlsx([student(101, 备注="+1+2", 家庭住址="@SUM(A1)")], HEADER + ["备注", "家庭住址"]))
    assert job.count_new == 1, errors_of(state, job)
    with signed_in(app, "reg") as (client, _csrf):
        response = client.get("/f/student/excel/export.csv")
        listing = client.get("/f/student/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "/f/student/excel/export.csv" in listing.text
    text = response.content.decode("utf-8-sig")
    lines = text.splitlines()
    assert lines[0].split(",")[:3] == ["所属班级*", "姓名*", "性别*"]
    assert "'+1+2" in text and "'@SUM(A1)" in text
    assert ",+1+2" not in text


def test_export__teacher_without_export_right_403(web) -> None:  # type: ignore[no-untyped-def]
    app, _state = web
    with signed_in(app, "teacher") as (client, _csrf):
        assert client.get("/f/student/excel/export").status_code == 403


def test_export__follows_the_list_filters(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    _seed(state, 3)
    with signed_in(app, "reg") as (client, _csrf):
        listing = client.get("/f/student/?gender=女")
        assert "/f/student/excel/export?gender=%E5%A5%B3" in listing.text
        response = client.get("/f/student/excel/export?gender=%E5%A5%B3")
    sheet = openpyxl.load_workbook(io.BytesIO(response.content))["学生档案"]
    assert sheet.max_row == 1 + sum(1 for r in rows(3) if r["性别"] == "女")


def test_round_trip__export_edit_import_updates(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    seeded = _seed(state, 3)
    with signed_in(app, "reg") as (client, csrf):
        book = openpyxl.load_workbook(io.BytesIO(client.get("/f/student/excel/export").content))
        sheet = book["学生档案"]
        header = [c.value for c in sheet[1]]
        target = next(r for r in range(2, 5) if sheet.cell(row=r, column=header.index("身份证号*") + 1).value == seeded[0]["身份证号"])
        sheet.cell(row=target, column=header.index("家庭住址") + 1).value = "改过的地址"
        buffer = io.BytesIO()
        book.save(buffer)
        location = upload(client, csrf, buffer.getvalue(), mode="update")
        preview = wait_job(state, job_id_of(location))
        assert (preview.count_updated, preview.count_unchanged, preview.count_invalid) == (1, 2, 0), client.get(location).text
        assert any("学籍号" in w and "已忽略" in w for w in preview.details["warnings"])
        confirm(client, csrf, location)
        job = wait_job(state, job_id_of(location), ("done",))
    assert job.count_updated == 1
    record = record_by_id_card(state, seeded[0]["身份证号"])
    assert record is not None and record.data["address"] == "改过的地址" and record.revision == 2
    assert records(state) == 3


def test_update__protected_field_refused_needs_change_registration(web) -> None:  # type: ignore[no-untyped-def]
    """姓名 is declared in the 信息变更 workflow's `changes:`; only that review may change it, never an import."""
    app, state = web
    seeded = _seed(state, 1)
    change = dict(seeded[0], 姓名="绕过审核")
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, xlsx([change]), mode="update", error_mode="skip_invalid")
        preview = wait_job(state, job_id_of(location))
        assert (preview.count_updated, preview.count_invalid) == (0, 1)
        assert MESSAGES["protected_by_review"].format(label="姓名") in text_of(client.get(location).text)
        confirm(client, csrf, location)
        wait_job(state, job_id_of(location), ("done",))
    record = record_by_id_card(state, change["身份证号"])
    assert record is not None and record.data["name"] == seeded[0]["姓名"] and record.revision == 1


def test_scope__other_schools_registrar_cannot_update_by_import(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    seeded = _seed(state, 1)
    change = dict(seeded[0], 所属班级="一年级(1)班", 姓名="别校改名", 年级="一年级")
    with signed_in(app, "reg_b") as (client, csrf):
        location = upload(client, csrf, xlsx([change]), error_mode="skip_invalid")
        job = wait_job(state, job_id_of(location))
        # As the web form answers a new record with a taken ID number: nothing about where it is held.
        assert MESSAGES["unique"].format(label="身份证号", value=change["身份证号"]) in text_of(client.get(location).text)
        confirm(client, csrf, location)
        job = wait_job(state, job_id_of(location), ("done",))
    assert (job.count_updated, job.count_invalid) == (0, 1)
    record = record_by_id_card(state, change["身份证号"])
    assert record is not None and record.data["name"] == "张三" and record.revision == 1


def test_scope__out_of_scope_record_reads_as_absent_in_update_mode(web) -> None:  # type: ignore[no-untyped-def]
    """Issue 14 item 9: the preview must not confirm that an ID number exists in another district."""
    app, state = web
    seeded = _seed(state, 1)
    absent = dict(seeded[0], 身份证号=new_student()["身份证号"])
    with signed_in(app, "reg_b") as (client, csrf):
        texts = []
        for row in (dict(seeded[0], 姓名="别校改名"), absent):
            location = upload(client, csrf, xlsx([row]), mode="update", error_mode="skip_invalid")
            job = wait_job(state, job_id_of(location))
            assert job.count_invalid == 1
            texts.append(" ".join(errors_of(state, job)[2]).replace(row["身份证号"], "〈号码〉"))
    assert texts[0] == texts[1]
    assert "找不到" in texts[0]


def test_jobs__only_their_owner_sees_them(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, xlsx(rows(1)))
        wait_job(state, job_id_of(location))
    with signed_in(app, "reg_b") as (client, _csrf):
        assert client.get(location).status_code == 404
        assert "学生.xlsx" not in client.get("/f/student/imports").text


# --- background worker ------------------------------------------------------------------------------------
def test_progress__polls_then_reloads_when_done(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, xlsx(rows(2)))
        wait_job(state, job_id_of(location))
        fragment = client.get(location + "/progress", headers={"HX-Request": "true"})
    assert fragment.headers.get("hx-refresh") == "true"
    assert '<progress class="progress" max="2" value="2"' in fragment.text
    assert "hx-trigger" not in fragment.text


def test_app_start__resumes_a_job_left_running(web) -> None:  # type: ignore[no-untyped-def]
    """A job a stopped server left half done (status importing, last_row 3) continues at start-up."""
    app, state = web
    data = xlsx(rows(5))
    job_id = create_job(state.db, state.definitions.forms["student"], principal_of(state, "reg"), "学生.xlsx", data, "xlsx",
                        "upsert", "skip_invalid")
    # The first two rows were committed by the run that stopped.
    first = run_preview(state, "reg", xlsx(rows(2)))
    run_commit(state, first)
    with state.db.write() as s:
        s.execute(update(ImportJob).where(ImportJob.id == job_id).values(phase="commit", status="importing", last_row=3,
                                                                         done=2, count_new=2, runner="elsewhere:1",
                                                                         updated_at=utcnow() - dt.timedelta(hours=1)))
        s.commit()
    with TestClient(app=app, base_url="http://testserver.local"):
        job = wait_job(state, job_id, ("done",))
    assert (job.count_new, job.count_unchanged, job.done) == (5, 0, 5)
    assert records(state) == 5


def test_id_numbers_in_fixtures_are_valid() -> None:
    assert id_number(dt.date(1949, 12, 31), 2, "110105") == "11010519491231002X"
