"""What messy real files contain, normalised or refused per cell by the fields' own rules (both databases)."""
from __future__ import annotations

import datetime as dt

import pytest

from engine.documents import read_values
from engine.excel.limits import Limits
from engine.messages import MESSAGES, render
from engine.issues import Issue
from tests.excel.helpers import (HEADER, csv_bytes, errors_of, import_file, new_student, preview, record_by_id_card,
                                 with_cached_formulas, xlsx)
from web.state import AppState

March5 = dt.date(2010, 3, 5)


def stored(state: AppState, number: str) -> dict:
    record = record_by_id_card(state, number)
    assert record is not None, f"no record for {number}"
    return read_values(state.definitions.forms["student"], record.data)


def test_id_number_stored_as_number__row_rejected(shared: AppState) -> None:
    row = new_student()
    row["身份证号"] = float(row["身份证号"].replace("X", "0"))
    job = import_file(shared, "reg", xlsx([row]))
    assert (job.count_new, job.count_invalid) == (0, 1)
    assert errors_of(shared, job)[2] == [render(Issue("id_card_float"), "身份证号")]


def test_lowercase_x__stored_upper(shared: AppState) -> None:
    row = next(r for r in iter(new_student, None) if r["身份证号"].endswith("X"))
    number = row["身份证号"]
    row["身份证号"] = number.lower()
    job = import_file(shared, "reg", xlsx([row]))
    assert job.count_new == 1, errors_of(shared, job)
    assert stored(shared, number)["id_card"] == number


def test_full_width_digits_and_spaces__normalised(shared: AppState) -> None:
    row = new_student(入学年份="２０２３", 家长联系电话="１３８ １２３４ ５６７８")
    number = row["身份证号"]
    row["身份证号"] = number.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))
    job = import_file(shared, "reg", xlsx([row]))
    assert job.count_new == 1, errors_of(shared, job)
    values = stored(shared, number)
    assert (values["enrol_year"], values["guardian_phone"]) == (2023, "13812345678")
    assert any(w.startswith("入学年份：1 个值已自动规范") for w in job.details["warnings"])


def test_non_breaking_and_edge_spaces__trimmed(shared: AppState) -> None:
    row = new_student(姓名="\u00a0李 四\u3000 ", 家长姓名=" 李父\u00a0")
    job = import_file(shared, "reg", xlsx([row]))
    assert job.count_new == 1, errors_of(shared, job)
    values = stored(shared, row["身份证号"])
    assert (values["name"], values["guardian_name"]) == ("李 四", "李父")


@pytest.mark.parametrize("cell", [March5, dt.datetime(2010, 3, 5), float((March5 - dt.date(1899, 12, 30)).days),
                                  "2010-3-5", "2010/03/05", "2010年3月5日", "20100305", 20100305],
                         ids=["date", "datetime", "serial", "dashes", "slashes", "chinese", "digits", "digits-number"])
def test_date_forms__all_read(shared: AppState, cell: object) -> None:
    row = new_student(born=March5, 出生日期=cell)
    job = import_file(shared, "reg", xlsx([row]))
    assert job.count_new == 1, errors_of(shared, job)
    assert stored(shared, row["身份证号"])["birth_date"] == March5


def test_impossible_date__rejected_with_reason(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx([new_student(出生日期="2010-13-45")]))
    assert errors_of(shared, job)[2] == [MESSAGES["date"].format(label="出生日期")]


@pytest.mark.parametrize(("cell", "expected"), [("是", True), ("否", False), ("Y", True), ("n", False), ("TRUE", True),
                                                ("False", False), ("1", True), ("0", False), (1, True), (True, True), (False, False)])
def test_booleans__all_spellings(shared: AppState, cell: object, expected: bool) -> None:
    header = HEADER + ["是否独生子女"]
    row = new_student(是否独生子女=cell)
    job = import_file(shared, "reg", xlsx([row], header))
    assert job.count_new == 1, errors_of(shared, job)
    assert stored(shared, row["身份证号"])["is_only_child"] is expected


@pytest.mark.parametrize(("cell", "expected"), [("✓", True), ("√", True), ("✔", True), ("对", True), ("✗", False),
                                                ("×", False), ("✘", False), ("错", False), (" √ ", True)])
