"""The shipped 学业管理 definitions (definitions/forms/exam, score, attendance, timetable, evaluation, award): written
in YAML alone, they work through the record service as a school uses them — on SQLite and PostgreSQL."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest

from engine.records import ListQuery
from tests.engine.helpers import add_member, principal_of, student_values
from tests.support import CLASS_1, SCHOOL, build, unit_id
from web.state import AppState


@pytest.fixture
def state(fresh_db_url: str, tmp_path: Path) -> Iterator[AppState]:
    _app, state = build(fresh_db_url, tmp=tmp_path)
    add_member(state, "reg", "registrar", SCHOOL)
    add_member(state, "head", "head_teacher", CLASS_1)
    yield state
    state.db.dispose()


def test_scores_compute_totals_and_ranks_and_a_head_teacher_registers_an_award(state: AppState) -> None:
    forms, reg, head = state.definitions.forms, principal_of(state, "reg"), principal_of(state, "head")
    students = []
    for serial in (301, 303, 305):
        made = state.records.create(forms["student"], reg, unit_id(state, CLASS_1), student_values(serial))
        assert made.ok, made.issues
        students.append(made.record_id)
    exam = state.records.create(forms["exam"], reg, unit_id(state, SCHOOL), {
        "name": "期中考试", "term": "2026-2027学年第一学期", "kind": "期中", "grade": "高一", "start_date": "2026-11-10"})
    assert exam.ok, exam.issues
    # The head teacher enters grades for the students of their class, naming the exam by its name.
    for student, math in zip(students, ("95", "80", "95")):
        made = state.records.create(forms["score"], head, None, {"student": student, "exam": "期中考试", "chinese": "90", "math": math})
        assert made.ok, made.issues
    rows = state.records.figured(head, forms["score"], state.records.list(forms["score"], head, ListQuery(per_page=50)).records)
    by_student = {r.values["student"]: r for r in rows}
    first = by_student[students[0]]
    assert (first.values["total"], first.values["average"], first.values["absent"]) == (Decimal("185.0"), Decimal("92.5"), 7)
    assert [by_student[s].figures["class_rank"] for s in students] == [1, 3, 1]
    assert by_student[students[1]].figures["class_average"] == Decimal("180.0")
    # 奖惩 belongs to the student: no 学籍号 to type, the student picked by 学号.
    school_no = state.records.get(forms["student"], students[0], head).values["school_no"]
    award = state.records.create(forms["award"], head, None, {"student": school_no, "kind": "奖励", "level": "校级",
                                                              "title": "三好学生", "date": "2026-06-01"})
    assert award.ok, award.issues
    assert state.records.get(forms["award"], award.record_id, head).unit_id == unit_id(state, CLASS_1)


def test_attendance_asks_for_a_reason_and_proof_only_for_sick_leave_and_evaluation_sums_hours(state: AppState) -> None:
    forms, head = state.definitions.forms, principal_of(state, "head")
    student = state.records.create(forms["student"], principal_of(state, "reg"), unit_id(state, CLASS_1), student_values(311))
    late = state.records.create(forms["attendance"], head, None, {"student": student.record_id, "date": "2026-10-09", "kind": "迟到", "minutes": "10"})
    assert late.ok, late.issues
    sick = state.records.create(forms["attendance"], head, None, {"student": student.record_id, "date": "2026-10-09", "kind": "病假", "days": "1"})
    assert {i.path for i in sick.issues} == {"reason", "proof"}
    evaluation = state.records.create(forms["evaluation"], head, None, {
        "student": student.record_id, "term": "2026-2027学年第一学期", "moral": "A", "academic": "B", "health": "A", "art": "C",
        "practice": "A", "activities": [{"date": "2026-10-01", "name": "社区服务", "hours": "3.5"}, {"date": "2026-10-08", "name": "敬老院", "hours": "2"}]})
    assert evaluation.ok, evaluation.issues
    values = state.records.get(forms["evaluation"], evaluation.record_id, head).values
    assert (values["a_count"], values["practice_hours"]) == (3, Decimal("5.5"))
