"""Exclusive workflows (`exclusive: <group>`): two status changes never run at once for one record (issue 15 item 15)."""
from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import DEFINITIONS
from tests.workflows.support import PDF, application_id

SUSPEND = {"reason": "因病", "reason_detail": "住院治疗", "start_date": "2026-09-01", "end_date": "2027-02-01"}
WITHDRAW = {"reason": "出国", "leave_date": "2026-09-01"}


def proof() -> dict:
    return {"proof": PDF}


def test_exclusive__second_status_workflow_refused_and_not_offered(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    reg = w.login("reg")
    assert 'href="/wf/new/withdraw/start?record=' in reg.get(f"/f/student/{student}").text
    suspend = application_id(reg.start("suspend", student, SUSPEND, proof()))
    page = reg.get(f"/f/student/{student}").text
    assert 'href="/wf/new/withdraw/start?record=' not in page and 'href="/wf/new/suspend/start?record=' not in page
    refused = reg.start("withdraw", student, WITHDRAW, proof())
    assert refused.status_code == 409
    assert f"已有一份进行中的“休学”申请（#{suspend}），它与“退学”不能同时办理" in refused.text
    assert reg.get(f"/wf/new/withdraw/start?record={student}").status_code == 409
    assert w.application(suspend).status == "pending"


def test_exclusive__decision_rechecks(world, tmp_path: Path) -> None:
    """Two applications already in flight when the group is declared (or raced past it): the first submitted is
    decided first, and the second's approval re-checks the record against its start condition."""
    root = shutil.copytree(DEFINITIONS, tmp_path / "definitions")
    for name in ("suspend", "withdraw"):
        path = root / "workflows" / f"{name}.yaml"
        path.write_text(path.read_text(encoding="utf-8").replace("exclusive: status", ""), encoding="utf-8")
    w = world("reg", "bureau", definitions=root)
    student = w.student()
    reg, bureau = w.login("reg"), w.login("bureau")
    withdraw = application_id(reg.start("withdraw", student, WITHDRAW, proof()))
    suspend = application_id(reg.start("suspend", student, SUSPEND, proof()))
    for name in ("suspend", "withdraw"):
        path = root / "workflows" / f"{name}.yaml"
        path.write_text(path.read_text(encoding="utf-8").replace("form: student\n", "form: student\nexclusive: status\n"),
                        encoding="utf-8")
    assert w.state.reload().ok
    early = bureau.decide(suspend, "approve", comment="同意")
    assert early.status_code == 409 and f"已有一份进行中的“退学”申请（#{withdraw}）" in early.text
    assert w.application(suspend).status == "pending" and w.record(student).data["status"] == "在读"
    assert bureau.decide(withdraw, "approve", comment="同意").status_code == 303
    assert w.record(student).data["status"] == "退学"
    late = bureau.decide(suspend, "approve", comment="同意")
    assert late.status_code == 409 and "记录已不再符合发起“休学”的条件" in late.text
    assert w.record(student).data["status"] == "退学"
    assert bureau.decide(suspend, "reject", comment="已退学").status_code == 303
