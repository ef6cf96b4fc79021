"""Issue 15 item 13: an option deleted from the definition never silently clears a stored value.

The edit form keeps the old value, marked, and saving refuses it with a message naming it until a current
option is chosen; an import that does not touch the column and the validator agree."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
from litestar.testing import TestClient

from engine.issues import Issue
from engine.messages import render
from engine.permissions import Principal
from tests.engine.helpers import ORG, add_member, principal_of, sign_in, write_definitions
from tests.excel.helpers import errors_of, preview, xlsx
from tests.support import build, unit_id
from web.state import AppState

PUPIL = """
key: pupil
title: 学生
unit: {level: class}
natural_key: [code]
sections:
  - key: main
    title: 主要
    fields:
      - {key: code, label: 编号, type: text, required: true}
      - {key: health, label: 健康状况, type: choice, options: [健康, 良好, 一般]}
      - {key: sports, label: 运动, type: multi_choice, options: [篮球, 足球, 排球]}
"""
ADMIN = "key: admin\nname: 管理员\nscope: all\nadmin: true\nforms:\n  '*':\n    actions: [create, read, update, import]\n"
UNITS = ORG + "demo_units:\n  - name: 区\n    level: district\n    children:\n      - name: 学校\n        level: school\n" \
              "        children:\n          - {name: 一班, level: class}\n"
CLASS = "区/学校/一班"


@pytest.fixture
def world(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[AppState, TestClient, str, int]]:
    """A pupil saved with 健康状况 一般 and 运动 排球, then both options deleted from the definition."""
    root = write_definitions(tmp_path / "definitions", forms={"pupil": PUPIL}, roles={"admin": ADMIN}, org=UNITS)
    app, state = build(fresh_db_url, definitions=root, tmp=tmp_path)
    add_member(state, "keeper", "admin", CLASS)
    with TestClient(app=app, base_url="http://testserver.local") as client:
        csrf = sign_in(client, state, "keeper")
        response = client.post("/f/pupil/new", follow_redirects=False, data={
            "_csrf": csrf, "_unit": str(unit_id(state, CLASS)), "code": "A1", "health": "一般", "sports": ["篮球", "排球"]})
        assert response.status_code == 303, response.text[:2000]
        record_id = int(response.headers["location"].rsplit("/", 1)[1])
        yaml = root / "forms" / "pupil.yaml"
        yaml.write_text(yaml.read_text(encoding="utf-8").replace(", 一般]", "]").replace(", 排球]", "]"), encoding="utf-8")
        assert state.reload().ok
        yield state, client, csrf, record_id
    state.db.dispose()


def removed_text(value: str, label: str) -> str:
    return render(Issue("choice_removed", {"value": value}), label)


def edit_post(client: TestClient, csrf: str, record_id: int, page: str, **changes: object):
    """Post the edit form back as a browser would: every input with its shown value, then `changes`."""
    data: dict[str, object] = {"_csrf": csrf, "code": "A1"}
    data["_revision"] = re.search(r'name="_revision" value="(\d+)"', page)[1]  # type: ignore[index]
    data["_was.health"] = re.findall(r'name="_was\.health" value="([^"]*)"', page)
    data["_was.sports"] = re.findall(r'name="_was\.sports" value="([^"]*)"', page)
    data["health"] = re.search(r'<option value="([^"]*)" selected', page)[1]  # type: ignore[index]
    data["sports"] = re.findall(r'name="sports" value="([^"]*)" checked', page)
    data.update(changes)
    return client.post(f"/f/pupil/{record_id}/edit", data=data, follow_redirects=False)


def test_edit_page__keeps_removed_value_selected_and_says_why(world) -> None:
    _state, client, _csrf, record_id = world
    page = client.get(f"/f/pupil/{record_id}/edit").text
    assert '<option value="一般" selected>一般（已不在选项中）</option>' in page
    assert 'value="排球" checked> 排球（已不在选项中）' in page
    assert removed_text("一般", "健康状况") in page and removed_text("排球", "运动") in page


def test_save_unchanged__refused_naming_the_old_value(world) -> None:
    state, client, csrf, record_id = world
    response = edit_post(client, csrf, record_id, client.get(f"/f/pupil/{record_id}/edit").text)
    assert response.status_code == 422
    assert removed_text("一般", "健康状况") in response.text and removed_text("排球", "运动") in response.text
    record = state.records.get(state.definitions.forms["pupil"], record_id, _principal(state))
    assert (record.data["health"], record.data["sports"]) == ("一般", ["篮球", "排球"])


def test_save_with_current_choices__saved(world) -> None:
    state, client, csrf, record_id = world
    page = client.get(f"/f/pupil/{record_id}/edit").text
    response = edit_post(client, csrf, record_id, page, health="良好", sports=["篮球"])
    assert response.status_code == 303, response.text[:2000]
    record = state.records.get(state.definitions.forms["pupil"], record_id, _principal(state))
    assert (record.data["health"], record.data["sports"]) == ("良好", ["篮球"])


def test_import_without_the_column__refused_naming_the_old_value(world) -> None:
    state, _client, _csrf, _record_id = world
    job = preview(state, "keeper", xlsx([["一班", "A1"]], ["所属单位", "编号"], title="学生"), mode="update", form="pupil")
    assert job.count_invalid == 1
    assert errors_of(state, job)[2] == [removed_text("一般", "健康状况"), removed_text("排球", "运动")]


def _principal(state: AppState) -> Principal:
    return principal_of(state, "keeper")
