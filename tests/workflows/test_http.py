"""Every workflow action through HTTP, and every forbidden one, on SQLite and PostgreSQL."""
from __future__ import annotations

import re

from sqlalchemy import select

from engine.messages import MESSAGES
from engine.storage.models import ApplicationAction, AuditEntry
from tests.support import OTHER_DISTRICT_CLASS, OTHER_SCHOOL_CLASS, unit_id, valid_id_number
from tests.workflows.support import application_id, proof, transfer_form

TRANSFER_PEOPLE = ("reg", "reg_in", "bureau", "bureau_in")


def statuses(world, application: int) -> tuple[str, str]:
    app = world.application(application)
    return app.status, app.step


def test_transfer_across_districts__moves_the_student(world) -> None:
    w = world(*TRANSFER_PEOPLE)
    student = w.student()
    reg, reg_in, bureau, bureau_in = (w.login(u) for u in TRANSFER_PEOPLE)
    page = reg.get(f"/f/student/{student}")
    assert f'href="/wf/new/transfer/start?record={student}"' in page.text and "办理转学" in page.text
    target = unit_id(w.state, OTHER_DISTRICT_CLASS)
    app = application_id(reg.start("transfer", student, transfer_form(target), proof()))
    assert statuses(w, app) == ("pending", "receiving_school")
    assert '<span class="badge" id="nav-count-wf_todo">1</span>' in reg_in.get("/").text
    assert f'href="/wf/a/{app}"' in reg_in.get("/wf/todo").text
    assert reg_in.decide(app, "approve", comment="同意接收").status_code == 303
    assert statuses(w, app) == ("pending", "bureaus")
    assert bureau.decide(app, "approve").status_code == 303
    assert statuses(w, app) == ("pending", "bureaus")  # the other bureau has not decided yet
    assert w.record(student).unit_id != target
    assert bureau_in.decide(app, "approve").status_code == 303
    assert statuses(w, app) == ("approved", "")
    moved = w.record(student)
    assert moved.unit_id == target and moved.data["status"] == "在读"
    assert f'href="/f/student/{student}"' in reg_in.get("/f/student/").text
    assert f'href="/f/student/{student}"' not in reg.get("/f/student/").text
    assert reg.get(f"/f/student/{student}").status_code == 404  # out of the sending school's scope now
    assert reg.get(f"/wf/a/{app}").status_code == 200  # the applicant still follows their application
    with w.state.db.read() as s:
        audit = s.scalars(select(AuditEntry).where(AuditEntry.record_id == student).order_by(AuditEntry.id)).all()
    assert audit[-1].username == "bureau_in" and f"#{app}" in audit[-1].note and "_unit" in audit[-1].changes
    timeline = reg.get(f"/wf/a/{app}").text
    assert [m for m in re.findall(r'data-action="(\w+)"', timeline)] == ["submit", "approve", "approve", "approve", "effects"]
    assert "同意接收" in timeline and "滨江区教育局/滨江中学/高一/高一(1)班" in timeline


def test_transfer_within_district__one_bureau(world) -> None:
    w = world("reg", "reg_near", "bureau", "bureau_in")
    student = w.student(grade="一年级")  # the receiving class must be of the student's grade (choose_unit.when)
    reg, near, bureau, bureau_in = (w.login(u) for u in ("reg", "reg_near", "bureau", "bureau_in"))
    app = application_id(reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_SCHOOL_CLASS)), proof()))
    near.decide(app, "approve")
    assert len(w.open_tasks(app)) == 1 and w.open_tasks(app)[0].unit_name == "示范区教育局"
    assert "没有待办事项" in bureau_in.get("/wf/todo").text
    bureau.decide(app, "approve")
    assert statuses(w, app) == ("approved", "") and w.record(student).unit_id == unit_id(w.state, OTHER_SCHOOL_CLASS)


