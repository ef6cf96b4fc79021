"""The 毕业 application's destination picker (`choose_unit.when` over `unit.below.grade`): a 初三 graduate is offered the
schools that have a 高一, on the page and when a chosen school is posted; a graduate of another grade none."""
from __future__ import annotations

from sqlalchemy import func, select

from engine.issues import Issue
from engine.messages import render
from engine.storage.models import Application
from tests.handover.support import FINAL_GRADE, RECEIVING_SCHOOL, add_unit, handovers, unit_id
from tests.workflows.support import OTHER_SCHOOL, World, application_id


def _applications(w: World) -> int:
    with w.state.db.read() as s:
        return s.scalar(select(func.count()).select_from(Application)) or 0


def _offered(w: World, student: int) -> str:
    page = w.login("reg").get(f"/wf/new/graduate/start?record={student}")
    assert page.status_code == 200, page.text[:2000]
    return page.text


def _option(w: World, school: str) -> str:
    return f'<option value="{unit_id(w.state, school)}">{school}</option>'


def test_picker__a_final_year_graduate_is_offered_only_schools_with_the_next_grade(world) -> None:
    w = world("reg", "bureau")
    student = w.student(grade=FINAL_GRADE)
    w.evaluation(student, FINAL_GRADE)
    page = _offered(w, student)
    assert _option(w, RECEIVING_SCHOOL) in page  # 滨江中学 has a 高一
    assert _option(w, OTHER_SCHOOL) not in page  # 示范区实验小学 has only 一年级
    add_unit(w, OTHER_SCHOOL, "高一", "grade")
    assert _option(w, OTHER_SCHOOL) in _offered(w, student)


def test_picker__a_posted_school_without_the_next_grade__refused(world) -> None:
    w = world("reg", "bureau")
    student = w.student(grade=FINAL_GRADE)
    w.evaluation(student, FINAL_GRADE)
    refused = w.login("reg").start("graduate", student, {"graduation_date": "2026-06-30", "destination": "升学",
                                                         "school_name": "实验小学", "_unit": str(unit_id(w.state, OTHER_SCHOOL))})
    assert refused.status_code == 422
    assert render(Issue("wf_unit_invalid", {"label": "升入学校（本系统内）"})) in refused.text
    assert _applications(w) == 0 and w.record(student).data["status"] == "在读"


def test_picker__a_graduate_of_another_grade_is_offered_no_school(world) -> None:
    w = world("reg", "bureau")
    student = w.student(grade="高一")
    w.evaluation(student, "高一")
    page = _offered(w, student)
    assert _option(w, RECEIVING_SCHOOL) not in page and _option(w, OTHER_SCHOOL) not in page
    # Going on to a school outside this installation stays possible: the choice is optional.
    assert send_on_elsewhere(w, student) == "毕业"


def send_on_elsewhere(w: World, student: int) -> str:
    answer = w.login("reg").start("graduate", student, {"graduation_date": "2026-06-30", "destination": "升学",
                                                        "school_name": "外省某中学"})
    app = application_id(answer)
    assert w.login("bureau").decide(app, "approve").status_code == 303
    assert handovers(w) == []
    return w.record(student).data["status"]
