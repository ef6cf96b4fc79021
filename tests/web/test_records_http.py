"""Every record page over HTTP for a user who may use it: list, create, edit, delete, tables, files, checks."""
from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import event, func, select, update

from engine.fields.files import MB, human_size
from engine.issues import Issue
from engine.messages import render
from engine.spec import FormSpec
from engine.storage.projection import projection_of, reproject
from engine.storage.models import Record
from tests.engine.helpers import BACKENDS, add_member, database_url, png_bytes, principal_of, sign_in, student_values
from tests.support import CLASS_1, OTHER_DISTRICT_CLASS, OTHER_SCHOOL_CLASS, SCHOOL, build, unit_id
from web.state import AppState

LIST_SCHOOL = "示范区教育局/示范区实验小学"  # holds exactly the 25 list records
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXY"


@dataclass
class World:
    app: Litestar
    state: AppState
    list_ids: dict[str, int]  # name -> id of the 25 records in LIST_SCHOOL
    incomplete: str  # the name of the list record that lacks 家长姓名

    @property
    def form(self) -> FormSpec:
        return self.state.definitions.forms["student"]

    def message(self, key: str, issue: Issue) -> str:
        spec = self.form.fields[key]
        return render(issue, spec.label, spec.messages)


@pytest.fixture(scope="module", params=BACKENDS, ids=["sqlite", "pg"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("records_http")
    with database_url(request.param, tmp) as url:
        app, state = build(url, tmp=tmp)
        add_member(state, "reg", "registrar", SCHOOL)
        add_member(state, "lister", "registrar", LIST_SCHOOL)
        add_member(state, "far", "registrar", "滨江区教育局/滨江中学")
        lister, form = principal_of(state, "lister"), state.definitions.forms["student"]
        ids = {}
        for index, letter in enumerate(LETTERS):
            values = student_values(500 + index, dt.date(2010, 1, 1) + dt.timedelta(days=index), name=f"学生{letter}",
                                    enrol_year=str(2020 + index % 3))
            result = state.records.create(form, lister, unit_id(state, OTHER_SCHOOL_CLASS), values)
            assert result.ok, result.issues
            ids[values["name"]] = result.record_id
        with state.db.write() as s:
            # A record saved before 家长姓名 became required: it lacks the value.
            record = s.get(Record, ids["学生Q"])
            s.execute(update(Record).where(Record.id == record.id).values(data={**record.data, "guardian_name": None}))
            reproject(s.connection(), projection_of(form, state.db.dialect), [record.id])
            s.commit()
        yield World(app, state, ids, "学生Q")
        state.db.dispose()


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(app=world.app, base_url="http://testserver.local") as test_client:
        yield test_client


def as_user(client: TestClient, world: World, username: str = "reg") -> str:
    return sign_in(client, world.state, username)


def listed_names(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'<a href="/f/student/\d+">([^<]+)</a>', body)


def new_student(client: TestClient, world: World, csrf: str, serial: int, files: Any = None, **changes: str) -> Any:
    data = {"_csrf": csrf, "_unit": str(unit_id(world.state, CLASS_1)), **student_values(serial, **changes)}
    return client.post("/f/student/new", data=data, files=files, follow_redirects=False)


def record_count(world: World) -> int:
    with world.state.db.read() as s:
        return s.scalar(select(func.count()).select_from(Record))


# --- the list ------------------------------------------------------------------------------------

def test_list__first_page_holds_twenty(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    page = client.get("/f/student/")
    assert page.status_code == 200
    assert len(listed_names(page.text)) == 20
    assert "共 25 条" in page.text and "第 1 / 2 页" in page.text


def test_list__second_page_holds_the_rest(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    first, second = (listed_names(client.get(f"/f/student/?page={n}").text) for n in (1, 2))
    assert len(second) == 5 and "第 2 / 2 页" in client.get("/f/student/?page=2").text
    assert sorted(first + second) == sorted(world.list_ids)


def test_list__page_out_of_range_is_empty_not_error(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    for page in ("9", "abc", "-1"):
        assert client.get(f"/f/student/?page={page}").status_code == 200


def test_list__sort_by_column(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    ascending = listed_names(client.get("/f/student/?sort=name").text)
    descending = listed_names(client.get("/f/student/?sort=-name").text)
    assert ascending == [f"学生{c}" for c in LETTERS[:20]]
    assert descending == [f"学生{c}" for c in reversed(LETTERS)][:20]


def test_list__sort_link_toggles_direction(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    page = client.get("/f/student/?sort=name").text
    assert 'href="?sort=-name&amp;page=1"' in page


def test_list__filter(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    women = listed_names(client.get("/f/student/?gender=女").text)
    expected = [f"学生{c}" for i, c in enumerate(LETTERS) if (500 + i) % 2 == 0]
    assert sorted(women) == sorted(expected)


def test_list__filter_on_integer_field(world: World, client: TestClient) -> None:
    # The query string says "2021"; the stored JSON holds the number 2021.
    as_user(client, world, "lister")
    names = listed_names(client.get("/f/student/?enrol_year=2021").text)
    assert sorted(names) == sorted(f"学生{c}" for i, c in enumerate(LETTERS) if i % 3 == 1)


def test_list__filter_unreadable_value__nothing(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    page = client.get("/f/student/?enrol_year=二〇二一")
    assert page.status_code == 200 and listed_names(page.text) == []


def test_list__search(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    assert listed_names(client.get("/f/student/?q=学生C").text) == ["学生C"]


def test_list__search_by_generated_number(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    record = world.state.records.get(world.form, world.list_ids["学生D"], principal_of(world.state, "lister"))
    assert listed_names(client.get(f"/f/student/?q={record.values['student_no']}").text) == ["学生D"]


def test_list__incomplete_marked(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    page = client.get("/f/student/?sort=name&page=1").text
    row = page.split(f">{world.incomplete}</a>", 1)[1].split("</tr>", 1)[0]
    assert "待补充" in row


def test_list__incomplete_filter(world: World, client: TestClient) -> None:
    as_user(client, world, "lister")
    assert listed_names(client.get("/f/student/?incomplete=1").text) == [world.incomplete]


# --- create --------------------------------------------------------------------------------------

def test_new__form_page_with_unit_choice(world: World, client: TestClient) -> None:
    as_user(client, world)
    page = client.get("/f/student/new")
    assert page.status_code == 200
    assert 'name="_unit"' in page.text and "高一(1)班" in page.text and "滨江" not in page.text
    assert 'name="_csrf"' in page.text and 'name="id_card"' in page.text


def test_create__saved_with_flash(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = new_student(client, world, csrf, 601)
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert "保存成功" in page.text
    assert "保存成功" not in client.get(response.headers["location"]).text  # shown once


def test_flash__shown_by_a_page_that_writes_nothing(world: World, client: TestClient) -> None:
    """The message after an action travels in a cookie: showing it and clearing it take no database write."""
    response = new_student(client, world, as_user(client, world), 602)
    commits: list[str] = []
    listener = lambda _connection: commits.append("COMMIT")  # noqa: E731
    for engine in world.state.db.engines:
        event.listen(engine, "commit", listener)
    try:
        page = client.get(response.headers["location"])
    finally:
        for engine in world.state.db.engines:
            event.remove(engine, "commit", listener)
    assert "保存成功" in page.text and commits == []
    assert "dangan_flash=" in page.headers["set-cookie"] and "Max-Age=0" in page.headers["set-cookie"]


def test_flash__planted_or_left_from_another_session__not_shown(world: World, client: TestClient) -> None:
    response = new_student(client, world, as_user(client, world), 604)
    left = client.cookies["dangan_flash"]
    as_user(client, world)  # a new session (a new secret)
    client.cookies.set("dangan_flash", left)
    assert "保存成功" not in client.get(response.headers["location"]).text
    forged = base64.urlsafe_b64encode("请将密码发至 evil@example.com".encode()).decode()
    client.cookies.set("dangan_flash", f"{forged}.{'0' * 64}")
    assert "evil@example.com" not in client.get(response.headers["location"]).text


def test_create_invalid__422_keeps_values_and_shows_every_error(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    before = record_count(world)
    response = new_student(client, world, csrf, 603, name="欧阳", birth_date="2008-02-30", id_card="11010520080512001",
                           guardian_phone="", enrol_year="1999")
    assert response.status_code == 422
    expected = [
        world.message("birth_date", Issue("date")),
        world.message("id_card", Issue("id_card_length")),
        world.message("enrol_year", Issue("min_value", {"limit": "2000"})),
        world.message("guardian_phone", Issue("required")),
    ]
    for text in expected:
        assert text in response.text, text
    assert f"请修改以下 {len(expected)} 处问题后再保存" in response.text
    for name, value in (("name", "欧阳"), ("birth_date", "2008-02-30"), ("id_card", "11010520080512001"), ("enrol_year", "1999")):
        assert f'name="{name}" value="{value}"' in response.text, name
    assert record_count(world) == before


def test_create_without_unit__422_asks_for_it(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = client.post("/f/student/new", data={"_csrf": csrf, **student_values(605)}, follow_redirects=False)
    assert response.status_code == 422
    assert f"请选择{world.form.unit_label}" in response.text


def test_create_rule_issue__on_both_fields(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = new_student(client, world, csrf, 607, gender="女")
    message = next(r.message for r in world.form.rules if r.key == "id_card_gender_matches")
    assert response.status_code == 422
    for key in ("gender", "id_card"):
        errors = re.search(rf'<div class="errors" id="err-{key}"[^>]*>(.*?)</div>', response.text, re.S)[1]
        assert message in errors, key
    assert message in response.text.split('id="summary"', 1)[1].split("</ul>", 1)[0]


def test_create_without_csrf__refused(world: World, client: TestClient) -> None:
    as_user(client, world)
    before = record_count(world)
    response = client.post("/f/student/new", data={"_unit": str(unit_id(world.state, CLASS_1)), **student_values(609)},
                           follow_redirects=False)
    assert response.status_code == 403
    assert record_count(world) == before


# --- view, edit, history, delete ------------------------------------------------------------------------

def created(world: World, client: TestClient, csrf: str, serial: int, **changes: str) -> str:
    response = new_student(client, world, csrf, serial, **changes)
    assert response.status_code == 303, response.text[:2000]
    return response.headers["location"]


def test_view__shows_values(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    location = created(world, client, csrf, 611, native_place="浙江杭州")
    page = client.get(location)
    assert page.status_code == 200
    values = student_values(611)
    for text in (values["name"], values["id_card"], "G" + values["id_card"], "浙江杭州", "高一(1)班"):
        assert text in page.text


def test_edit__saved_and_in_history(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    location = created(world, client, csrf, 613)
    form_page = client.get(location + "/edit")
    assert form_page.status_code == 200 and 'name="_revision" value="1"' in form_page.text
    response = client.post(location + "/edit", data={"_csrf": csrf, "_revision": "1", **student_values(613, native_place="浙江宁波")},
                           follow_redirects=False)
    assert response.status_code == 303 and "保存成功" in client.get(location).text
    history = client.get(location + "/history").text
    assert "<td>籍贯</td><td></td><td>浙江宁波</td>" in history
    assert "创建" in history and "修改" in history


def test_delete__confirmation_then_post(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    location = created(world, client, csrf, 615)
    record_id = int(location.rsplit("/", 1)[1])
    confirm = client.get(location + "/delete")
    assert confirm.status_code == 200 and "确认删除" in confirm.text
    assert client.get(location).status_code == 200  # the confirmation page deletes nothing
    response = client.post(location + "/delete", data={"_csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/f/student/"
    assert "已删除" in client.get("/f/student/").text
    assert client.get(location).status_code == 404
    entry = world.state.records.history(world.form, record_id)[0]
    assert entry.action == "delete" and entry.changes["name"] == ["张三", None]


# --- table rows without saving ------------------------------------------------------------------------------

def test_table_add_row__rerenders_without_saving(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    before = record_count(world)
    response = client.post("/f/student/new", data={"_csrf": csrf, "_action": "add:family", **student_values(617)})
    assert response.status_code == 200
    assert 'name="family.0.relation"' in response.text and 'name="family.1.relation"' not in response.text
    assert f'name="name" value="{student_values(617)["name"]}"' in response.text
    assert record_count(world) == before


def test_table_remove_row__keeps_the_others(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    rows = {"family.0.relation": "父亲", "family.0.name": "张大山", "family.1.relation": "母亲", "family.1.name": "李小梅"}
    response = client.post("/f/student/new", data={"_csrf": csrf, "_action": "remove:family:0", **student_values(619), **rows})
    assert response.status_code == 200
    assert 'name="family.0.name" value="李小梅"' in response.text
    assert "张大山" not in response.text and 'name="family.1.name"' not in response.text


def test_table_rows__saved_on_save(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    rows = {"family.0.relation": "父亲", "family.0.name": "张大山", "family.0.phone": "13900001111"}
    location = created(world, client, csrf, 621, **rows)
    record = world.state.records.get(world.form, int(location.rsplit("/", 1)[1]), principal_of(world.state, "reg"))
    assert record.values["family"] == [{"relation": "父亲", "name": "张大山", "employer": None, "phone": "13900001111"}]


def test_table_cell_issue__labelled_with_row(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = new_student(client, world, csrf, 623, **{"family.0.relation": "父亲", "family.0.name": ""})
    assert response.status_code == 422
    assert render(Issue("required"), f"{world.form.fields['family'].label}第1行·姓名") in response.text


# --- files ----------------------------------------------------------------------------------------------

def test_photo_upload__stored_and_downloadable(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = new_student(client, world, csrf, 625, files={"photo": ("证件照.png", png_bytes(2, 2), "image/png")})
    assert response.status_code == 303, response.text[:2000]
    location = response.headers["location"]
    link = re.search(r'src="(/files/[0-9a-f]+)"', client.get(location).text)
    assert link
    download = client.get(link[1])
    assert download.status_code == 200
    assert download.content == png_bytes(2, 2)
    assert download.headers["content-type"].startswith("image/png")


def _kept(html: str) -> dict[str, str]:
    found = re.search(r'name="photo\._kept" value="([^"]+)"', html)
    assert found, "the chosen photo did not come back with the form"
    return {"photo._kept": found[1].replace("&#43;", "+").replace("&#x2B;", "+")}


def test_photo__kept_through_add_row_and_a_failed_save(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    photo = {"photo": ("证件照.png", png_bytes(3, 3), "image/png")}
    added = new_student(client, world, csrf, 633, files=photo, _action="add:family")
    assert added.status_code == 200 and "已选择：证件照.png" in added.text
    # A failed save: the photo still comes back, and a save after it keeps it.
    failed = new_student(client, world, csrf, 633, name="", **_kept(added.text))
    assert failed.status_code == 422 and "已选择：证件照.png" in failed.text
    saved = new_student(client, world, csrf, 633, **_kept(failed.text))
    assert saved.status_code == 303, saved.text[:2000]
    link = re.search(r'src="(/files/[0-9a-f]+)"', client.get(saved.headers["location"]).text)
    assert link and client.get(link[1]).content == png_bytes(3, 3)


def test_new_record__failed_save_still_shows_defaults(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    failed = new_student(client, world, csrf, 635, name="")
    assert failed.status_code == 422
    status = re.search(r'id="f-status".*?</div>', failed.text, re.S)
    assert status and "在读" in status[0], status[0] if status else failed.text[:3000]


def test_edit_page__marks_the_fields_that_go_to_review(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    created = new_student(client, world, csrf, 637)
    assert created.status_code == 303
    page = client.get(created.headers["location"] + "/edit").text
    marked = set(re.findall(r'id="review-([a-z_]+)"', page))
    protected = {k for w in world.state.definitions.workflows.values() if w.form == "student" for k in w.changes}
    assert marked and marked <= protected and {"name", "id_card"} <= marked
    assert 'id="review-' not in client.get("/f/student/new").text  # a new record is not reviewed


def test_duplicate_id_number__said_inline_once_and_linked(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    first = new_student(client, world, csrf, 639)
    assert first.status_code == 303
    taken = student_values(639)["id_card"]
    checked = client.post("/f/student/check?field=id_card", data={"_csrf": csrf, "id_card": taken})
    assert world.message("id_card", Issue("unique", {"value": taken})) in checked.text
    assert f'href="{first.headers["location"]}"' in checked.text
    again = new_student(client, world, csrf, 639)
    assert again.status_code == 422
    summary = again.text.split('id="summary"', 1)[1].split("</div>", 1)[0]
    assert summary.count("已被另一条记录使用") == 1  # 身份证号 only, not 学籍号 made from it as well
    assert f'href="{first.headers["location"]}"' in again.text


def test_duplicate_id_number__record_out_of_scope_not_linked(world: World, client: TestClient) -> None:
    mine = as_user(client, world)
    created = new_student(client, world, mine, 641)
    assert created.status_code == 303
    client.cookies.clear()
    far = as_user(client, world, "far")
    checked = client.post("/f/student/check?field=id_card", data={"_csrf": far, "id_card": student_values(641)["id_card"]})
    assert "已被另一条记录使用" in checked.text and "holder-id_card" not in checked.text


def test_photo_download__other_school_404(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = new_student(client, world, csrf, 627, files={"photo": ("证件照.png", png_bytes(), "image/png")})
    link = re.search(r'src="(/files/[0-9a-f]+)"', client.get(response.headers["location"]).text)[1]
    as_user(client, world, "far")
    assert client.get(link).status_code == 404
    assert client.get("/files/0123456789abcdef0123456789abcdef").status_code == 404


def test_photo_oversize__422_file_size(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    data = png_bytes() + b"\0" * (2 * MB)
    response = new_student(client, world, csrf, 629, files={"photo": ("大照片.png", data, "image/png")})
    assert response.status_code == 422
    assert world.message("photo", Issue("file_size", {"limit": human_size(2 * MB), "size": human_size(len(data))})) in response.text


def test_photo_renamed_exe__422_file_type(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = new_student(client, world, csrf, 631, files={"photo": ("照片.png", b"MZ\x90\x00\x03" + b"\0" * 64, "image/png")})
    assert response.status_code == 422
    allowed = "、".join(world.form.fields["photo"].kind.accept)
    assert world.message("photo", Issue("file_type", {"allowed": allowed})) in response.text


def test_photo_exe_extension__422_file_type(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = new_student(client, world, csrf, 633, files={"photo": ("setup.exe", b"MZ\x90\x00", "application/octet-stream")})
    assert response.status_code == 422
    allowed = "、".join(world.form.fields["photo"].kind.accept)
    assert world.message("photo", Issue("file_type", {"allowed": allowed})) in response.text


def test_malformed_multipart__400_chinese_page(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    before = record_count(world)
    response = client.post("/f/student/new", content=b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\n',
                           headers={"content-type": "multipart/form-data; boundary=xyz", "x-csrf-token": csrf})
    assert response.status_code == 400
    assert "请求格式不正确" in response.text and '<html lang="zh-CN">' in response.text
    assert record_count(world) == before


def test_error_page__logout_carries_csrf(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    page = client.get("/f/student/999999")
    assert page.status_code == 404
    assert f'name="_csrf" value="{csrf}"' in page.text


# --- inline check (htmx) ------------------------------------------------------------------------------------

def test_check__returns_field_message(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = client.post("/f/student/check?field=id_card", data={"id_card": "110105200805120017"},
                           headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    assert response.status_code == 200
    assert world.message("id_card", Issue("id_card_check", {"expected": "8"})) in response.text
    assert 'id="err-id_card"' in response.text and "<html" not in response.text


def test_check__valid_value_clears_message(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = client.post("/f/student/check?field=id_card", data={"id_card": student_values(635)["id_card"]},
                           headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    assert re.search(r'<div class="errors" id="err-id_card"[^>]*></div>', response.text)


def test_check__dependent_field_out_of_band(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = client.post("/f/student/check?field=health", data={"health": "残疾"},
                           headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    block = re.search(r'<div class="field[^"]*" id="f-disability_note"[^>]*>', response.text)
    assert block and 'hx-swap-oob="true"' in block[0] and "cond-off" not in block[0]


def test_check__unknown_field_404(world: World, client: TestClient) -> None:
    csrf = as_user(client, world)
    response = client.post("/f/student/check?field=nickname", data={}, headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    assert response.status_code == 404


def test_check__other_school_record_not_read(world: World, client: TestClient) -> None:
    """`?record=` names the record being edited; one out of scope is not used (nor disclosed)."""
    far = principal_of(world.state, "far")
    result = world.state.records.create(world.form, far, unit_id(world.state, OTHER_DISTRICT_CLASS), student_values(637))
    csrf = as_user(client, world)
    response = client.post(f"/f/student/check?field=gender&record={result.record_id}", data={"gender": "女"},
                           headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    assert response.status_code == 200
    assert student_values(637)["id_card"] not in response.text
