"""Issuing, numbering, reissue (补发), revocation (撤销) and who may do each, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from engine.certificates.errors import (
    BatchChanged, BatchInvalid, CertificateNotFound, NotAllowed, NotValid, ReasonRequired, UnitInvalid,
)
from engine.certificates.service import today
from engine.storage.models import Certificate, Record
from tests.certificates.support import SHIPPED, certificates_of, definitions_with, graduate, service
from tests.support import CLASS_1, CLASS_2, unit_id, valid_id_number
from tests.workflows.support import application_id

# 在读证明: defined only here — no workflow, issued in a batch by class, numbered by enrolment year.
ENROLMENT = """
key: enrolment
title: 在读证明
form: student
holder: name
issue: {when: "status == '在读'", batch: class}
roles: {issue: [registrar], revoke: [registrar]}
number: "ZD{enrol_year}-{seq:4}"
fields:
  - {key: name, label: 姓名, from: record.name}
  - {key: grade, label: 年级, from: record.grade}
  - {key: enrol_year, label: 入学年份, from: record.enrol_year}
layout:
  title: 在读证明
  paper: A5
  orientation: portrait
  text: |
    兹证明{{ name }}系我校{{ grade }}在读学生。
"""


def second_student(w, name: str = "李四", unit: str = CLASS_1, n: int = 1) -> int:
    return w.student(name=name, id_card=valid_id_number(f"11010520080613{n:03d}"), birth_date="2008-06-13", unit=unit)


# --- issued on approval -------------------------------------------------------------------------------

def test_approval__issues_the_certificate_in_the_same_transaction(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    app = graduate(w, student)
    (row,) = certificates_of(w, student)
    school_no = w.record(student).data["school_no"]
    assert row.number == f"{today().year}{school_no}01" and row.status == "valid"
    assert (row.application_id, row.school, row.holder, row.issued_name) == (app, "示范区第一中学", "张三", "bureau")
    content = json.loads(row.content)
    assert content["n"] == row.number and content["t"] == "毕业证书" and content["d"] == today().isoformat()
    assert ["graduation_date", "毕业日期", "2026-06-30"] in content["f"] and ["name", "姓名", "张三"] in content["f"]
    assert w.record(student).data["status"] == "毕业"


def test_approval__refused_when_the_certificate_cannot_be_made(world, tmp_path: Path) -> None:
    # A required value the record lacks (籍贯) refuses the approval: no status change, no certificate.
    text = SHIPPED.replace("  - {key: gender, label: 性别, from: record.gender}\n",
                           "  - {key: gender, label: 性别, from: record.gender}\n"
                           "  - {key: native_place, label: 籍贯, from: record.native_place}\n")
    w = world("reg", "bureau", definitions=definitions_with(tmp_path / "defs", {"graduation": text}))
    student = w.student()
    w.evaluation(student)
    app = application_id(w.login("reg").start("graduate", student, {"graduation_date": "2026-06-30", "destination": "其他",
                                                                    "detail": "出国"}))
    answer = w.login("bureau").decide(app, "approve")
    assert "审批未生效：无法颁发毕业证书（张三）：缺少“籍贯”" in answer.text
    assert w.application(app).status == "pending" and w.record(student).data["status"] == "在读"
    assert certificates_of(w, student) == []


# --- reissue, revocation and numbers --------------------------------------------------------------------

def test_reissue__new_number_and_the_old_one_kept(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    graduate(w, student)
    (first,) = certificates_of(w, student)
    reg = w.principal("reg")
    new = service(w).reissue(w.state.definitions, reg, first.id, "原证遗失")
    old, current = certificates_of(w, student)
    assert (old.status, old.live_key, old.end_reason, old.ended_name) == ("replaced", None, "原证遗失", "reg")
    assert current.number == new.number == first.number[:-2] + "02" and current.replaces_id == first.id
    assert json.loads(current.content)["r"] == first.number
    assert [json.loads(c.content)["f"] for c in (old, current)] == [json.loads(first.content)["f"]] * 2
    listed = service(w).for_record(w.state.definitions, reg, w.state.definitions.forms["student"], student)
    assert [(c.number, c.status) for c in listed] == [(current.number, "valid"), (first.number, "replaced")]
    with pytest.raises(NotValid):
        service(w).reissue(w.state.definitions, reg, first.id, "再次补发旧证")


def test_revoke__needs_a_reason_and_keeps_the_number(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    graduate(w, student)
    (row,) = certificates_of(w, student)
    defs, bureau = w.state.definitions, w.principal("bureau")
    with pytest.raises(ReasonRequired):
        service(w).revoke(defs, bureau, row.id, "  ")
    revoked = service(w).revoke(defs, bureau, row.id, "学籍信息造假")
    assert (revoked.status, revoked.end_reason, revoked.ended_name) == ("revoked", "学籍信息造假", "bureau")
    for action in (service(w).revoke, service(w).reissue):
        with pytest.raises(NotValid):
            action(defs, w.principal("reg"), row.id, "再试")
    (still,) = certificates_of(w, student)
    assert still.number == row.number and still.live_key is not None  # no batch issues this record another one


def test_numbers__never_reused(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    graduate(w, student)
    (first,) = certificates_of(w, student)
    prefix = first.number[:-2]
    # A number already held (restored from a backup, say) is skipped, not handed out a second time.
    with w.state.db.write() as s:
        s.add(Certificate(kind="graduation", number=prefix + "02", form_key="student", record_id=0, status="revoked",
                          content="{}", holder="", school="", issued_on=today(), ended_name="", end_reason=""))
        s.commit()
    second = service(w).reissue(w.state.definitions, w.principal("reg"), first.id, "遗失")
    third = service(w).reissue(w.state.definitions, w.principal("reg"), second.id, "又遗失")
    assert [second.number, third.number] == [prefix + "03", prefix + "04"]
    # The database holds the line too: a number cannot be stored twice.
    with w.state.db.write() as s, pytest.raises(IntegrityError):
        s.add(Certificate(kind="graduation", number=third.number, form_key="student", record_id=0, status="valid",
                          content="{}", holder="", school="", issued_on=today(), ended_name="", end_reason=""))
        s.flush()


# --- who may do what ----------------------------------------------------------------------------------

def test_permissions__refused_by_the_service(world) -> None:
    w = world("reg", "reg_small", "bureau", "bureau_in", "teacher", "head")
    student = w.student()
    graduate(w, student)
    (row,) = certificates_of(w, student)
    defs, certs, grad = w.state.definitions, service(w), w.state.definitions.certificates["graduation"]
    class_1 = unit_id(w.state, CLASS_1)
    for username in ("teacher", "head"):  # no role of theirs is named in the certificate's roles
        who = w.principal(username)
        for refused in (lambda p: certs.reissue(defs, p, row.id, "遗失"), lambda p: certs.revoke(defs, p, row.id, "错"),
                        lambda p: certs.printable(defs, p, row.id), lambda p: certs.preview(defs, p, grad, class_1)):
            with pytest.raises(NotAllowed):
                refused(who)
    bureau = w.principal("bureau")
    with pytest.raises(NotAllowed):  # 教育局 may revoke, not issue or print
        certs.reissue(defs, bureau, row.id, "遗失")
    with pytest.raises(NotAllowed):
        certs.printable(defs, bureau, row.id)
    # Roles that may act, but whose scope does not reach the student: as if the certificate did not exist.
    with pytest.raises(CertificateNotFound):
        certs.reissue(defs, w.principal("reg_small"), row.id, "遗失")
    with pytest.raises(CertificateNotFound):
        certs.printable(defs, w.principal("reg_small"), row.id)
    with pytest.raises(CertificateNotFound):
        certs.revoke(defs, w.principal("bureau_in"), row.id, "错")
    with pytest.raises(UnitInvalid):
        certs.preview(defs, w.principal("reg_small"), grad, class_1)
    # Without a reason, still refused as outsiders: the reason is looked at only for those who may act.
    with pytest.raises(NotAllowed):
        certs.revoke(defs, w.principal("teacher"), row.id, "")
    with pytest.raises(CertificateNotFound):
        certs.reissue(defs, w.principal("reg_small"), row.id, "")
    assert certs.for_record(defs, w.principal("reg_small"), defs.forms["student"], student) == []
    assert certificates_of(w, student)[0].status == "valid"


# --- batches (a certificate defined only in this test) ---------------------------------------------------

def test_batch__preview_then_issue_to_the_class(world, tmp_path: Path) -> None:
    w = world("reg", "bureau", definitions=definitions_with(tmp_path / "defs", {"enrolment": ENROLMENT}))
    first, second = w.student(), second_student(w)
    other_class = second_student(w, name="王五", unit=CLASS_2, n=3)
    with w.state.db.write() as s:  # a student who has left: the certificate's condition excludes them
        left = second_student(w, name="赵六", n=5)
        data = dict(s.get(Record, left).data, status="退学")
        s.execute(update(Record).where(Record.id == left).values(data=data))
        s.commit()
    spec, reg, certs = w.state.definitions.certificates["enrolment"], w.principal("reg"), service(w)
    class_1 = unit_id(w.state, CLASS_1)
    assert {u.full_name.split("/")[-1] for u in certs.batch_units(w.state.definitions, reg, spec)} >= {"高一(1)班", "高一(2)班"}
    batch = certs.preview(w.state.definitions, reg, spec, class_1)
    assert {(c.title, c.ok, c.reason) for c in batch.candidates} == {
        ("张三", True, ""), ("李四", True, ""), ("赵六", False, "不满足颁发条件")}
    with pytest.raises(BatchChanged):  # what is issued is what the registrar saw
        certs.issue_batch(w.state.definitions, reg, spec, class_1, {}, [first])
    issued = certs.issue_batch(w.state.definitions, reg, spec, class_1, {}, batch.eligible)
    assert sorted(c.number for c in issued) == ["ZD2023-0001", "ZD2023-0002"]
    again = certs.preview(w.state.definitions, reg, spec, class_1)
    assert {c.ok for c in again.candidates} == {False} and all(c.reason.startswith("已有证书") or c.title == "赵六"
                                                               for c in again.candidates)
    assert certificates_of(w, other_class) == [] and len(certificates_of(w, second)) == 1


def test_batch__asks_for_the_application_values(world, tmp_path: Path) -> None:
    # Issued by the 毕业 workflow, but given in a batch: the batch asks for 毕业日期 once, validated as the workflow does.
    text = SHIPPED.replace("when: \"status == '毕业'\"", "when: \"status == '在读'\"")
    w = world("reg", "bureau", definitions=definitions_with(tmp_path / "defs", {"graduation": text}))
    student = w.student()
    spec, reg, certs = w.state.definitions.certificates["graduation"], w.principal("reg"), service(w)
    class_1 = unit_id(w.state, CLASS_1)
    batch = certs.preview(w.state.definitions, reg, spec, class_1)
    with pytest.raises(BatchInvalid) as refused:
        certs.issue_batch(w.state.definitions, reg, spec, class_1, {"graduation_date": "2026-13-01"}, batch.eligible)
    assert [i.path for i in refused.value.issues] == ["graduation_date"] and "毕业日期" in refused.value.message
    (issued,) = certs.issue_batch(w.state.definitions, reg, spec, class_1, {"graduation_date": "2026-07-01"},
                                  batch.eligible)
    assert ("graduation_date", "毕业日期", "2026-07-01") in issued.fields and certificates_of(w, student)[0].application_id is None


def test_batch_page__http(world, tmp_path: Path) -> None:
    w = world("reg", "teacher", definitions=definitions_with(tmp_path / "defs", {"enrolment": ENROLMENT}))
    student = w.student()
    reg, class_1 = w.login("reg"), unit_id(w.state, CLASS_1)
    assert 'href="/cert/"' in reg.get("/").text and 'href="/cert/"' not in w.login("teacher").get("/").text
    assert f'<option value="{class_1}">' in reg.get("/cert/").text
    page = reg.get(f"/cert/enrolment/batch?unit={class_1}")
    assert page.status_code == 200 and "张三" in page.text and "颁发 1 份在读证明" in page.text
    done = reg.post(f"/cert/enrolment/batch?unit={class_1}", {"record": str(student)})
    assert done.status_code == 303
    assert "已颁发 1 份在读证明" in reg.get(done.headers["location"]).text
    assert certificates_of(w, student)[0].number == "ZD2023-0001"
    assert w.login("teacher").get(f"/cert/enrolment/batch?unit={class_1}").status_code == 403