def test_transfer_unit_picker__other_schools_only(world) -> None:
    w = world("reg")
    student = w.student()
    reg = w.login("reg")
    page = reg.get(f"/wf/new/transfer/start?record={student}").text
    options = re.findall(r'<option value="\d+"[^>]*>([^<]+)</option>', page.split('id="in-_unit"')[1].split("</select>")[0])
    assert options and all(not o.startswith("示范区教育局/示范区第一中学/") for o in options)
    assert "滨江区教育局/滨江中学/高一/高一(1)班" in options
    assert not any("一年级" in o for o in options)  # choose_unit.when: a 高一 student goes to a 高一 class
    misfit = reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_SCHOOL_CLASS)), proof())
    assert misfit.status_code == 422 and MESSAGES["wf_unit_invalid"].format(label="转入学校及班级") in misfit.text
    own = unit_id(w.state, "示范区教育局/示范区第一中学/高一/高一(2)班")
    refused = reg.start("transfer", student, transfer_form(own), proof())
    assert refused.status_code == 422 and MESSAGES["wf_unit_invalid"].format(label="转入学校及班级") in refused.text
    missing = reg.start("transfer", student, {"reason": "搬家"}, {})
    assert missing.status_code == 422
    assert "请选择转入学校及班级" in missing.text and "证明材料为必填项" in missing.text and "拟转学日期为必填项" in missing.text


def test_start__forbidden(world) -> None:
    w = world("reg", "reg_near", "head", "bureau")
    student = w.student()
    assert w.login("head").get("/wf/new/transfer").status_code == 403  # not a start role
    assert w.login("bureau").get(f"/wf/new/suspend/start?record={student}").status_code == 403
    near = w.login("reg_near")
    assert near.get(f"/wf/new/transfer/start?record={student}").status_code == 404  # another school's student
    assert near.start("transfer", student, transfer_form(1), proof()).status_code == 404
    assert w.login("reg").get("/wf/new/nonsense").status_code == 404


def test_start__condition_on_the_record(world) -> None:
    w = world("reg")
    student = w.student()
    reg = w.login("reg")
    assert reg.get(f"/wf/new/resume/start?record={student}").status_code == 403  # 复学 only for 休学
    assert "办理复学" not in reg.get(f"/f/student/{student}").text


