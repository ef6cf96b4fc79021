"""A definition change while applications are in flight: each keeps the workflow version it started with."""
from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select

from engine.storage.models import WorkflowVersion
from tests.support import DEFINITIONS, OTHER_DISTRICT_CLASS, unit_id
from tests.workflows.support import application_id, proof, transfer_form


def test_in_flight_application_keeps_its_version(world, tmp_path: Path) -> None:
    root = shutil.copytree(DEFINITIONS, tmp_path / "definitions")
    w = world("reg", "reg_in", "bureau", "bureau_in", definitions=root)
    reg, reg_in, bureau, bureau_in = (w.login(u) for u in ("reg", "reg_in", "bureau", "bureau_in"))
    target = unit_id(w.state, OTHER_DISTRICT_CLASS)
    old = application_id(reg.start("transfer", w.student(), transfer_form(target), proof()))

    # The receiving school's review is dropped from the definition, and a reload makes it live.
    path = root / "workflows" / "transfer.yaml"
    text = path.read_text(encoding="utf-8")
    start, end = text.index("  - key: receiving_school"), text.index("  - key: bureaus")
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    assert w.state.reload().ok
    assert [s.key for s in w.state.definitions.workflows["transfer"].steps] == ["bureaus"]

    new = application_id(reg.start("transfer", w.student("李四", "110105200805120034"), transfer_form(target), proof()))
    assert w.application(new).step == "bureaus"
    assert w.application(old).step == "receiving_school" and w.application(old).version != w.application(new).version
    page = reg_in.get(f"/wf/a/{old}").text
    assert "转入学校审核" in page and 'id="wf-decide"' in page
    assert reg_in.decide(old, "approve").status_code == 303
    assert w.application(old).step == "bureaus"  # routed by the old version's steps
    bureau.decide(old, "approve")
    bureau_in.decide(old, "approve")
    assert w.application(old).status == "approved" and w.record(w.application(old).record_id).unit_id == target
    with w.state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(WorkflowVersion)) == 2


def test_version_that_no_longer_compiles__409_with_the_reason(world, tmp_path: Path) -> None:
    root = shutil.copytree(DEFINITIONS, tmp_path / "definitions")
    w = world("reg", "bureau", definitions=root)
    reg, bureau = w.login("reg"), w.login("bureau")
    app = application_id(reg.start("suspend", w.student(), {"reason": "因病", "reason_detail": "住院", "start_date": "2026-03-01",
                                                            "end_date": "2026-09-01"}, proof()))
    # 休学 is no longer a 学籍状态, and the current suspend.yaml is changed to match; the stored version is not.
    options = root / "options" / "student_status.yaml"
    options.write_text(options.read_text(encoding="utf-8").replace("  - 休学\n", ""), encoding="utf-8")
    suspend = root / "workflows" / "suspend.yaml"
    suspend.write_text(suspend.read_text(encoding="utf-8").replace("set: {status: 休学}", "set: {status: 退学}"), encoding="utf-8")
    for dashboard in (root / "dashboards").glob("*.yaml"):  # the home dashboards count 休学 students too
        dashboard.write_text(dashboard.read_text(encoding="utf-8").replace("  - {label: 休学人数, form: student, filters: {status: 休学}}\n", ""),
                             encoding="utf-8")
    resume = root / "workflows" / "resume.yaml"
    resume.write_text(resume.read_text(encoding="utf-8").replace("record.status == '休学'", "record.status == '退学'"),
                      encoding="utf-8")
    outcome = w.state.reload()
    assert outcome.ok, outcome.errors
    page = bureau.get(f"/wf/a/{app}")
    assert page.status_code == 409 and "该申请使用的流程版本已无法按当前定义加载" in page.text and "休学" in page.text
    assert bureau.decide(app, "approve", task=w.open_tasks(app)[0].id).status_code == 409
    assert w.application(app).status == "pending"
