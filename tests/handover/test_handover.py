"""升学衔接 within one installation: the 毕业 workflow hands the archive to the chosen school, which reads it and
confirms (the record and its child records move there, audited) or declines with a reason; the sender keeps its log."""
from __future__ import annotations

import re

from engine.messages import render
from engine.issues import Issue
from tests.handover.support import (
    FINAL_GRADE, RECEIVING_CLASS, RECEIVING_SCHOOL, add_unit, audit_of, children_of, graduate_with_children, handovers, send_on, unit_id,
)
from tests.workflows.support import OTHER_SCHOOL


def _message(code: str, **params: object) -> str:
    return render(Issue(code, params))


def test_graduation_to_a_school__pending_until_confirmed(world) -> None:
    w = world("reg", "bureau", "reg_in")
    student = graduate_with_children(w)
    app = send_on(w, student)
    (pending,) = handovers(w)
    assert (pending.status, pending.record_id, pending.application_id) == ("pending", student, app)
    assert pending.to_name == RECEIVING_SCHOOL and pending.from_name == "示范区教育局/示范区第一中学"
    record = w.record(student)
    assert record.data["status"] == "毕业" and record.unit_id == unit_id(w.state, "示范区教育局/示范区第一中学/高一/高一(1)班")
    timeline = w.login("reg").get(f"/wf/a/{app}").text
    assert f"档案已交给{RECEIVING_SCHOOL}，待其确认录取" in timeline
    # 学籍异动: the sender lists its 毕业; the chosen school has received nothing yet (it has to confirm first).
    assert f'id="move-{app}"' in w.login("reg").get("/wf/moves").text
    assert f'id="move-{app}"' not in w.login("reg_in").get("/wf/moves").text


def test_receiver__lists_and_reads_the_archive_with_children_and_files_before_confirming(world) -> None:
    w = world("reg", "bureau", "reg_in")
    student = graduate_with_children(w)
    send_on(w, student)
    (pending,) = handovers(w)
    reg_in = w.login("reg_in")
    listing = reg_in.get("/handovers/").text
    assert f'href="/handovers/{pending.id}"' in listing and "示范区第一中学" in listing
    assert re.search(r'id="nav-count-handovers">1<', listing)
    assert reg_in.get(f"/f/student/{student}").status_code == 404  # not theirs yet
    page = reg_in.get(f"/handovers/{pending.id}").text
    assert "张三" in page and "110105200805120018" in page  # the registrar's own view: sensitive values shown
    assert page.count('class="child-record"') == 3 and "三好学生" in page and "2023-2024学年第二学期表现良好" in page
    photo = re.search(rf'src="(/handovers/{pending.id}/files/[0-9a-f]+)"', page)
    assert photo, page
    got = reg_in.get(photo[1])
    assert got.status_code == 200 and got.content.startswith(b"\x89PNG")
    assert reg_in.get(photo[1].replace(f"/handovers/{pending.id}", "")).status_code == 404  # not by the record's route
    assert f"<option value=\"{unit_id(w.state, RECEIVING_CLASS)}\">{RECEIVING_CLASS}</option>" in page


def test_confirm__record_and_children_move_audited_status_set_sender_keeps_its_log(world) -> None:
    w = world("reg", "bureau", "reg_in")
    student = graduate_with_children(w)
    send_on(w, student)
    (pending,) = handovers(w)
    target = unit_id(w.state, RECEIVING_CLASS)
    # The navigation's badge is cached per user (as the 待办 badge): a confirmation must clear it at once.
    assert re.search(r'id="nav-count-handovers">1<', w.login("reg_in").get("/").text)
    done = w.login("reg_in").post(f"/handovers/{pending.id}/confirm", {"unit": str(target), "remark": "已分班"})
    assert done.status_code == 303 and done.headers["location"] == f"/f/student/{student}"
    assert 'id="nav-count-handovers"' not in w.login("reg_in").get("/").text
    record = w.record(student)
    assert record.unit_id == target and record.data["status"] == "在读"
    assert {c.unit_id for c in children_of(w, student)} == {target} and len(children_of(w, student)) == 3
    last = audit_of(w, "student", student)[-1]
    assert last.changes["status"] == ["毕业", "在读"] and last.changes["_unit"][1] == target
    assert last.note.startswith(f"升学衔接 #{pending.id}：{RECEIVING_SCHOOL} 确认录取") and last.username == "reg_in"
    child = children_of(w, student)[0]
    assert audit_of(w, child.form_key, child.id)[-1].note == f"随学生档案 #{student} 转移"
    (confirmed,) = handovers(w)
    assert (confirmed.status, confirmed.decided_name, confirmed.placed_unit_id) == ("confirmed", "reg_in", target)
    reg_in = w.login("reg_in")
    assert reg_in.get(f"/f/student/{student}").status_code == 200  # now in the receiver's own scope
    reg = w.login("reg")
    assert reg.get(f"/f/student/{student}").status_code == 404  # gone from the sender's archive ...
    sent = reg.get("/handovers/?tab=sent").text  # ... and kept in its log
    assert f'id="handover-{pending.id}"' in sent and RECEIVING_SCHOOL in sent and "已确认录取" in sent
    entry = reg.get(f"/handovers/{pending.id}").text
    assert "已确认录取" in entry and RECEIVING_CLASS in entry and 'id="confirm-form"' not in entry
    assert 'class="child-record"' not in entry  # the sender's log shows what was sent, not the record as it is now


