"""The approve path: one write transaction for the decision, its effect and the audit entry;
the effect's record update looks up only the unique values it changes; refusals come before anything is shown."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from engine.issues import Issue
from engine.messages import render
from engine.storage.models import AuditEntry
from tests.workflows.support import application_id, proof
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
