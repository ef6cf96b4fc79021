"""A reload is a new definitions version whenever any byte of any definition file changed, and a change to a role
reaches every signed-in user at their next request, in every worker process (issue 14, item 1)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from engine.loader import load_definitions
from tests.browser_fixtures import DANGAN, REPO
from tests.support import (CLASS_1, DEFINITIONS, PASSWORD, add_user, build, client_for, copy_definitions, csrf_of,
                           login)
from tests.web.test_serving import TwoWorkers, two_workers  # noqa: F401 — the fixture

TEACHER = DEFINITIONS / "roles" / "teacher.yaml"
NEW_PASSWORD = "Kq7#vLm2xZr9"
NO_AWARDS = ("  award:\n    actions: [read]\n", "")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("name", ["roles/teacher.yaml", "options/grade.yaml", "workflows/transfer.yaml", "org.yaml",
                                  "forms/award.yaml"])
def test_version__a_comment_in_any_file_is_a_new_version(tmp_path: Path, name: str) -> None:
    directory = copy_definitions(tmp_path / "definitions")
    before = load_definitions(directory).version
    target = directory / name
    original = target.read_bytes()
    target.write_bytes(original + "# 只改了一行注释\n".encode())
    assert load_definitions(directory).version != before
    target.write_bytes(original)
    assert load_definitions(directory).version == before


def test_version__a_copy_has_the_same_version(tmp_path: Path) -> None:
    assert load_definitions(copy_definitions(tmp_path / "copy")).version == load_definitions(DEFINITIONS).version


def test_version__tightening_a_role_is_a_new_version(tmp_path: Path) -> None:
    directory = copy_definitions(tmp_path / "definitions")
    before = load_definitions(directory).version
    _edit(directory / "roles" / "teacher.yaml", "      - remarks\n", "      - remarks\n      - name\n")
    assert load_definitions(directory).version != before


def test_reload__a_role_change_reaches_a_signed_in_user_at_the_next_request(fresh_db_url: str, tmp_path: Path) -> None:
    directory = copy_definitions(tmp_path / "definitions")
    app, state = build(fresh_db_url, definitions=directory, tmp=tmp_path)
    add_user(state, "t1", "teacher", CLASS_1)
    try:
        for client in client_for(app):
            login(client, "t1")
            assert client.get("/f/award/").status_code == 200
            _edit(directory / "roles" / "teacher.yaml", *NO_AWARDS)
            assert state.reload().ok
            assert client.get("/f/award/").status_code == 403
            assert client.get("/f/student/").status_code == 200
    finally:
        state.db.dispose()


def _fresh_connection_get(base: str, path: str, cookies: dict[str, str]) -> httpx.Response:
    # A new connection each time: the parent hands connections to the workers in turn, so these reach both.
    with httpx.Client(base_url=base, cookies=cookies, timeout=10) as client:
        return client.get(path)


def test_reload__every_worker_answers_the_next_request_with_the_new_role(two_workers: TwoWorkers) -> None:  # noqa: F811
    created = subprocess.run([str(DANGAN), "create-user", "--username", "t1", "--role", "teacher", "--unit", CLASS_1,
                              "--password", PASSWORD], env=two_workers.env, cwd=REPO, capture_output=True, text=True,
                             timeout=60)
    assert created.returncode == 0, created.stderr
    with httpx.Client(base_url=two_workers.base, timeout=10) as client:
        page = client.get("/login")
        signed_in = client.post("/login", data={"_csrf": csrf_of(page.text), "username": "t1", "password": PASSWORD, "next": "/"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/password"  # a new account's first login
        changed = client.post("/password", data={"_csrf": csrf_of(client.get("/password").text), "current": PASSWORD,
                                                 "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert changed.status_code == 303, changed.text
        cookies = {"dangan_session": changed.cookies["dangan_session"]}  # a password change renews the session id
    assert {_fresh_connection_get(two_workers.base, "/f/award/", cookies).status_code for _ in range(6)} == {200}

    shutil.copy(TEACHER, two_workers.definitions / "roles" / "teacher.yaml")
    _edit(two_workers.definitions / "roles" / "teacher.yaml", *NO_AWARDS)
    port = two_workers.base.rsplit(":", 1)[1].strip("/")
    reload = subprocess.run([str(DANGAN), "reload", "--port", port], env=two_workers.env, cwd=REPO, capture_output=True, text=True,
                            timeout=90)
    assert reload.returncode == 0, reload.stdout + reload.stderr
    assert "已重新加载定义" in reload.stdout
    # No wait: the command answers once the server has the new set, and each worker takes it before its next request.
    assert {_fresh_connection_get(two_workers.base, "/f/award/", cookies).status_code for _ in range(6)} == {403}
    assert _fresh_connection_get(two_workers.base, "/f/student/", cookies).status_code == 200


def test_reload__units_added_to_org_yaml__named_in_a_warning(fresh_db_url: str, tmp_path: Path) -> None:
    """A unit added to org.yaml later is not created by reload; reload says so and names `dangan org-apply`."""
    directory = copy_definitions(tmp_path / "definitions")
    _app, state = build(fresh_db_url, definitions=directory, tmp=tmp_path)
    try:
        outcome = state.reload()
        assert outcome.ok and not [n for n in outcome.notes if "org.yaml" in n]
        _edit(directory / "org.yaml", "              - {name: 高一(2)班, level: class}\n",
              "              - {name: 高一(2)班, level: class}\n              - {name: 高一(9)班, level: class}\n")
        outcome = state.reload()
        assert outcome.ok
        (note,) = [n for n in outcome.notes if "org.yaml" in n]
        assert "新增 1 个" in note and "示范区教育局/示范区第一中学/高一/高一(9)班" in note and "dangan org-apply" in note
    finally:
        state.db.dispose()
