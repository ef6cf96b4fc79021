"""Parent accounts (`scope: linked`): made in bulk from the students' guardian data with `dangan link-accounts`,
each parent reads only their own children's archives and the records that belong to them — SQLite and PostgreSQL."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from litestar.testing import TestClient
from openpyxl import load_workbook

from engine.linked_accounts import LinkedAccounts
from engine.permissions import is_masked, policy
from engine.records import ListQuery
from engine.refusals import NotPermitted
from tests.engine.helpers import add_member, principal_of, student_values
from tests.support import CLASS_1, CLASS_2, DEFINITIONS, SCHOOL, build, csrf_of, unit_id
from web.state import AppState

DANGAN = Path(sys.executable).parent / "dangan"


@pytest.fixture
def school(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[object, AppState, str, dict[str, int]]]:
    app, state = build(fresh_db_url, tmp=tmp_path)
    add_member(state, "reg", "registrar", SCHOOL)
    reg = principal_of(state, "reg")
    ids = {}
    for name, serial, phone, unit in (("甲", 401, "13900000001", CLASS_1), ("乙", 403, "13900000001", CLASS_2),
                                      ("丙", 405, "13900000002", CLASS_1)):
        made = state.records.create(state.definitions.forms["student"], reg, unit_id(state, unit),
                                    student_values(serial, name=f"学生{name}", guardian_phone=phone, guardian_name=f"家长{name}"))
        assert made.ok, made.issues
        ids[name] = made.record_id
    exam = state.records.create(state.definitions.forms["exam"], reg, unit_id(state, SCHOOL), {
        "name": "期中", "term": "2026-2027学年第一学期", "kind": "期中", "grade": "高一", "start_date": "2026-11-01"})
    for name in ids:
        assert state.records.create(state.definitions.forms["score"], reg, None, {"student": ids[name], "exam": exam.record_id, "math": "90"}).ok
    yield app, state, fresh_db_url, ids
    state.db.dispose()


def test_a_parent_reads_only_their_own_children(school) -> None:  # type: ignore[no-untyped-def]
    _app, state, _url, ids = school
    forms = state.definitions.forms
    made = LinkedAccounts(state.db, state.records).create(principal_of(state, "reg"), state.definitions, forms["student"], "parent",
                                                          "guardian_phone", "guardian_name")
    assert sorted((a.username, bool(a.password)) for a in made) == [("13900000001", False), ("13900000001", True), ("13900000002", True)]
    parent = principal_of(state, "13900000001")
    assert {r.id for r in state.records.list(forms["student"], parent, ListQuery()).records} == {ids["甲"], ids["乙"]}
    assert state.records.get(forms["student"], ids["丙"], parent) is None
    scores = state.records.list(forms["score"], parent, ListQuery()).records
    assert {r.values["student"] for r in scores} == {ids["甲"], ids["乙"]}
    assert is_masked(policy(parent, forms["student"]), forms["student"].fields["id_card"])  # shown masked to parents
    # Read-only: no create, no update.
    with pytest.raises(NotPermitted):
        state.records.create(forms["score"], parent, None, {"student": ids["甲"], "exam": "期中"})


def test_link_accounts_command_writes_a_printable_sheet_and_the_parent_signs_in(school, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app, state, url, ids = school
    out = tmp_path / "家长账号.xlsx"
    env = {**os.environ, "DANGAN_DATABASE_URL": url, "DANGAN_DEFINITIONS": str(DEFINITIONS), "DANGAN_VAR": str(tmp_path / "var")}
    done = subprocess.run([str(DANGAN), "link-accounts", "student", "--role", "parent", "--username-field", "guardian_phone",
                           "--name-field", "guardian_name", "--user", "reg", "-o", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "新建账号 2 个" in done.stdout
    rows = [[c.value for c in row] for row in load_workbook(io.BytesIO(out.read_bytes())).active.iter_rows(min_row=3)]
    passwords = {row[1]: row[3] for row in rows if row[3]}
    assert set(passwords) == {"13900000001", "13900000002"}
    again = subprocess.run([str(DANGAN), "link-accounts", "student", "--role", "registrar", "--username-field", "guardian_phone",
                            "--user", "reg", "-o", str(tmp_path / "x.xlsx")], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "scope: linked" in again.stderr
    with TestClient(app=app, base_url="http://testserver.local") as client:
        page = client.get("/login")
        signed = client.post("/login", data={"_csrf": csrf_of(page.text), "username": "13900000002",
                                             "password": passwords["13900000002"], "next": "/"}, follow_redirects=False)
        assert signed.status_code == 303 and signed.headers["location"] == "/password"  # first sign-in: change it
