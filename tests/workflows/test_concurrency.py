"""Simultaneous decisions, as real concurrent requests and service calls in threads, on SQLite and PostgreSQL.

Exactly one decision on a step counts and the other gets a clear message; a parallel step completes once
when its last approval arrives; effects are never applied twice.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from sqlalchemy import func, select

from engine.storage.models import ApplicationAction, ApplicationTask, AuditEntry
from engine.workflows.errors import TaskClosed, WorkflowError
from engine.workflows.service import WorkflowService
from tests.support import OTHER_DISTRICT_CLASS, unit_id, valid_id_number
from tests.workflows.support import application_id, holding, proof, transfer_form


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released together; each result is a return value or the exception raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 — the test inspects it
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def count(w, model: Any, *where: Any) -> int:
    with w.state.db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_two_assignees_same_step__one_counts(world) -> None:
    w = world("reg", "reg_in", "reg_in2")
    reg, first, second = w.login("reg"), w.login("reg_in"), w.login("reg_in2")
    app = application_id(reg.start("transfer", w.student(), transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    task = w.open_tasks(app)[0].id
    responses = at_once(lambda: first.decide(app, "approve", task=task, comment="甲"),
                        lambda: second.decide(app, "reject", task=task, comment="乙"))
    codes = sorted(r.status_code for r in responses)
    assert codes == [303, 409], codes
    loser = next(r for r in responses if r.status_code == 409)
    assert "该步骤已由" in loser.text and "您的操作未生效" in loser.text
    assert count(w, ApplicationAction, ApplicationAction.application_id == app,
                 ApplicationAction.action.in_(("approve", "reject"))) == 1
    status = w.application(app).status
    assert (status, len(w.open_tasks(app))) in (("pending", 2), ("rejected", 0))


def test_parallel_step__last_approval_completes_once(world) -> None:
    w = world("reg", "reg_in", "bureau", "bureau_in")
    reg, reg_in, bureau, bureau_in = (w.login(u) for u in ("reg", "reg_in", "bureau", "bureau_in"))
    student = w.student()
    app = application_id(reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    reg_in.decide(app, "approve")
    ours, theirs = (next(t.id for t in w.open_tasks(app) if t.unit_name == name) for name in ("示范区教育局", "滨江区教育局"))
    revision = w.record(student).revision
    responses = at_once(lambda: bureau.decide(app, "approve", task=ours), lambda: bureau_in.decide(app, "approve", task=theirs))
    assert [r.status_code for r in responses] == [303, 303]
    assert w.application(app).status == "approved"
    assert count(w, ApplicationAction, ApplicationAction.application_id == app, ApplicationAction.action == "effects") == 1
    assert count(w, AuditEntry, AuditEntry.record_id == student, AuditEntry.action == "update") == 1
    assert w.record(student).revision == revision + 1


def test_many_racers__service_level(world) -> None:
    """Eight threads decide the same single-step applications at once, five times over: one winner each time."""
    w = world("reg", "bureau", "bureau_b")
    reg = w.login("reg")
    service = WorkflowService(w.state.db, w.state.records)
    deciders = [w.principal("bureau"), w.principal("bureau_b")] * 4
    data = {"reason": "因病", "reason_detail": "住院", "start_date": "2026-03-01", "end_date": "2026-09-01"}
    for round_no in range(5):
        student = w.student(f"学生{'甲乙丙丁戊'[round_no]}", valid_id_number(f"11010520080512{round_no:02d}1"))
        app = application_id(reg.start("suspend", student, data, proof()))
        task = w.open_tasks(app)[0].id
        revision = w.record(student).revision
        results = at_once(*(lambda p=p, i=i, app=app, task=task: service.decide(
                                w.state.definitions, p, app, task, "approve" if i % 2 else "reject", f"意见{i}")
                            for i, p in enumerate(deciders)))
        winners = [r for r in results if not isinstance(r, Exception)]
        losers = [r for r in results if isinstance(r, Exception)]
        assert len(winners) == 1, results
        assert all(isinstance(r, TaskClosed) for r in losers), [type(r) for r in losers]
        assert all(isinstance(r, WorkflowError) and "已由" in r.message for r in losers)
        approved = winners[0].status == "approved"
        assert w.record(student).data["status"] == ("休学" if approved else "在读")
        assert w.record(student).revision == revision + (1 if approved else 0)
        assert count(w, ApplicationTask, ApplicationTask.application_id == app, ApplicationTask.status == "open") == 0




@pytest.mark.parametrize("fresh_db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_decision_on_a_lock_another_transaction_holds_waits_off_the_event_loop(world) -> None:
    """A decision runs on the event loop and does not wait there for a lock (PostgreSQL: NOWAIT row locks; SQLite:
    no busy timeout): when another transaction holds it, the decision is redone in a thread that waits for it, and
    the loop goes on serving."""
    w = world("reg", "reg_in")
    reg, reg_in = w.login("reg"), w.login("reg_in")
    app = application_id(reg.start("transfer", w.student(), transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    task = w.open_tasks(app)[0].id
    decided: list[Any] = []
    # Every request of this client on one event loop, as in a server process (by default each request gets its own).
    with start_blocking_portal(backend="asyncio") as portal, holding(w, app) as let_go:
        reg_in.client.blocking_portal = portal
        decision = threading.Thread(target=lambda: decided.append(reg_in.decide(app, "approve", task=task)))
        decision.start()
        decision.join(timeout=1.0)
        assert decision.is_alive() and not decided, f"the decision did not wait for the held lock: {decided}"
        answered: list[int] = []
        other = threading.Thread(target=lambda: answered.append(reg_in.get("/healthz").status_code))
        other.start()
        other.join(timeout=5)
        assert answered == [200], "the event loop was blocked by the waiting decision"
        let_go()
        decision.join(timeout=30)
        del reg_in.client.blocking_portal
    assert [r.status_code for r in decided] == [303], decided and decided[0].text[:2000]
    assert count(w, ApplicationAction, ApplicationAction.application_id == app, ApplicationAction.action == "approve") == 1