def test_sender_cannot_confirm_and_other_schools_see_nothing(world) -> None:
    w = world("reg", "bureau", "reg_in", "reg_near")
    student = graduate_with_children(w)
    send_on(w, student)
    (pending,) = handovers(w)
    reg = w.login("reg")
    refused = reg.post(f"/handovers/{pending.id}/confirm", {"unit": str(unit_id(w.state, RECEIVING_CLASS))})
    assert refused.status_code == 403
    assert _message("handover_not_receiver", unit=RECEIVING_SCHOOL, role="学籍管理员") in refused.text
    assert reg.post(f"/handovers/{pending.id}/decline", {"reason": "不要"}).status_code == 403
    page = reg.get(f"/handovers/{pending.id}").text  # the sender reads its own entry, without the decision forms
    assert 'id="confirm-form"' not in page and "待确认" in page
    near = w.login("reg_near")
    assert near.get(f"/handovers/{pending.id}").status_code == 404
    assert near.post(f"/handovers/{pending.id}/confirm", {"unit": str(unit_id(w.state, RECEIVING_CLASS))}).status_code == 404
    assert f"/handovers/{pending.id}" not in near.get("/handovers/").text
    assert handovers(w)[0].status == "pending" and w.record(student).data["status"] == "毕业"


def test_confirm__placement_must_be_in_the_receiving_school(world) -> None:
    w = world("reg", "bureau", "reg_in")
    student = graduate_with_children(w)
    send_on(w, student)
    (pending,) = handovers(w)
    elsewhere = unit_id(w.state, "示范区教育局/示范区第一中学/高一/高一(2)班")
    refused = w.login("reg_in").post(f"/handovers/{pending.id}/confirm", {"unit": str(elsewhere)})
    assert refused.status_code == 422 and _message("handover_placement", unit="所属班级") in refused.text
    assert handovers(w)[0].status == "pending" and w.record(student).unit_id != elsewhere


def test_decline__needs_a_reason_record_stays_sender_sees_why(world) -> None:
    w = world("reg", "bureau", "reg_in")
    student = graduate_with_children(w)
    send_on(w, student)
    (pending,) = handovers(w)
    before = w.record(student)
    reg_in = w.login("reg_in")
    empty = reg_in.post(f"/handovers/{pending.id}/decline", {"reason": "  "})
    assert empty.status_code == 422 and _message("handover_reason", limit=500) in empty.text
    done = reg_in.post(f"/handovers/{pending.id}/decline", {"reason": "未被本校录取"})
    assert done.status_code == 303
    after = w.record(student)
    assert (after.unit_id, after.data["status"], after.revision) == (before.unit_id, "毕业", before.revision)
    (declined,) = handovers(w)
    assert (declined.status, declined.reason) == ("declined", "未被本校录取")
    assert 'class="child-record"' not in reg_in.get(f"/handovers/{pending.id}").text  # no longer readable by them
    sent = w.login("reg").get("/handovers/?tab=sent").text
    assert "已退回" in sent and "未被本校录取" in sent
    again = reg_in.post(f"/handovers/{pending.id}/confirm", {"unit": str(unit_id(w.state, RECEIVING_CLASS))})
    assert again.status_code == 409 and _message("handover_decided", status="已退回") in again.text


def test_confirm_twice__the_second_is_refused(world) -> None:
    w = world("reg", "bureau", "reg_in", "reg_in2")
    student = graduate_with_children(w)
    send_on(w, student)
    (pending,) = handovers(w)
    target = str(unit_id(w.state, RECEIVING_CLASS))
    assert w.login("reg_in").post(f"/handovers/{pending.id}/confirm", {"unit": target}).status_code == 303
    second = w.login("reg_in2").post(f"/handovers/{pending.id}/confirm", {"unit": target})
    assert second.status_code == 409
    assert len([e for e in audit_of(w, "student", student) if e.note.startswith("升学衔接")]) == 1


def test_no_school_chosen_or_not_going_on__no_handover(world) -> None:
    w = world("reg", "bureau")
    working = w.student(name="李四")
    w.evaluation(working)  # 毕业审核 asks for one of the final year
    send_on(w, working, destination="就业")  # the unit choice is optional (required: false)
    assert handovers(w) == [] and w.record(working).data["status"] == "毕业"


def test_handover_to_the_same_district__other_school_confirms(world) -> None:
    w = world("reg", "bureau", "reg_near")
    student = w.student(grade=FINAL_GRADE)
    w.evaluation(student, FINAL_GRADE)
    add_unit(w, OTHER_SCHOOL, "高一", "grade")  # a school is offered to a 初三 graduate only if it has a 高一
    send_on(w, student, school=OTHER_SCHOOL)
    (pending,) = handovers(w)
    near_class = unit_id(w.state, "示范区教育局/示范区实验小学/一年级/一年级(1)班")
    assert w.login("reg_near").post(f"/handovers/{pending.id}/confirm", {"unit": str(near_class)}).status_code == 303
    assert w.record(student).unit_id == near_class
