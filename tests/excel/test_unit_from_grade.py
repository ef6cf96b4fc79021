"""A school's own file writes the class as a number ("5班", "5", "(5)班", "五班") next to a 年级 column; the unit is
found from both within the importer's scope (issue 15 item 1). The 年级 cell may be a unit's name or an option of the
form (七年级 is an alias of 初一); org.yaml's levels say which column is which, and a level's `number` where the
number sits in a unit's name. Ambiguous or not found: the row's error names both cells and what was looked for."""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import load_workbook

from engine.errors import DefinitionErrors
from engine.excel.jobs import error_workbook, job_with_values, run_job
from engine.loader import load_definitions
from engine.excel.limits import Limits
from engine.org import create_unit, unit_by_path
from engine.storage.models import OrgUnit
from tests.excel.helpers import HEADER, errors_of, import_file, new_student, preview, principal_of, record_by_id_card, xlsx
from tests.support import SCHOOL, add_user, build, copy_definitions
from web.state import AppState

FILE_HEADER = ["班级" if h == "所属班级" else h for h in HEADER]  # a school's own header: 班级, then 年级 further right


@pytest.fixture(scope="module")
def school(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppState]:
    _app, state = build(module_db_url, tmp=tmp_path_factory.mktemp("grade-var"))
    add_user(state, "reg", "registrar", SCHOOL)
    with state.db.write() as s:
        school_unit = unit_by_path(s, SCHOOL)
        junior = create_unit(s, "初一", "grade", school_unit)
        create_unit(s, "初一(5)班", "class", junior)
        create_unit(s, "高二1班", "class", unit_by_path(s, f"{SCHOOL}/高二"))  # a second 1 under 高二
        s.commit()
    yield state
    state.db.dispose()


def _unit_of(state: AppState, id_card: str) -> str:
    record = record_by_id_card(state, id_card)
    assert record is not None, id_card
    with state.db.read() as s:
        return s.get(OrgUnit, record.unit_id).name  # type: ignore[union-attr]


@pytest.mark.parametrize("grade, cell, unit", [
    ("七年级", "5班", "初一(5)班"),   # the grade an option's alias, the class a number with 班
    ("初一", "(5)班", "初一(5)班"),
    ("高一", "二班", "高一(2)班"),    # Chinese numerals
    ("高一", 2, "高一(2)班"),         # a number cell
    ("高一", "高一2班", "高一(2)班"),  # the grade written in the class cell too
    ("高一", "高一(1)班", "高一(1)班"),  # a full name still works
])
def test_class_number_and_grade__found(school: AppState, grade: str, cell: object, unit: str) -> None:
    row = new_student(班级=cell, 年级=grade)
    job = import_file(school, "reg", xlsx([row], FILE_HEADER))
    assert job.count_new == 1 and not job.count_invalid, errors_of(school, job)
    assert _unit_of(school, row["身份证号"]) == unit


def test_not_found__names_both_cells(school: AppState) -> None:
    job = preview(school, "reg", xlsx([new_student(班级="7班", 年级="高一")], FILE_HEADER))
    assert job.count_invalid == 1
    (message,) = errors_of(school, job)[2]
    unit_column, grade_column = "ABCDEFGHIJ"[FILE_HEADER.index("班级")], "ABCDEFGHIJ"[FILE_HEADER.index("年级")]
    assert "工作表“学生档案”第 2 行" in message
    assert f"所属班级“7班”（{unit_column} 列）" in message and f"年级“高一”（{grade_column} 列）" in message
    assert "编号为 7" in message


def test_ambiguous__names_the_candidates(school: AppState) -> None:
    job = preview(school, "reg", xlsx([new_student(班级="1班", 年级="高二")], FILE_HEADER))
    (message,) = errors_of(school, job)[2]
    assert "找到多个单位" in message and "高二(1)班" in message and "高二1班" in message and "年级“高二”" in message


def test_outside_scope__not_found(school: AppState) -> None:
    """The other school's 一年级(1)班 is not this registrar's: "1班" next to 一年级 finds nothing."""
    job = preview(school, "reg", xlsx([new_student(班级="1班", 年级="一年级")], FILE_HEADER))
    assert job.count_invalid == 1 and "找不到单位" in errors_of(school, job)[2][0]


def test_error_workbook__the_message_at_the_class_cell(school: AppState) -> None:
    job = preview(school, "reg", xlsx([new_student(班级="7班", 年级="高一")], FILE_HEADER))
    data = error_workbook(school.db, school.definitions, job.id, Limits())
    assert data is not None
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    texts = " ".join(str(c.value or "") for line in sheet.iter_rows() for c in line)
    assert "编号为 7" in texts


def test_number_pattern_declared_in_org_yaml(tmp_path: Path, fresh_db_url: str) -> None:
    """A school naming classes "1901班" (year + number) declares where the number is: `number: '\\d{2}(\\d+)班'`."""
    directory = copy_definitions(tmp_path / "definitions")
    org = directory / "org.yaml"
    org.write_text(org.read_text(encoding="utf-8").replace("  - {key: class, label: 班级}",
                                                           "  - {key: class, label: 班级, number: '\\d{2}(\\d+)班'}"),
                   encoding="utf-8")
    _app, state = build(fresh_db_url, definitions=directory, tmp=tmp_path)
    try:
        add_user(state, "reg", "registrar", SCHOOL)
        with state.db.write() as s:
            create_unit(s, "1907班", "class", unit_by_path(s, f"{SCHOOL}/高一"))
            s.commit()
        row = new_student(班级="7班", 年级="高一")
        job = import_file(state, "reg", xlsx([row], FILE_HEADER))
        assert job.count_new == 1, errors_of(state, job)
        assert _unit_of(state, row["身份证号"]) == "1907班"
    finally:
        state.db.dispose()


@pytest.mark.parametrize("pattern, expected", [("'(\\d+'", "不是有效的正则表达式"), ("'\\d+班'", "须有一个括号分组")])
def test_number_pattern__invalid__located_error(tmp_path: Path, pattern: str, expected: str) -> None:
    directory = copy_definitions(tmp_path / "definitions")
    org = directory / "org.yaml"
    org.write_text(org.read_text(encoding="utf-8").replace("  - {key: class, label: 班级}",
                                                           f"  - {{key: class, label: 班级, number: {pattern}}}"),
                   encoding="utf-8")
    with pytest.raises(DefinitionErrors) as caught:
        load_definitions(directory)
    assert expected in str(caught.value) and "org.yaml:" in str(caught.value)


def test_grade_value_mapped_in_the_value_step__finds_the_unit_too(school: AppState) -> None:
    """"7年级" is no option of 年级; once the value step maps it to 初一, the class "5班" is found under 初一."""
    row = new_student(班级="5班", 年级="7年级")
    job = preview(school, "reg", xlsx([row], FILE_HEADER))
    assert job.count_invalid == 1 and job.details["unknown_values"]["grade"][0][0] == "7年级"
    form = school.definitions.forms["student"]
    again = run_job(school.db, school.definitions, job_with_values(school.db, job, principal_of(school, "reg"), form,
                                                                   [("grade", "7年级", "初一")]), Limits(), school.records)
    assert again is not None and (again.count_new, again.count_invalid) == (1, 0), errors_of(school, again)
