"""信息变更: edits of protected fields become a change request; only approval writes them (and the audit log)."""
from __future__ import annotations

import re

from sqlalchemy import select

from engine.messages import MESSAGES
from engine.storage.models import AuditEntry
from tests.support import valid_student
from tests.workflows.support import application_id, proof

NEW_ID = "110105200805120034"  # same birth date and gender as valid_student()'s, another person


def edit(person, student: int, revision: int, **changes: str) -> object:
    data = valid_student(**{"health": "健康或良好", **changes})  # everything the edit form posts
    if person.world.principal(person_name(person)).roles[0].key == "head_teacher":
        data.pop("id_card")  # read-only for head teachers: the edit form shows it as text, it is not posted
    return person.post(f"/f/student/{student}/edit", {"_revision": str(revision), **data})


def person_name(person) -> str:
    return re.search(r'<span title="[^"]*">([^（]+)（', person.get("/").text)[1]


def test_head_teacher_edit__protected_field_held_rest_saved(world) -> None:
    w = world("reg", "head")
    student = w.student()
    head = w.login("head")
    response = edit(head, student, 1, name="张叁", address="新街口1号")
    assert response.status_code == 303
    app = application_id(response)
    assert response.headers["location"] == f"/wf/a/{app}/edit"
    record = w.record(student)
    assert record.data["name"] == "张三" and record.data["address"] == "新街口1号"
    draft = w.application(app)
    assert (draft.status, draft.changes) == ("draft", {"name": ["张三", "张叁"]})
    assert "须经审核，未直接保存" in head.get(response.headers["location"]).text
    assert not w.open_tasks(app)


def test_change_request__review_diff_and_approval_writes(world) -> None:
    w = world("reg", "head")
    student = w.student()
    head, reg = w.login("head"), w.login("reg")
    app = application_id(edit(head, student, 1, name="张叁"))
    incomplete = head.post(f"/wf/a/{app}/edit", {"name": "张叁", "birth_date": "2008-05-12", "ethnicity": "01"})
    assert incomplete.status_code == 422 and "变更原因为必填项" in incomplete.text
    submitted = head.post(f"/wf/a/{app}/edit", {"name": "张叁", "birth_date": "2008-05-12", "ethnicity": "01",
                                                "reason": "户口簿姓名更正"}, proof())
    assert submitted.status_code == 303 and w.application(app).status == "pending"
    page = reg.get(f"/wf/a/{app}").text
    diff = page.split('id="wf-diff"')[1].split("</section>")[0]
    assert '<tr id="diff-name"><td>姓名</td><td class="old">张三</td><td class="new">张叁</td></tr>' in diff
    assert 'id="wf-decide"' in page
    assert reg.decide(app, "approve").status_code == 303
    assert w.record(student).data["name"] == "张叁"
    with w.state.db.read() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.record_id == student).order_by(AuditEntry.id.desc())).first()
    assert entry.changes == {"name": ["张三", "张叁"]} and entry.username == "reg" and f"#{app}" in entry.note


def test_change_request__rejected_writes_nothing(world) -> None:
    w = world("reg", "head")
    student = w.student()
    head, reg = w.login("head"), w.login("reg")
    app = application_id(edit(head, student, 1, name="张叁"))
    head.post(f"/wf/a/{app}/edit", {"name": "张叁", "birth_date": "2008-05-12", "ethnicity": "01", "reason": "更正"}, proof())
    before = w.record(student)
    assert reg.decide(app, "reject", comment="与户口簿不符").status_code == 303
    after = w.record(student)
    assert (after.revision, after.data) == (before.revision, before.data)
    with w.state.db.read() as s:
        assert len(s.scalars(select(AuditEntry).where(AuditEntry.record_id == student)).all()) == 1  # the creation only


def test_registrar_change__not_self_reviewed_and_masked_for_the_bureau(world) -> None:
    w = world("reg", "reg_b", "bureau")
    student = w.student()
    reg, reg_b, bureau = w.login("reg"), w.login("reg_b"), w.login("bureau")
    app = application_id(reg.start("change_info", student, {"name": "张三", "id_card": NEW_ID, "birth_date": "2008-05-12",
                                                            "ethnicity": "01", "reason": "身份证号登记错误"}, proof()))
    own = reg.get(f"/wf/a/{app}").text
    assert 'id="wf-decide"' not in own and "没有待办事项" in reg.get("/wf/todo").text
    refused = reg.decide(app, "approve", task=w.open_tasks(app)[0].id)
    assert refused.status_code == 403 and MESSAGES["wf_self_approval"] in refused.text
    masked = bureau.get(f"/wf/a/{app}").text.split('id="wf-diff"')[1].split("</section>")[0]
    assert '<td class="old">110105********0018</td><td class="new">110105********0034</td>' in masked
    full = reg_b.get(f"/wf/a/{app}").text.split('id="wf-diff"')[1].split("</section>")[0]
    assert '<td class="old">110105200805120018</td><td class="new">110105200805120034</td>' in full
    assert bureau.decide(app, "approve").status_code == 303  # any one reviewer suffices
    record = w.record(student)
    assert record.data["id_card"] == NEW_ID and record.data["student_no"] == "G110105200805120018"
    assert w.open_tasks(app) == []
    assert "身份证号已更新" in reg.get(f"/wf/a/{app}").text  # the timeline does not spell out sensitive values


def test_change_request__invalid_proposal_refused(world) -> None:
    w = world("reg")
    student = w.student()
    reg = w.login("reg")
    bad = edit(reg, student, 1, birth_date="2008-05-13")  # no longer matches the ID number
    assert bad.status_code == 422 and "身份证号中的出生日期与“出生日期”不一致" in bad.text
    assert w.record(student).data["birth_date"] == "2008-05-12"
    nothing = reg.start("change_info", student, {"name": "张三", "id_card": "110105200805120018", "birth_date": "2008-05-12",
                                                 "ethnicity": "01", "reason": "x"}, proof())
    assert nothing.status_code == 422 and "没有任何变更" in nothing.text


def test_change_request__one_at_a_time(world) -> None:
    w = world("head", "reg")
    student = w.student()
    head = w.login("head")
    app = application_id(edit(head, student, 1, name="张叁"))
    again = edit(head, student, 1, name="张仨")
    assert again.status_code == 422
    assert MESSAGES["wf_change_pending"].format(label="姓名", id=app) in again.text


def test_change_request__editor_without_start_role_refused(world) -> None:
    w = world("reg", "admin2")
    student = w.student()
    admin = w.login("admin2")
    refused = edit(admin, student, 1, name="张叁", address="新地址")
    assert refused.status_code == 422
    assert MESSAGES["wf_change_forbidden"].format(label="姓名", workflow="信息变更") in refused.text
    assert w.record(student).data["address"] is None  # nothing of the post was saved


def test_head_teacher_cannot_propose_read_only_fields(world) -> None:
    w = world("reg", "head")
    student = w.student()
    head = w.login("head")
    page = head.get(f"/wf/new/change_info/start?record={student}").text
    assert 'name="id_card"' not in page and 'name="name"' in page
    app = application_id(head.start("change_info", student, {"name": "张叁", "id_card": NEW_ID, "birth_date": "2008-05-12",
                                                             "ethnicity": "01", "reason": "更正"}, proof()))
    assert w.application(app).changes == {"name": ["张三", "张叁"]}  # the forged id_card was ignored
