"""htmx inline checks on application forms: the record form's check, answered from the same validation as submitting."""
from __future__ import annotations

import re

from engine.issues import Issue
from engine.validation import clean_record
from tests.support import OTHER_DISTRICT_CLASS, unit_id
from tests.workflows.support import application_id, proof, transfer_form
from web.presenter import issue_text

HTMX = {"HX-Request": "true"}


def check(person, url: str, data: dict[str, str]) -> object:
    return person.client.post(url, data=data, headers={**HTMX, "X-CSRF-Token": person.csrf})


def block(html: str, key: str) -> str:
    """The re-rendered field `key` (an out-of-band swap) in a check's answer."""
    found = [part for part in html.split('<div class="field')[1:] if f'id="f-{key}"' in part.split(">", 1)[0]]
    assert len(found) == 1, html
    return found[0]


def test_start_form__fields_carry_their_check(world) -> None:
    w = world("reg")
    student = w.student()
    page = w.login("reg").get(f"/wf/new/graduate/start?record={student}").text
    assert f'hx-post="/wf/new/graduate/check?record={student}&amp;field=destination"' in page
    # 升入学校 depends on 毕业去向: switched off until it is chosen, then re-rendered by the check.
    assert re.search(r'class="field cond-off" id="f-school_name"', page)


def test_check__dependents_rerendered(world) -> None:
    w = world("reg")
    student = w.student()
    reg = w.login("reg")
    answer = check(reg, f"/wf/new/graduate/check?record={student}&field=destination",
                   {"graduation_date": "2026-06-30", "destination": "就业", "employer": "", "school_name": "", "detail": ""})
    assert answer.status_code == 200
    assert '<div class="errors" id="err-destination" aria-live="polite"></div>' in answer.text
    employer = block(answer.text, "employer")
    assert 'hx-swap-oob="true"' in employer and "cond-off" not in employer and 'class="req"' in employer
    assert "cond-off" in block(answer.text, "school_name")


def test_check__rule_message_of_the_validator(world) -> None:
    w = world("reg")
    student = w.student()
    reg = w.login("reg")
    typed = {"reason": "因病", "reason_detail": "住院", "start_date": "2026-03-01", "end_date": "2026-02-01"}
    answer = check(reg, f"/wf/new/suspend/check?record={student}&field=end_date", typed)
    spec = w.state.definitions.workflows["suspend"]
    expected = [issue_text(spec.application, i) for i in clean_record(spec.application, typed).issues if i.path == "end_date"]
    assert answer.status_code == 200 and expected
    assert all(message in answer.text for message in expected)
    # The field's own conversion problems come from the same validator too.
    bad_date = check(reg, f"/wf/new/suspend/check?record={student}&field=start_date", {**typed, "start_date": "2026-13-45"})
    assert 'id="err-start_date"' in bad_date.text and '<p class="error">' in bad_date.text


def test_check__change_request_under_the_target_forms_rules(world) -> None:
    w = world("reg")
    student = w.student()
    reg = w.login("reg")
    page = reg.get(f"/wf/new/change_info/start?record={student}").text
    assert f'hx-post="/wf/new/change_info/check?record={student}&amp;field=birth_date"' in page
    # The ID number says 2008-05-12: a proposed birth date that disagrees fails the student form's own rule.
    answer = check(reg, f"/wf/new/change_info/check?record={student}&field=birth_date",
                   {"name": "张三", "id_card": "110105200805120018", "birth_date": "2008-05-13", "ethnicity": "01", "reason": ""})
    rule = next(r for r in w.state.definitions.forms["student"].rules if r.key == "id_card_birth_matches")
    assert answer.status_code == 200 and rule.message in answer.text


def test_check__applicants_edit_page(world) -> None:
    w = world("reg", "reg_b", "reg_in")
    reg, reg_b, reg_in = w.login("reg"), w.login("reg_b"), w.login("reg_in")
    app = application_id(reg.start("transfer", w.student(), transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    url = f"/wf/a/{app}/check?field=transfer_date"
    assert check(reg, url, {"transfer_date": "2026-09-01"}).status_code == 409  # being approved: nothing to edit
    assert reg_in.decide(app, "return", comment="请补充").status_code == 303
    assert f'hx-post="/wf/a/{app}/check?field=reason"' in reg.get(f"/wf/a/{app}/edit").text
    answer = check(reg, url, {"reason": "搬家", "transfer_date": "明天"})
    assert answer.status_code == 200 and '<p class="error">' in answer.text
    assert check(reg_b, url, {"transfer_date": "2026-09-01"}).status_code == 403  # not the applicant
    assert check(reg, "/wf/a/987654/check?field=reason", {}).status_code == 404


def test_check__refusals(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    reg, bureau = w.login("reg"), w.login("bureau")
    assert check(bureau, f"/wf/new/suspend/check?record={student}&field=reason", {}).status_code == 403  # not a start role
    assert check(reg, f"/wf/new/suspend/check?record={student}&field=nonsense", {}).status_code == 404
    assert check(reg, "/wf/new/suspend/check?field=reason", {}).status_code == 400  # no record to start on
    forged = reg.client.post(f"/wf/new/suspend/check?record={student}&field=reason", data={"reason": "因病"}, headers=HTMX)
    assert forged.status_code == 403  # no CSRF token


def test_check__required_message(world) -> None:
    w = world("reg")
    student = w.student()
    answer = check(w.login("reg"), f"/wf/new/suspend/check?record={student}&field=reason_detail", {"reason_detail": ""})
    spec = w.state.definitions.workflows["suspend"]
    assert issue_text(spec.application, Issue("required", path="reason_detail")) in answer.text


def test_check__file_field_sends_the_file(world) -> None:
    w = world("reg")
    student = w.student()
    reg = w.login("reg")
    page = reg.get(f"/wf/new/suspend/start?record={student}").text
    assert re.search(r'id="f-proof"[^>]*hx-encoding="multipart/form-data"', page)
    url = f"/wf/new/suspend/check?record={student}&field=proof"
    chosen = reg.client.post(url, data={"reason": "因病"}, files=proof(), headers={**HTMX, "X-CSRF-Token": reg.csrf})
    assert chosen.status_code == 200 and '<div class="errors" id="err-proof" aria-live="polite"></div>' in chosen.text
    wrong = reg.client.post(url, data={"reason": "因病"}, files={"proof": ("a.exe", b"MZ", "application/octet-stream")},
                            headers={**HTMX, "X-CSRF-Token": reg.csrf})
    assert wrong.status_code == 200 and '<p class="error">' in wrong.text
