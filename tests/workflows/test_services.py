"""The workflow rules called as services, without the web layer: change requests and exclusive groups refuse by
themselves (issue 13 §2, §6)."""
from __future__ import annotations

import pytest

from engine.fields.files import UploadedFile
from engine.workflows.changes import ChangeRequests
from engine.workflows.errors import ExclusiveOpen
from engine.workflows.service import WorkflowService
from tests.workflows.support import PDF

SUSPEND = {"reason": "因病", "reason_detail": "住院治疗", "start_date": "2026-09-01", "end_date": "2027-02-01"}


def test_change_requests__held_and_refused_by_the_service(world) -> None:
    w = world("reg", "bureau", "admin2")
    student = w.student()
    form = w.state.definitions.forms["student"]
    workflows = WorkflowService(w.state.db, w.state.records)
    requests = ChangeRequests(workflows)
    record = w.state.records.get(form, student, w.principal("reg"), "read")
    units = w.state.units()
    assert requests.hold(w.state.definitions, form, w.principal("reg"), record, {"address": "新街口1号"}, units) is None
    held = requests.hold(w.state.definitions, form, w.principal("reg"), record, {"name": "张叁"}, units)
    assert held is not None and held.keys == {"name"} and not held.issues and held.raw["name"] == "张叁"
    result = requests.submit_draft(w.state.definitions, held, w.principal("reg"), student)
    assert result.ok and workflows.open_application(held.spec, student) == result.application_id
    again = requests.hold(w.state.definitions, form, w.principal("reg"), record, {"name": "张仨"}, units)
    assert [i.code for i in again.issues] == ["wf_change_pending"]
    # A system administrator may edit the record but may not start a change request: the edit is refused.
    refused = requests.hold(w.state.definitions, form, w.principal("admin2"), record, {"name": "张仨"}, units)
    assert [i.code for i in refused.issues] == ["wf_change_forbidden"]


def test_exclusive__refused_by_the_service(world) -> None:
    w = world("reg")
    student = w.student()
    workflows = WorkflowService(w.state.db, w.state.records)
    defs = w.state.definitions
    proof = UploadedFile(PDF[0], PDF[2], PDF[1])
    first = workflows.start(defs, defs.workflows["suspend"], w.principal("reg"), student, {**SUSPEND, "proof": proof})
    assert first.ok, first.issues
    with pytest.raises(ExclusiveOpen) as caught:
        workflows.start(defs, defs.workflows["withdraw"], w.principal("reg"), student,
                        {"reason": "出国", "leave_date": "2026-09-01", "proof": proof})
    assert caught.value.params["id"] == first.application_id