def test_start__one_open_application_per_record(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    reg = w.login("reg")
    form = {"reason": "因病", "reason_detail": "住院治疗", "start_date": "2026-03-01", "end_date": "2026-09-01"}
    first = application_id(reg.start("suspend", student, form, proof()))
    again = reg.start("suspend", student, form, proof())
    assert again.status_code == 409 and f"#{first}" in again.text


def test_reject__comment_required_then_nothing_changes(world) -> None:
    w = world("reg", "reg_in")
    student = w.student()
    reg, reg_in = w.login("reg"), w.login("reg_in")
    app = application_id(reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    before = w.record(student)
    refused = reg_in.decide(app, "reject", comment="")
    assert refused.status_code == 422 and MESSAGES["wf_comment_required"].format(action="驳回") in refused.text
    assert reg_in.decide(app, "reject", comment="学位已满").status_code == 303
    assert statuses(w, app) == ("rejected", "")
    after = w.record(student)
    assert (after.unit_id, after.revision, after.data) == (before.unit_id, before.revision, before.data)
    page = reg.get(f"/wf/a/{app}").text
    assert "已驳回" in page and "学位已满" in page and 'id="wf-decide"' not in page and 'id="wf-withdraw"' not in page


def test_return_and_resubmit(world) -> None:
    w = world("reg", "reg_in", "reg_near")
    student = w.student()
    reg, reg_in, near = w.login("reg"), w.login("reg_in"), w.login("reg_near")
    app = application_id(reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    old_task = reg_in.task_on_page(app)
    assert reg_in.decide(app, "return", comment="请改转入本区学校").status_code == 303
    assert statuses(w, app) == ("returned", "")
    assert reg_in.get("/wf/todo").text.count('href="/wf/a/') == 0
    page = reg.get(f"/wf/a/{app}").text
    assert "修改后重新提交" in page and "请改转入本区学校" in page
    edit = reg.get(f"/wf/a/{app}/edit")
    assert edit.status_code == 200 and "证明.pdf" in edit.text  # the uploaded proof is kept unless replaced
    resent = reg.post(f"/wf/a/{app}/edit", {**transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS), reason="随迁")})
    assert resent.status_code == 303
    app_row = w.application(app)
    assert (app_row.status, app_row.step, app_row.round) == ("pending", "receiving_school", 2)
    assert app_row.data["proof"]["name"] == "证明.pdf"
    assert [t.unit_name for t in w.open_tasks(app)] == ["滨江中学"]
    stale = reg_in.decide(app, "approve", task=old_task)
    assert stale.status_code == 409  # their step was decided (returned) already
    assert reg_in.decide(app, "approve").status_code == 303
    assert reg.get(f"/wf/a/{app}/edit").status_code == 409  # no editing while it is being approved


def test_withdraw(world) -> None:
    w = world("reg", "reg_b", "reg_in")
    reg, reg_b, reg_in = w.login("reg"), w.login("reg_b"), w.login("reg_in")
    target = unit_id(w.state, OTHER_DISTRICT_CLASS)
    first = application_id(reg.start("transfer", w.student(), transfer_form(target), proof()))
    assert reg_b.post(f"/wf/a/{first}/withdraw").status_code == 403  # only the applicant
    assert reg.post(f"/wf/a/{first}/withdraw").status_code == 303
    assert statuses(w, first) == ("withdrawn", "") and not w.open_tasks(first)
    assert reg_in.decide(first, "approve", task=1).status_code == 409
    second = application_id(reg.start("transfer", w.student("李四", "110105200805120034"), transfer_form(target), proof()))
    reg_in.decide(second, "approve")
    late = reg.post(f"/wf/a/{second}/withdraw")
    assert late.status_code == 409 and MESSAGES["wf_withdraw_not_allowed"] in late.text


def test_non_assignee__no_buttons_and_403(world) -> None:
    w = world("reg", "reg_in", "bureau", "teacher", "reg_near")
    student = w.student()
    reg = w.login("reg")
    app = application_id(reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    task = w.open_tasks(app)[0].id
    assert 'id="wf-decide"' in w.login("reg_in").get(f"/wf/a/{app}").text
    for username in ("reg", "bureau", "teacher"):  # may see it (applicant, the record's readers) but not decide
        person = reg if username == "reg" else w.login(username)
        page = person.get(f"/wf/a/{app}")
        assert page.status_code == 200 and 'id="wf-decide"' not in page.text, username
        assert person.decide(app, "approve", task=task).status_code == 403, username
    near = w.login("reg_near")
    assert near.get(f"/wf/a/{app}").status_code == 404
    assert near.decide(app, "approve", task=task).status_code == 403
    assert near.post(f"/wf/a/{app}/withdraw").status_code == 403
    assert statuses(w, app) == ("pending", "receiving_school")


def test_decide__unknown_or_missing_decision__422(world) -> None:
    w = world("reg", "reg_in")
    reg, reg_in = w.login("reg"), w.login("reg_in")
    app = application_id(reg.start("transfer", w.student(), transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    assert reg_in.post(f"/wf/a/{app}/decide").status_code == 422
    assert reg_in.decide(app, "delete").status_code == 422
    assert statuses(w, app) == ("pending", "receiving_school")


def test_bureau_of_the_first_step_cannot_act_early(world) -> None:
    """A later step's assignee is a member of no task yet: 403, and no buttons."""
    w = world("reg", "reg_in", "bureau")
    reg, bureau = w.login("reg"), w.login("bureau")
    app = application_id(reg.start("transfer", w.student(), transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    assert bureau.decide(app, "approve", task=w.open_tasks(app)[0].id).status_code == 403


def test_csrf_required(world) -> None:
    w = world("reg", "reg_in")
    reg, reg_in = w.login("reg"), w.login("reg_in")
    app = application_id(reg.start("transfer", w.student(), transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    forged = reg_in.client.post(f"/wf/a/{app}/decide", data={"task": str(w.open_tasks(app)[0].id), "decision": "approve"})
    assert forged.status_code == 403 and statuses(w, app) == ("pending", "receiving_school")


def test_suspend_resume_withdraw_graduate__status_changes(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    reg, bureau = w.login("reg"), w.login("bureau")
    app = application_id(reg.start("suspend", student, {"reason": "因病", "reason_detail": "住院", "start_date": "2026-03-01",
                                                        "end_date": "2026-09-01"}, proof()))
    assert bureau.decide(app, "approve").status_code == 303
    assert w.record(student).data["status"] == "休学"
    assert "办理复学" in reg.get(f"/f/student/{student}").text and "办理转学" not in reg.get(f"/f/student/{student}").text
    app = application_id(reg.start("resume", student, {"resume_date": "2026-09-01"}, proof()))
    bureau.decide(app, "approve")
    assert w.record(student).data["status"] == "在读"
    w.evaluation(student)
    app = application_id(reg.start("graduate", student, {"graduation_date": "2026-06-30", "destination": "升学",
                                                         "school_name": "示范大学"}))
    bureau.decide(app, "approve")
    assert w.record(student).data["status"] == "毕业"
    other = w.student("李四", "110105200805120034")
    app = application_id(reg.start("withdraw", other, {"reason": "出国", "leave_date": "2026-03-01"}, proof()))
    needs_comment = bureau.decide(app, "approve", comment="")  # this step declares require_comment
    assert needs_comment.status_code == 422 and MESSAGES["wf_comment_required"].format(action="同意") in needs_comment.text
    bureau.decide(app, "approve", comment="同意退学")
    assert w.record(other).data["status"] == "退学"


def test_graduate__destination_details_required(world) -> None:
    w = world("reg")
    reg = w.login("reg")
    refused = reg.start("graduate", w.student(), {"graduation_date": "2026-06-30", "destination": "就业"})
    assert refused.status_code == 422 and "就业单位为必填项" in refused.text


def test_decision_attachment__stored_and_readable_by_viewers_only(world) -> None:
    w = world("reg", "bureau", "reg_near")
    reg, bureau = w.login("reg"), w.login("bureau")
    app = application_id(reg.start("suspend", w.student(), {"reason": "因病", "reason_detail": "住院", "start_date": "2026-03-01",
                                                            "end_date": "2026-09-01"}, proof()))
    bureau.decide(app, "approve", files={"attachment": ("批复.pdf", b"%PDF approve", "application/pdf")})
    with w.state.db.read() as s:
        approval = s.scalar(select(ApplicationAction).where(ApplicationAction.action == "approve"))
    link = f"/wf/files/{approval.attachment['id']}"
    assert link in reg.get(f"/wf/a/{app}").text
    assert reg.get(link).content == b"%PDF approve"
    proof_link = f"/wf/files/{w.application(app).data['proof']['id']}"
    assert bureau.get(proof_link).status_code == 200
    assert w.login("reg_near").get(proof_link).status_code == 404
    assert reg.get(f"/files/{w.application(app).data['proof']['id']}").status_code == 404  # not a record attachment


def test_lists__filter_and_paginate(world) -> None:
    w = world("reg", "bureau")
    reg, bureau = w.login("reg"), w.login("bureau")
    data = {"reason": "因病", "reason_detail": "住院", "start_date": "2026-03-01", "end_date": "2026-09-01"}
    apps = []
    for index in range(21):
        first17 = f"11010520080512{index:02d}1"  # odd 17th digit: 男
        student = w.student(f"学生{'甲乙丙丁戊己庚辛壬癸'[index % 10]}{'一二三'[index // 10]}", valid_id_number(first17))
        apps.append(application_id(reg.start("suspend", student, data, proof())))
    assert f">{21}</span>" in bureau.get("/").text
    todo = bureau.get("/wf/todo").text
    assert "共 21 条" in todo and "第 1 / 2 页" in todo and todo.count('<tr>\n      <td><a href="/wf/a/') == 20
    assert bureau.get("/wf/todo?page=2").text.count('<tr>\n      <td><a href="/wf/a/') == 1
    bureau.decide(apps[0], "approve")
    bureau.decide(apps[1], "reject", comment="材料不全")
    assert "共 2 条" in bureau.get("/wf/done").text
    assert "共 1 条" in bureau.get("/wf/done?status=rejected").text
    assert "共 0 条" in bureau.get("/wf/done?workflow=transfer").text
    assert "共 19 条" in bureau.get("/wf/todo").text
    mine = reg.get("/wf/mine?status=pending").text
    assert "共 19 条" in mine and "教育局审批" in mine
    assert "共 21 条" in reg.get("/wf/mine?workflow=suspend").text


def test_lists__require_login(world) -> None:
    w = world("reg")
    client = w.login("reg").client
    client.cookies.clear()
    assert client.get("/wf/todo", follow_redirects=False).status_code == 303


def test_start_from_the_workflow_page(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    reg = w.login("reg")
    hub = reg.get("/wf/new").text
    assert 'href="/wf/new/suspend"' in hub and 'href="/wf/new/transfer"' in hub
    page = reg.get("/wf/new/suspend?q=张三").text
    assert f'href="/wf/new/suspend/start?record={student}"' in page
    assert "办理休学" in reg.get(f"/wf/new/suspend/start?record={student}").text


def test_record_page_lists_its_applications(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    reg = w.login("reg")
    app = application_id(reg.start("suspend", student, {"reason": "因病", "reason_detail": "住院", "start_date": "2026-03-01",
                                                        "end_date": "2026-09-01"}, proof()))
    page = reg.get(f"/f/student/{student}").text
    assert 'id="wf-panel"' in page and f'href="/wf/a/{app}"' in page and "审批中" in page
    w.login("bureau").decide(app, "approve")
    assert "已通过" in reg.get(f"/f/student/{student}").text