def test_booleans__ticks_crosses_and_right_wrong(shared: AppState, cell: object, expected: bool) -> None:
    """Issue 15 item 2: schools mark 是否独生子女 with ticks and crosses, or 对/错."""
    header = HEADER + ["是否独生子女"]
    row = new_student(是否独生子女=cell)
    job = import_file(shared, "reg", xlsx([row], header))
    assert job.count_new == 1, errors_of(shared, job)
    assert stored(shared, row["身份证号"])["is_only_child"] is expected


def test_booleans__unknown_mark_still_refused(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx([new_student(是否独生子女="?")], HEADER + ["是否独生子女"]))
    assert errors_of(shared, job) == {2: [MESSAGES["boolean"].format(label="是否独生子女")]}


def test_columns_in_any_order__mapped_by_header(shared: AppState) -> None:
    header = list(reversed(HEADER))
    row = new_student(姓名="倒序")
    job = import_file(shared, "reg", xlsx([row], header))
    assert job.count_new == 1, errors_of(shared, job)
    assert stored(shared, row["身份证号"])["name"] == "倒序"


def test_header_below_a_title_row__found_and_rows_numbered_as_in_excel(shared: AppState) -> None:
    bad = new_student(民族="火星族")
    job = preview(shared, "reg", xlsx([new_student(), bad], above=[["示范区第一中学 2024 级新生名单"], []]))
    assert (job.count_new, job.count_invalid) == (1, 1)
    assert job.details["header_row"] == 3
    assert errors_of(shared, job) == {5: [MESSAGES["choice"].format(label="民族", value="火星族")]}


def test_vertically_merged_unit__filled_down(shared: AppState) -> None:
    rows = [new_student(), new_student(所属班级=None), new_student(所属班级=None)]
    job = import_file(shared, "reg", xlsx(rows, merge="A2:A4"))
    assert job.count_new == 3, errors_of(shared, job)
    assert any("合并单元格" in w for w in job.details["warnings"])


def test_empty_rows__skipped(shared: AppState) -> None:
    job = import_file(shared, "reg", xlsx([new_student(), [None] * 3, ["", " ", "\u00a0"], new_student()]))
    assert (job.count_new, job.count_invalid) == (2, 0)
    assert render(Issue("import_empty_rows", {"count": 2})) in job.details["warnings"]


def test_formula_cells__cached_value_taken(shared: AppState) -> None:
    row = new_student(姓名="=CONCAT(\"王\",\"五\")")
    data = with_cached_formulas(xlsx([row]), {"B2": "王五"})
    job = import_file(shared, "reg", data)
    assert job.count_new == 1, errors_of(shared, job)
    assert stored(shared, row["身份证号"])["name"] == "王五"


@pytest.mark.parametrize("text", ["=1+2", "+86 备注", "-减号开头", "@SUM(A1)"])
def test_formula_like_text__stored_inert(shared: AppState, text: str) -> None:
    def as_text(workbook) -> None:  # type: ignore[no-untyped-def]
        cell = workbook.active.cell(row=2, column=len(HEADER) + 1)
        cell.value = text
        cell.data_type = "s"

    row = new_student()
    job = import_file(shared, "reg", xlsx([row], HEADER + ["备注"], after=as_text))
    assert job.count_new == 1, errors_of(shared, job)
    assert stored(shared, row["身份证号"])["remarks"] == text
    assert render(Issue("import_formula_text", {"count": 1})) in job.details["warnings"]


def test_duplicate_id_in_one_file__both_rows_reported(shared: AppState) -> None:
    first = new_student()
    again = dict(first, 姓名="重复")
    job = preview(shared, "reg", xlsx([first, new_student(), again]))
    assert (job.count_new, job.count_invalid) == (1, 2)
    message = MESSAGES["import_duplicate"].format(label="身份证号", value=first["身份证号"], rows="2、4")
    assert errors_of(shared, job) == {2: [message], 4: [message]}


def test_duplicate_across_batches__both_rows_reported_and_neither_written(shared: AppState) -> None:
    first = new_student()
    rows = [first, new_student(), new_student(), dict(first)]
    job = preview(shared, "reg", xlsx(rows), limits=Limits(batch_size=2))
    assert (job.count_new, job.count_invalid) == (2, 2)
    done = import_file(shared, "reg", xlsx(rows), limits=Limits(batch_size=2))
    assert (done.count_new, done.count_invalid) == (2, 2)
    assert record_by_id_card(shared, first["身份证号"]) is None


