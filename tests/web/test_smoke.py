"""The main path through the app on both databases: log in, create, read, update, conflict."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import CLASS_1, add_user, build, client_for, login, unit_id, valid_student


@pytest.fixture
def app_state(fresh_db_url: str, tmp_path: Path):
    app, state = build(fresh_db_url, tmp=tmp_path)
    add_user(state, "reg", "registrar", "示范区教育局/示范区第一中学")
    yield app, state
    state.db.dispose()


def test_create_view_update__ok(app_state) -> None:
    app, state = app_state
    for client in client_for(app):
        csrf = login(client, "reg")
        created = client.post("/f/student/new", data={"_csrf": csrf, "_unit": str(unit_id(state, CLASS_1)), **valid_student()},
                              follow_redirects=False)
        assert created.status_code == 303, created.text[:2000]
        page = client.get(created.headers["location"])
        assert "保存成功" in page.text
        assert "G110105200805120018" in page.text
        updated = client.post(created.headers["location"] + "/edit",
                              data={"_csrf": csrf, "_revision": "1", **valid_student(address="北京市东城区一号")}, follow_redirects=False)
        assert updated.status_code == 303
        stale = client.post(created.headers["location"] + "/edit",
                            data={"_csrf": csrf, "_revision": "1", **valid_student(address="北京市西城区二号")}, follow_redirects=False)
        assert stale.status_code == 409
        assert "北京市东城区一号" in stale.text  # the change made meanwhile is shown
        assert "北京市西城区二号" in stale.text  # and what this user typed is kept
