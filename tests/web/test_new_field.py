"""A new field without code: two lines of YAML, a restart, and every page, check and list knows the field."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from engine.issues import Issue
from engine.messages import render
from tests.engine.helpers import BACKENDS, add_member, database_url, sign_in, student_values
from tests.support import CLASS_1, SCHOOL, build, copy_definitions, unit_id
from web.state import AppState

NEW_FIELDS = """\
      - key: hobby
        label: 爱好
        type: text
        required: true
        max_length: 50
      - key: hobby_detail
        label: 爱好说明
        type: text
        visible_if: "hobby == '其他'"
        required_if: "hobby == '其他'"
"""


@dataclass
class World:
    app: Litestar
    state: AppState
    old_id: int  # saved before the fields existed


@pytest.fixture(scope="module", params=BACKENDS, ids=["sqlite", "pg"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("new_field")
    definitions = copy_definitions(tmp / "definitions")
    with database_url(request.param, tmp) as url:
        old_app, old_state = build(url, definitions=definitions, tmp=tmp)
        add_member(old_state, "reg", "registrar", SCHOOL)
        with TestClient(app=old_app, base_url="http://testserver.local") as client:
            csrf = sign_in(client, old_state, "reg")
            response = client.post("/f/student/new", follow_redirects=False,
                                   data={"_csrf": csrf, "_unit": str(unit_id(old_state, CLASS_1)), **student_values(801, name="老学生")})
            assert response.status_code == 303, response.text[:2000]
            old_id = int(response.headers["location"].rsplit("/", 1)[1])
        old_state.db.dispose()

        student_yaml = definitions / "forms" / "student.yaml"
        text = student_yaml.read_text(encoding="utf-8")
        assert text.count("\nrules:") == 1  # the last section's fields end right before the rules
        student_yaml.write_text(text.replace("\nrules:", "\n" + NEW_FIELDS + "\nrules:"), encoding="utf-8")

        app, state = build(url, definitions=definitions, tmp=tmp)
        yield World(app, state, old_id)
        state.db.dispose()


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(app=world.app, base_url="http://testserver.local") as test_client:
        yield test_client


def required_text(world: World, key: str) -> str:
    return render(Issue("required", path=key), world.state.definitions.forms["student"].fields[key].label)


def field_block(html: str, key: str) -> str:
    match = re.search(rf'<div class="field[^"]*" id="f-{key}".*?</label>', html, re.S)
    assert match, key
    return match[0]


def post_new(client: TestClient, world: World, csrf: str, serial: int, **values: str):
    data = {"_csrf": csrf, "_unit": str(unit_id(world.state, CLASS_1)), **student_values(serial), **values}
    return client.post("/f/student/new", data=data, follow_redirects=False)


def test_new_fields__compiled(world: World) -> None:
    form = world.state.definitions.forms["student"]
    assert form.fields["hobby"].required and form.fields["hobby_detail"].visible_if.source == "hobby == '其他'"
    assert form.dependents("hobby") == ("hobby_detail",)


def test_form_page__renders_both_with_required_mark(world: World, client: TestClient) -> None:
    sign_in(client, world.state, "reg")
    page = client.get("/f/student/new").text
    hobby, detail = field_block(page, "hobby"), field_block(page, "hobby_detail")
    assert '<span class="req" aria-hidden="true">*</span>爱好' in hobby
    assert "爱好说明" in detail and 'class="req"' not in detail
    assert "cond-off" in detail  # switched off until 爱好 is 其他
    assert 'name="hobby"' in page and 'name="hobby_detail"' in page


def test_post_without_hobby__required(world: World, client: TestClient) -> None:
    csrf = sign_in(client, world.state, "reg")
    response = post_new(client, world, csrf, 803)
    assert response.status_code == 422
    assert required_text(world, "hobby") in response.text
    assert required_text(world, "hobby_detail") not in response.text


def test_post_other_without_detail__required(world: World, client: TestClient) -> None:
    csrf = sign_in(client, world.state, "reg")
    response = post_new(client, world, csrf, 805, hobby="其他")
    assert response.status_code == 422
    assert required_text(world, "hobby_detail") in response.text
    assert required_text(world, "hobby") not in response.text


def test_post_valid__saved_and_shown(world: World, client: TestClient) -> None:
    csrf = sign_in(client, world.state, "reg")
    response = post_new(client, world, csrf, 807, hobby="其他", hobby_detail="古琴")
    assert response.status_code == 303, response.text[:2000]
    view = client.get(response.headers["location"]).text
    assert re.search(r'id="v-hobby">.*?其他', view, re.S) and re.search(r'id="v-hobby_detail">.*?古琴', view, re.S)
    history = client.get(response.headers["location"] + "/history").text
    assert "<td>爱好</td><td></td><td>其他</td>" in history
    assert "<td>爱好说明</td><td></td><td>古琴</td>" in history


def test_post_detail_while_hidden__not_saved(world: World, client: TestClient) -> None:
    csrf = sign_in(client, world.state, "reg")
    response = post_new(client, world, csrf, 809, hobby="篮球", hobby_detail="不该保存")
    assert response.status_code == 303
    assert "不该保存" not in client.get(response.headers["location"]).text


def test_old_record__opens_with_missing_field_marked(world: World, client: TestClient) -> None:
    sign_in(client, world.state, "reg")
    page = client.get(f"/f/student/{world.old_id}")
    assert page.status_code == 200
    assert "老学生" in page.text
    assert "信息不完整" in page.text
    marked = re.search(r'<div class="has-error"><dt><span class="req">\*</span>爱好</dt>.*?</dd>', page.text, re.S)
    assert marked and required_text(world, "hobby") in marked[0]


def test_old_record__edit_page_shows_what_is_missing(world: World, client: TestClient) -> None:
    sign_in(client, world.state, "reg")
    page = client.get(f"/f/student/{world.old_id}/edit")
    assert page.status_code == 200
    assert required_text(world, "hobby") in page.text


def test_old_record__listed_and_in_incomplete_filter(world: World, client: TestClient) -> None:
    sign_in(client, world.state, "reg")
    assert "老学生" in client.get("/f/student/").text
    incomplete = client.get("/f/student/?incomplete=1").text
    assert "老学生" in incomplete
    assert f'href="/f/student/{world.old_id}"' in incomplete


def test_inline_check__dependent_rerendered_out_of_band(world: World, client: TestClient) -> None:
    csrf = sign_in(client, world.state, "reg")
    response = client.post("/f/student/check?field=hobby", data={"hobby": "其他"},
                           headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    assert response.status_code == 200
    block = re.search(r'<div class="field[^"]*" id="f-hobby_detail"[^>]*>.*?</label>', response.text, re.S)
    assert block, response.text
    assert 'hx-swap-oob="true"' in block[0] and "cond-off" not in block[0]
    assert '<span class="req" aria-hidden="true">*</span>爱好说明' in block[0]


def test_inline_check__dependent_switched_off_again(world: World, client: TestClient) -> None:
    csrf = sign_in(client, world.state, "reg")
    response = client.post("/f/student/check?field=hobby", data={"hobby": "篮球"},
                           headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    block = re.search(r'<div class="field[^"]*" id="f-hobby_detail"[^>]*>', response.text)
    assert block and "cond-off" in block[0]


def test_inline_check__field_message(world: World, client: TestClient) -> None:
    csrf = sign_in(client, world.state, "reg")
    response = client.post("/f/student/check?field=hobby", data={"hobby": "琴" * 51},
                           headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    form = world.state.definitions.forms["student"]
    assert render(Issue("max_length", {"limit": 50}), form.fields["hobby"].label) in response.text
