"""Returned applications (issue 15 item 17), the lists' unit column (item 18) and application pages of records out
of reach (issue 14 item 10)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.support import DEFINITIONS, OTHER_DISTRICT_CLASS, OTHER_SCHOOL_CLASS, unit_id, valid_student
from tests.workflows.support import PDF, application_id, proof, transfer_form

TRANSFER_PEOPLE = ("reg", "reg_in", "bureau", "bureau_in")
SUSPEND = {"reason": "因病", "reason_detail": "住院治疗", "start_date": "2026-09-01", "end_date": "2027-02-01"}


def returned_at_the_bureaus(w) -> tuple[int, object, object]:
    student = w.student()
    reg, reg_in, bureau = w.login("reg"), w.login("reg_in"), w.login("bureau")
    app = application_id(reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    assert reg_in.decide(app, "approve", comment="同意接收").status_code == 303
    assert bureau.decide(app, "return", comment="请补充户籍证明原件扫描件").status_code == 303
    return app, reg, reg_in


def test_returned__badge_reason_on_top_and_resume_at_the_returning_step(world) -> None:
    w = world(*TRANSFER_PEOPLE)
    app, reg, reg_in = returned_at_the_bureaus(w)
    assert '<span class="badge" id="nav-count-wf_mine">1</span>' in reg.get("/").text
    mine = reg.get("/wf/mine").text
    row = mine.split(f'href="/wf/a/{app}"')[0].rsplit("<tr", 1)[1]
    assert 'class="returned"' in row and "待修改" in mine
    page = reg.get(f"/wf/a/{app}").text
    top = page.split('id="wf-target"')[0]
    assert 'id="wf-returned"' in top and "请补充户籍证明原件扫描件" in top and "将从“教育局审批”继续审批" in top
    resent = reg.post(f"/wf/a/{app}/edit", {**transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS))}, {"proof": PDF})
    assert resent.status_code == 303
    row_ = w.application(app)
    assert (row_.status, row_.step, row_.round) == ("pending", "bureaus", 2)
    assert sorted(t.unit_name for t in w.open_tasks(app)) == ["滨江区教育局", "示范区教育局"]
    assert "没有待办事项" in reg_in.get("/wf/todo").text  # the receiving school is not asked again
    assert 'id="nav-count-wf_mine"' not in reg.get("/").text


def test_mine__returned_first_with_the_reason(world) -> None:
    """我的申请 lists a returned application above newer ones, with the reason it came back; once resubmitted it
    takes its place by date again and the reason goes."""
    w = world(*TRANSFER_PEOPLE)
    app, reg, _ = returned_at_the_bureaus(w)
    later = application_id(reg.start("suspend", w.student(name="李四", id_card="110105200805120034"), SUSPEND,
                                     {"proof": PDF}))
    mine = reg.get("/wf/mine").text
    rows = re.findall(r'<tr( class="returned")?>\s*<td><a href="/wf/a/(\d+)">', mine)
    assert [(int(number), bool(returned)) for returned, number in rows] == [(app, True), (later, False)]
    assert "退回原因：请补充户籍证明原件扫描件" in mine.split(f'href="/wf/a/{later}"')[0]
    assert reg.post(f"/wf/a/{app}/edit", transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS))).status_code == 303
    mine = reg.get("/wf/mine").text
    assert [int(n) for n in re.findall(r'<td><a href="/wf/a/(\d+)">#', mine)] == [later, app]
    assert "退回原因" not in mine


def test_returned__on_return_restart_starts_over(world, tmp_path: Path) -> None:
    root = shutil.copytree(DEFINITIONS, tmp_path / "definitions")
    path = root / "workflows" / "transfer.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("form: student\n", "form: student\non_return: restart\n"),
                    encoding="utf-8")
    w = world(*TRANSFER_PEOPLE, definitions=root)
    app, reg, _ = returned_at_the_bureaus(w)
    assert "将从第一步重新审批" in reg.get(f"/wf/a/{app}").text
    assert reg.post(f"/wf/a/{app}/edit", transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS))).status_code == 303
    assert w.application(app).step == "receiving_school"


def test_bureau_lists__school_column_and_filter(world) -> None:
    w = world("reg", "reg_near", "bureau")
    ours = w.student()
    form = w.state.definitions.forms["student"]
    theirs = w.state.records.create(form, w.principal("reg_near"), unit_id(w.state, OTHER_SCHOOL_CLASS),
                                    valid_student(name="李四", id_card="110105200805120034")).record_id
    reg, near, bureau = w.login("reg"), w.login("reg_near"), w.login("bureau")
    first = application_id(reg.start("suspend", ours, SUSPEND, {"proof": PDF}))
    second = application_id(near.start("suspend", theirs, SUSPEND, {"proof": PDF}))
    todo = bureau.get("/wf/todo").text
    assert "<th>学校</th>" in todo
    cells = dict(re.findall(r'href="/wf/a/(\d+)">[^#][^<]*</a></td>\s*<td class="wf-unit">([^<]*)</td>', todo))
    assert cells == {str(first): "示范区第一中学", str(second): "示范区实验小学"}
    school = unit_id(w.state, "示范区教育局/示范区实验小学")
    filtered = bureau.get(f"/wf/todo?unit={school}").text
    assert f'href="/wf/a/{second}"' in filtered and f'href="/wf/a/{first}"' not in filtered
    assert bureau.decide(first, "approve", comment="同意").status_code == 303
    done = bureau.get(f"/wf/done?unit={school}").text
    assert f'href="/wf/a/{first}"' not in done and "没有符合条件的申请" in done
    assert f'href="/wf/a/{first}"' in bureau.get("/wf/done").text


def test_roles_that_cannot_apply__no_mine(world) -> None:
    w = world("reg", "bureau")
    bureau, reg = w.login("bureau"), w.login("reg")
    for url in ("/", "/wf/todo", "/wf/done"):
        assert 'href="/wf/mine"' not in bureau.get(url).text, url
    assert 'href="/wf/mine"' in reg.get("/wf/new").text


def test_application_page__record_out_of_reach_shows_it_as_decided(world) -> None:
    w = world(*TRANSFER_PEOPLE)
    student = w.student()
    reg, reg_in, bureau, bureau_in = (w.login(u) for u in TRANSFER_PEOPLE)
    app = application_id(reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    for person in (reg_in, bureau, bureau_in):
        assert person.decide(app, "approve", comment="同意").status_code == 303
    form = w.state.definitions.forms["student"]
    changed = w.state.records.update(form, w.principal("reg_in"), student, {"name": "张新名"}, w.record(student).revision)
    assert changed.ok, changed.issues
    sending = reg.get(f"/wf/a/{app}").text
    target = sending.split('id="wf-target"')[1].split("</section>")[0]
    assert 'id="wf-snapshot"' in target and "张三" in target and "张新名" not in sending
    assert "滨江中学" in target  # the unit as decided: the receiving class
    receiving = reg_in.get(f"/wf/a/{app}").text.split('id="wf-target"')[1].split("</section>")[0]
    assert "张新名" in receiving and 'id="wf-snapshot"' not in receiving


def test_history__a_move_reads_as_unit_names(world) -> None:
    w = world(*TRANSFER_PEOPLE)
    student = w.student()
    reg, reg_in, bureau, bureau_in = (w.login(u) for u in TRANSFER_PEOPLE)
    app = application_id(reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    for person in (reg_in, bureau, bureau_in):
        assert person.decide(app, "approve", comment="同意").status_code == 303
    history = reg_in.get(f"/f/student/{student}/history").text
    assert "示范区教育局/示范区第一中学/高一/高一(1)班" in history and "滨江区教育局/滨江中学/高一/高一(1)班" in history


def test_moves__both_schools_list_a_transfer_for_their_part(world) -> None:
    """学籍异动 (issue 15 item 16): the sending school keeps its transfers out, the receiving school lists them in."""
    w = world(*TRANSFER_PEOPLE, "reg_b")
    student = w.student()
    reg, reg_in, bureau, bureau_in = (w.login(u) for u in TRANSFER_PEOPLE)
    app = application_id(reg.start("transfer", student, transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    assert f'id="move-{app}"' not in reg.get("/wf/moves").text  # not yet approved
    for person in (reg_in, bureau, bureau_in):
        assert person.decide(app, "approve", comment="同意").status_code == 303
    colleague = w.login("reg_b")  # the sending school's other registrar, who took no part
    assert colleague.get(f"/f/student/{student}").status_code == 404
    out = colleague.get("/wf/moves").text
    row = out.split(f'id="move-{app}"')[1].split("</tr>")[0]
    assert "转学（转出）" in row and "张三" in row
    assert "示范区教育局/示范区第一中学/高一/高一(1)班" in row and "滨江区教育局/滨江中学/高一/高一(1)班" in row
    assert 'href="/wf/moves"' in colleague.get("/").text
    page = colleague.get(f"/wf/a/{app}")
    assert page.status_code == 200 and 'id="wf-snapshot"' in page.text
    incoming = reg_in.get("/wf/moves").text.split(f'id="move-{app}"')[1].split("</tr>")[0]
    assert "转学（转入）" in incoming
    assert f'id="move-{app}"' not in reg_in.get("/wf/moves?side=out").text
    assert f'id="move-{app}"' in colleague.get("/wf/moves?side=out").text
    assert f'id="move-{app}"' not in colleague.get("/wf/moves?side=in").text
