"""Handover test helpers: a graduate with child records and a photo, sent on to another school by the 毕业 workflow."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from engine.archives.handover import HandoverService
from engine.fields.files import UploadedFile
from engine.org import create_unit, unit_by_path
from engine.storage.models import AuditEntry, Handover, Record
from tests.support import OTHER_DISTRICT_CLASS, unit_id
from tests.workflows.support import OTHER_DISTRICT_SCHOOL, World, application_id

RECEIVING_SCHOOL = OTHER_DISTRICT_SCHOOL  # 滨江区教育局/滨江中学, with 高一(1)班
RECEIVING_CLASS = OTHER_DISTRICT_CLASS
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6300010000050001a5f645400000000049454e44ae426082")


FINAL_GRADE = "初三"  # the 毕业 workflow offers a 初三 graduate the schools that have a 高一


def graduate_with_children(w: World, name: str = "张三", id_card: str = "110105200805120018") -> int:
    """A 初三 student with a photo, two 综合素质评价 and an award."""
    student = w.student(name=name, id_card=id_card, grade=FINAL_GRADE)
    registrar = w.principal("reg")
    forms = w.state.definitions.forms
    current = w.state.records.get(forms["student"], student, registrar, "update")
    saved = w.state.records.update(forms["student"], registrar, student,
                                   {"photo": UploadedFile("photo.png", "image/png", PNG)}, current.revision)
    assert saved.ok, saved.issues
    for term in ("2023-2024学年第一学期", "2023-2024学年第二学期"):
        made = w.state.records.create(forms["evaluation"], registrar, None, {
            "student": student, "term": term, "grade": FINAL_GRADE, "moral": "A", "academic": "B", "health": "A", "art": "C",
            "practice": "B", "conduct": f"{term}表现良好"})
        assert made.ok, made.issues
    award = w.state.records.create(forms["award"], registrar, None, {
        "student": student, "kind": "奖励", "level": "校级", "title": "三好学生", "date": "2024-06-01"})
    assert award.ok, award.issues
    return student


def send_on(w: World, student: int, school: str = RECEIVING_SCHOOL, destination: str = "升学") -> int:
    """The 毕业 application naming `school`, approved by the bureau: the application's id."""
    data: dict[str, Any] = {"graduation_date": "2026-06-30", "destination": destination}
    if destination == "升学":
        data.update({"school_name": "滨江中学", "_unit": str(unit_id(w.state, school))})
    else:
        data.update({"employer": "示范公司"})
    app = application_id(w.login("reg").start("graduate", student, data))
    answer = w.login("bureau").decide(app, "approve")
    assert answer.status_code == 303, answer.text[:2000]
    return app


def add_unit(w: World, parent: str, name: str, level: str) -> int:
    """A unit added to the org tree (as the admin pages add one), e.g. a 高一 grade in a school that had none."""
    with w.state.db.write() as s:
        made = create_unit(s, name, level, unit_by_path(s, parent))
        s.commit()
        made_id = made.id
    w.state.units_changed()
    return made_id


def handovers(w: World) -> list[Handover]:
    with w.state.db.read() as s:
        return list(s.scalars(select(Handover).order_by(Handover.id)))


def service(w: World) -> HandoverService:
    return HandoverService(w.state.db, w.state.records)


def children_of(w: World, student: int) -> list[Record]:
    with w.state.db.read() as s:
        rows = list(s.scalars(select(Record).where(Record.form_key.in_(["evaluation", "award"]))))
    return [r for r in rows if r.data.get("student") == student]


def audit_of(w: World, form_key: str, record_id: int) -> list[AuditEntry]:
    with w.state.db.read() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.form_key == form_key, AuditEntry.record_id == record_id)
                              .order_by(AuditEntry.id)))


__all__ = ["FINAL_GRADE", "RECEIVING_CLASS", "RECEIVING_SCHOOL", "add_unit", "audit_of", "children_of", "graduate_with_children", "handovers",
           "send_on", "service", "unit_id"]