def test_missing_required_column__whole_file_rejected(shared: AppState) -> None:
    header = [h for h in HEADER if h not in ("姓名", "家长联系电话")]
    job = preview(shared, "reg", xlsx([new_student()], header))
    assert job.status == "rejected"
    assert job.message == MESSAGES["import_missing_columns"].format(columns="姓名、家长联系电话")
    assert job.count_new == 0


def test_unknown_columns__ignored_with_a_warning(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx([dict(new_student(), 序号=1)], HEADER + ["序号"]))
    assert job.count_new == 1
    assert MESSAGES["import_column_unknown"].format(label="序号") in job.details["warnings"]


def test_school_values__read_through_option_aliases(shared: AppState) -> None:
    row = new_student(健康状况="良好", 录取类型="统招")
    job = import_file(shared, "reg", xlsx([row], HEADER + ["健康状况", "录取类型"]))
    assert job.count_new == 1, errors_of(shared, job)
    values = stored(shared, row["身份证号"])
    assert (values["health"], values["admission_type"]) == ("健康或良好", "统一招生")


def test_many_unknown_columns__one_warning_naming_them(shared: AppState) -> None:
    extra = [f"备注{n}" for n in range(175)]
    job = preview(shared, "reg", xlsx([new_student()], HEADER + extra))
    assert job.count_new == 1
    unknown = [w for w in job.details["warnings"] if "不是表单中的字段" in w]
    assert unknown == [MESSAGES["import_columns_unknown"].format(count=175, labels="、".join(extra))]


def test_header_only__preview_says_there_are_no_data_rows(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx([[None, None], ["", " "]]))
    assert job.status == "rejected"
    assert job.message == MESSAGES["import_no_data_rows"].format(row=1)
    assert job.count_new == 0


def test_renamed_label__mapped_through_the_key_sheet(shared: AppState) -> None:
    header = [("学生名字" if h == "姓名" else h) for h in HEADER]
    row = new_student()
    row["学生名字"] = "改名后"
    keys = [["_form", "student"], ["学生名字", "name"]]
    job = import_file(shared, "reg", xlsx([row], header, keys=keys))
    assert job.count_new == 1, errors_of(shared, job)
    assert stored(shared, row["身份证号"])["name"] == "改名后"


def test_template_of_another_form__rejected(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx([new_student()], keys=[["_form", "award"]]))
    assert job.status == "rejected"
    assert "award" in job.message


def test_not_a_header_anywhere__rejected(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx([["a", "b"]], ["x", "y"]))
    assert job.status == "rejected"
    assert job.message.startswith("前 30 行中没有找到表头")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_csv_encodings__imported(shared: AppState, encoding: str) -> None:
    row = new_student(姓名="欧阳")
    job = import_file(shared, "reg", csv_bytes([row], encoding), filename="学生.csv")
    assert job.count_new == 1, (job.message, errors_of(shared, job))
    assert stored(shared, row["身份证号"])["name"] == "欧阳"


def test_unit_by_full_path_tail_or_name(shared: AppState) -> None:
    rows = [new_student(所属班级="示范区教育局/示范区第一中学/高一/高一(2)班"), new_student(所属班级="高一／高一（2）班"),
            new_student(所属班级="高三(9)班"), new_student(所属班级="示范区实验小学/一年级/一年级(1)班")]
    job = preview(shared, "reg", xlsx(rows))
    assert (job.count_new, job.count_invalid) == (2, 2)
    assert errors_of(shared, job)[4] == [MESSAGES["import_unit_unknown"].format(label="所属班级", value="高三(9)班")]


def test_rule_across_fields__same_message_as_the_web_form(shared: AppState) -> None:
    row = new_student(出生日期=dt.date(2001, 1, 1))
    job = preview(shared, "reg", xlsx([row]))
    rule = next(r for r in shared.definitions.forms["student"].rules if r.key == "id_card_birth_matches")
    assert errors_of(shared, job)[2] == [rule.message, rule.message]
