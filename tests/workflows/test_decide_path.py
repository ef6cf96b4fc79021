"""The approve path: one write transaction for the decision, its effect and the audit entry;
the effect's record update looks up only the unique values it changes; refusals come before anything is shown;
a decision worked out before the write lock is worked out again when its record moved on meanwhile."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from engine.issues import Issue
from engine.messages import render
from engine.storage.db import LockBusy, no_lock_waits
from engine.storage.models import AuditEntry
from engine.workflows.errors import EffectFailed
from engine.workflows.service import WorkflowService
from tests.workflows.support import application_id, holding, proof
from web.workflows import DONE_MESSAGES

SUSPEND = {"reason": "因病", "reason_detail": "住院治疗", "start_date": "2026-03-01", "end_date": "2026-09-01"}
OTHER_ID = "110105200805120034"  # same birth date and gender as the default student's, another person


@contextmanager
def recording(world, name: str) -> Iterator[list]:
    """What the engine does meanwhile: `commit` events or executed statements."""
    seen: list = []

    def commit(_connection) -> None:
        seen.append("COMMIT")

    def execute(_connection, _cursor, statement, *_args) -> None:
        seen.append(statement)

    listener = commit if name == "commit" else execute
    engines = world.state.db.engines  # SQLite writes go through an engine of their own
    for engine in engines:
        event.listen(engine, name, listener)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, name, listener)


def _suspension_awaiting_bureau(world):  # type: ignore[no-untyped-def]
    """A student with a 休学 application waiting for the bureau: (world, student, bureau client, application id)."""
    w = world("reg", "bureau")
    student = w.student()
    reg, bureau = w.login("reg"), w.login("bureau")
    return w, student, bureau, application_id(reg.start("suspend", student, SUSPEND, proof()))


def test_approve__one_transaction_with_effect_and_audit__then_its_message_shown(world) -> None:
    w, student, bureau, app = _suspension_awaiting_bureau(world)
    with recording(w, "commit") as commits:
        done = bureau.decide(app, "approve")
    assert done.status_code == 303
    assert commits == ["COMMIT"]  # task, application, timeline, record and audit entry together
    assert w.record(student).data["status"] == "休学"
    with w.state.db.read() as s:
        entry = s.query(AuditEntry).filter_by(record_id=student, action="update").one()
    assert entry.changes["status"] == ["在读", "休学"] and f"#{app}" in entry.note
    page = bureau.get(done.headers["location"]).text
    assert f'<div class="flash" role="status">{DONE_MESSAGES["approve"]}</div>' in page


def test_effect__unique_lookups_only_for_changed_values(world) -> None:
    w, _student, bureau, app = _suspension_awaiting_bureau(world)
    with recording(w, "before_cursor_execute") as statements:
        assert bureau.decide(app, "approve").status_code == 303
    # 学籍状态 changes; 身份证号, 学号, 学籍号 (unique) do not, and their unique indexes already vouch for them.
    assert not [s for s in statements if "id_card" in s or "student_no" in s or "school_no" in s]


def test_effect__changed_unique_value_still_refused(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    w.student("李四", OTHER_ID)
    reg, bureau = w.login("reg"), w.login("bureau")
    change = {"name": "张三", "id_card": OTHER_ID, "birth_date": "2008-05-12", "ethnicity": "01", "reason": "登记错误"}
    app = application_id(reg.start("change_info", student, change, proof()))
    before = w.record(student)
    refused = bureau.decide(app, "approve")
    id_card = w.state.definitions.forms["student"].fields["id_card"]
    assert refused.status_code == 409 and render(Issue("unique", {"value": OTHER_ID}), id_card.label) in refused.text
    after = w.record(student)
    assert (after.revision, after.data) == (before.revision, before.data)
    assert w.application(app).status == "pending"  # nothing of the decision was kept either


def test_decide__non_assignee_refused_before_anything_else(world) -> None:
    w = world("reg", "head", "bureau")
    student = w.student()
    reg, head = w.login("reg"), w.login("head")
    app = application_id(reg.start("suspend", student, SUSPEND, proof()))
    task = w.open_tasks(app)[0].id
    # Neither an unknown action nor a bad attachment gets a non-assignee the application page: a plain 403.
    for data, files in (({"decision": "nonsense"}, None), ({"decision": "approve"}, {"attachment": ("x.exe", b"MZ", "x")})):
        refused = head.post(f"/wf/a/{app}/decide", {"task": str(task), **data}, files)
        assert refused.status_code == 403 and 'id="wf-data"' not in refused.text
    assert head.post("/wf/a/987654/decide", {"task": "1", "decision": "approve"}).status_code == 404
    assert w.application(app).status == "pending"


@pytest.mark.parametrize("fresh_db_url", ["sqlite"], indirect=True)  # where decisions are planned ahead
def test_a_save_between_plan_and_write__decision_worked_out_again_and_the_save_kept(world) -> None:
    """A decision worked out before the write lock (SQLite's way, `plan_ahead`) whose record someone saves before it
    writes: its guarded UPDATE finds a newer revision, so it is worked out again under the lock. The other save is
    kept (no lost update) and the effect lands on top of it, once."""
    w, student, _bureau, app = _suspension_awaiting_bureau(world)
    service = WorkflowService(w.state.db, w.state.records)
    form, reg = w.state.definitions.forms["student"], w.principal("reg")
    revision = w.record(student).revision
    planned: list[bool] = []
    plan = service._plan

    def plan_then_someone_saves(s, decision, lock):  # type: ignore[no-untyped-def]
        found = plan(s, decision, lock)
        planned.append(lock)
        if not lock:
            saved = w.state.records.update(form, reg, student, {"guardian_phone": "13900001111"}, revision)
            assert saved.ok, saved.issues
        return found

    service._plan = plan_then_someone_saves  # type: ignore[method-assign]
    decision = service.decision(w.state.definitions, w.principal("bureau"), app, w.open_tasks(app)[0].id, "approve")
    assert decision().status == "approved"
    assert planned == [False, True]
    record = w.record(student)
    assert record.data["status"] == "休学" and record.data["guardian_phone"] == "13900001111"
    assert record.revision == revision + 2
    with w.state.db.read() as s:
        updates = s.query(AuditEntry).filter_by(record_id=student, action="update").order_by(AuditEntry.id).all()
    assert [sorted(u.changes) for u in updates] == [["guardian_phone"], ["status"]]


@pytest.mark.parametrize("fresh_db_url", ["sqlite"], indirect=True)
def test_a_planned_decision_that_found_the_lock_busy_keeps_its_plan(world) -> None:
    """The WriteRunner calls a decision again after LockBusy: only the write is tried again, not the reading and
    routing."""
    w, student, _bureau, app = _suspension_awaiting_bureau(world)
    service = WorkflowService(w.state.db, w.state.records)
    planned: list[bool] = []
    plan = service._plan
    service._plan = lambda s, decision, lock: planned.append(lock) or plan(s, decision, lock)  # type: ignore[method-assign]
    decision = service.decision(w.state.definitions, w.principal("bureau"), app, w.open_tasks(app)[0].id, "approve")
    with holding(w, app):
        with pytest.raises(LockBusy), no_lock_waits():
            decision()
    with no_lock_waits():
        assert decision().status == "approved"
    assert planned == [False] and w.record(student).data["status"] == "休学"


@pytest.mark.parametrize("fresh_db_url", ["sqlite"], indirect=True)
def test_a_unique_value_taken_between_plan_and_write__refused_by_the_index_with_its_message(world) -> None:
    """The plan's early unique check found the new 身份证号 free; someone saves it on another student before the
    write. The unique index refuses the update, and the approver is told which value, not asked to retry."""
    w = world("reg", "bureau")
    student = w.student()
    reg = w.login("reg")
    change = {"name": "张三", "id_card": OTHER_ID, "birth_date": "2008-05-12", "ethnicity": "01", "reason": "登记错误"}
    app = application_id(reg.start("change_info", student, change, proof()))
    before = w.record(student)
    service = WorkflowService(w.state.db, w.state.records)
    plan = service._plan

    def plan_then_someone_takes_the_number(s, decision, lock):  # type: ignore[no-untyped-def]
        found = plan(s, decision, lock)
        if not lock:
            w.student("李四", OTHER_ID)
        return found

    service._plan = plan_then_someone_takes_the_number  # type: ignore[method-assign]
    task = w.login("bureau").task_on_page(app)
    decision = service.decision(w.state.definitions, w.principal("bureau"), app, task, "approve")
    with pytest.raises(EffectFailed) as refused:
        decision()
    id_card = w.state.definitions.forms["student"].fields["id_card"]
    assert render(Issue("unique", {"value": OTHER_ID}), id_card.label) in refused.value.message
    after = w.record(student)
    assert (after.revision, after.data) == (before.revision, before.data)
    assert w.application(app).status == "pending"
