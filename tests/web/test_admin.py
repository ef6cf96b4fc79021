"""The administrator's pages on both databases: org units, users, locks, sessions, definition reloads."""
from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from httpx import Response
from litestar.testing import TestClient
from sqlalchemy import select

from engine import throttle
from engine.throttle import ACCOUNT
from engine.org import unit_by_path
from engine.storage.models import Session, User, utcnow
from tests.support import (CLASS_1, CLASS_2, DISTRICT, PASSWORD, SCHOOL, add_user, build, client_for, copy_definitions, csrf_of,
                           login, unit_id, valid_student)
from web.state import AppState

GRADE_1 = "示范区教育局/示范区第一中学/高一"


@pytest.fixture
def admin_app(fresh_db_url: str, tmp_path: Path):
    app, state = build(fresh_db_url, tmp=tmp_path)
    add_user(state, "root", "sysadmin", DISTRICT)
    add_user(state, "reg", "registrar", SCHOOL)
    yield app, state
    state.db.dispose()


def _user_id(state: AppState, username: str) -> int:
    with state.db.read() as s:
        return s.scalar(select(User.id).where(User.username == username))


def _user(state: AppState, username: str) -> User:
    with state.db.read() as s:
        return s.scalar(select(User).where(User.username == username))


def _try_login(client: TestClient, username: str, password: str) -> Response:
    csrf = csrf_of(client.get("/login").text)
    return client.post("/login", data={"_csrf": csrf, "username": username, "password": password, "next": "/"},
                       follow_redirects=False)


def _shown_password(page: str) -> str:
    match = re.search(r'id="one-time-password">([^<]+)<', page)
    assert match, "no one-time password on the page"
    return html.unescape(match[1])


def _routes(state: AppState) -> tuple[list[str], list[str]]:
    unit, user = unit_id(state, CLASS_1), _user_id(state, "root")
    gets = ["/admin/", "/admin/units", "/admin/units/levels?parent=1", f"/admin/units/{unit}", "/admin/users",
            "/admin/users/new", f"/admin/users/{user}"]
    posts = ["/admin/reload", "/admin/units", f"/admin/units/{unit}/rename", f"/admin/units/{unit}/delete", "/admin/users/new",
             f"/admin/users/{user}", f"/admin/users/{user}/reset-password", f"/admin/users/{user}/unlock"]
    return gets, posts


def test_every_route__non_admin_forbidden(admin_app) -> None:
    app, state = admin_app
    gets, posts = _routes(state)
    before = _user(state, "root").password_hash
    for client in client_for(app):
        csrf = login(client, "reg")
        for url in gets:
            assert client.get(url).status_code == 403, url
        for url in posts:
            response = client.post(url, data={"_csrf": csrf, "name": "改名", "parent": "", "level": "district"},
                                   follow_redirects=False)
            assert response.status_code == 403, url
            assert "只有系统管理员可以进行此操作" in response.text
        assert "系统管理" not in client.get("/").text
    with state.db.read() as s:
        assert unit_by_path(s, CLASS_1) is not None
        assert unit_by_path(s, "改名") is None
    assert _user(state, "root").password_hash == before


def test_every_route__admin_ok(admin_app) -> None:
    app, state = admin_app
    gets, _posts = _routes(state)
    for client in client_for(app):
        login(client, "root")
        for url in gets:
            assert client.get(url).status_code == 200, url


def test_post_without_csrf__forbidden(admin_app) -> None:
    app, state = admin_app
    for client in client_for(app):
        login(client, "root")
        response = client.post("/admin/units", data={"parent": str(unit_id(state, GRADE_1)), "level": "class", "name": "高一(3)班"},
                               follow_redirects=False)
        assert response.status_code == 403
        assert client.post("/admin/reload", data={}, follow_redirects=False).status_code == 403
    with state.db.read() as s:
        assert unit_by_path(s, GRADE_1 + "/高一(3)班") is None


def test_create_unit__appears_with_path(admin_app) -> None:
    app, state = admin_app
    grade = unit_id(state, GRADE_1)
    for client in client_for(app):
        csrf = login(client, "root")
        created = client.post("/admin/units", data={"_csrf": csrf, "parent": str(grade), "level": "class", "name": "高一(3)班"},
                              follow_redirects=False)
        assert created.status_code == 303
        tree = client.get("/admin/units").text
        assert "已添加单位“高一(3)班”" in tree
        assert f"<td class=\"muted\">{GRADE_1}/高一(3)班</td>" in tree
        assert f"{GRADE_1}/高一(3)班</option>" in client.get("/f/student/new").text  # the cached tree was refreshed
    with state.db.read() as s:
        unit = unit_by_path(s, GRADE_1 + "/高一(3)班")
        parent = unit_by_path(s, GRADE_1)
        assert unit is not None and parent is not None
        assert (unit.level, unit.parent_id, unit.path) == ("class", parent.id, f"{parent.path}{unit.id}/")


def test_create_unit__level_must_follow_parent(admin_app) -> None:
    app, state = admin_app
    for client in client_for(app):
        csrf = login(client, "root")
        refused = client.post("/admin/units", data={"_csrf": csrf, "parent": str(unit_id(state, GRADE_1)), "level": "school",
                                                    "name": "错层级"})
        assert refused.status_code == 422
        assert "“高一”（年级）下只能添加“班级”一级的单位" in refused.text
        assert 'value="错层级"' in refused.text
        top = client.post("/admin/units", data={"_csrf": csrf, "parent": "", "level": "school", "name": "顶层学校"})
        assert top.status_code == 422
        assert "最上一级只能添加“教育局/区县”一级的单位" in top.text
        leaf = client.post("/admin/units", data={"_csrf": csrf, "parent": str(unit_id(state, CLASS_1)), "level": "class",
                                                 "name": "小组"})
        assert leaf.status_code == 422
        assert "是最低一级，不能再添加下级单位" in leaf.text
        options = client.get(f"/admin/units/levels?parent={unit_id(state, GRADE_1)}").text
        assert 'value="class"' in options and 'value="grade"' not in options
    with state.db.read() as s:
        assert unit_by_path(s, GRADE_1 + "/错层级") is None
        assert unit_by_path(s, "顶层学校") is None


def test_rename_unit__ok_and_duplicate_refused(admin_app) -> None:
    app, state = admin_app
    class_1 = unit_id(state, CLASS_1)
    for client in client_for(app):
        csrf = login(client, "root")
        duplicate = client.post(f"/admin/units/{class_1}/rename", data={"_csrf": csrf, "name": "高一(2)班"})
        assert duplicate.status_code == 422
        assert "同一上级下已有名为“高一(2)班”的单位" in duplicate.text
        renamed = client.post(f"/admin/units/{class_1}/rename", data={"_csrf": csrf, "name": "高一(1)班（实验）"},
                              follow_redirects=False)
        assert renamed.status_code == 303
        assert f"{GRADE_1}/高一(1)班（实验）" in client.get(f"/admin/units/{class_1}").text
    with state.db.read() as s:
        assert unit_by_path(s, f"{GRADE_1}/高一(1)班（实验）").id == class_1


def test_delete_unit__refused_while_in_use(admin_app) -> None:
    app, state = admin_app
    for client in client_for(app):
        csrf = login(client, "root")
        record = client.post("/f/student/new", data={"_csrf": csrf, "_unit": str(unit_id(state, CLASS_1)), **valid_student()},
                             follow_redirects=False)
        assert record.status_code == 303
        cases = {CLASS_1: "1条档案记录", GRADE_1: "2个下级单位", DISTRICT: "2名用户"}  # the seeded admin and root
        for path, reason in cases.items():
            refused = client.post(f"/admin/units/{unit_id(state, path)}/delete", data={"_csrf": csrf})
            assert refused.status_code == 409, path
            assert "不能删除" in refused.text and reason in refused.text, path
    with state.db.read() as s:
        assert all(unit_by_path(s, path) is not None for path in cases)


def test_delete_unit__empty_leaf_ok(admin_app) -> None:
    app, state = admin_app
    for client in client_for(app):
        csrf = login(client, "root")
        client.post("/admin/units", data={"_csrf": csrf, "parent": str(unit_id(state, GRADE_1)), "level": "class", "name": "临时班"})
        leaf = unit_id(state, GRADE_1 + "/临时班")
        deleted = client.post(f"/admin/units/{leaf}/delete", data={"_csrf": csrf}, follow_redirects=False)
        assert deleted.status_code == 303
        assert "临时班" in client.get("/admin/units").text  # the flash names it once
        assert "临时班" not in client.get("/admin/units").text
        assert client.get(f"/admin/units/{leaf}").status_code == 404
    with state.db.read() as s:
        assert unit_by_path(s, GRADE_1 + "/临时班") is None


def test_user_form__units_are_checkboxes_not_a_ctrl_click_list(admin_app) -> None:
    app, state = admin_app
    for client in client_for(app):
        login(client, "root")
        page = client.get("/admin/users/new").text
    assert "multiple" not in page and "Ctrl" not in page
    assert f'type="checkbox" name="units" value="{unit_id(state, CLASS_1)}"' in page


def test_create_user__password_shown_once_and_change_forced(admin_app) -> None:
    app, state = admin_app
    for client in client_for(app):
        csrf = login(client, "root")
        created = client.post("/admin/users/new", data={
            "_csrf": csrf, "username": "wang", "display_name": "王老师", "roles": ["head_teacher", "teacher"],
            "units": [str(unit_id(state, CLASS_1)), str(unit_id(state, CLASS_2))], "password": "",
        })
        assert created.status_code == 200
        assert created.headers["cache-control"] == "no-store"
        assert "首次登录后必须修改密码" in created.text
        password = _shown_password(created.text)
        listing = client.get("/admin/users").text
        row = listing[listing.index('<a href="/admin/users/' + str(_user_id(state, "wang"))):]
        row = row[:row.index("</tr>")]
        assert "王老师" in row and "班主任、任课教师" in row
        assert CLASS_1 in row and CLASS_2 in row
        assert "正常" in row and "<td>是</td>" in row
        assert password not in listing
    for client in client_for(app):
        response = _try_login(client, "wang", password)
        assert response.status_code == 303 and response.headers["location"] == "/password"
        home = client.get("/", follow_redirects=False)
        assert home.status_code == 303 and home.headers["location"] == "/password"


def test_create_user__given_password_used(admin_app) -> None:
    app, state = admin_app
    for client in client_for(app):
        csrf = login(client, "root")
        created = client.post("/admin/users/new", data={"_csrf": csrf, "username": "li", "roles": "teacher",
                                                        "units": str(unit_id(state, CLASS_1)), "password": "Chalk&Board9"})
        assert _shown_password(created.text) == "Chalk&Board9"
    for client in client_for(app):
        assert _try_login(client, "li", "Chalk&Board9").headers["location"] == "/password"


def test_create_user__problems_shown_and_typed_values_kept(admin_app) -> None:
    app, state = admin_app
    class_1 = str(unit_id(state, CLASS_1))
    for client in client_for(app):
        csrf = login(client, "root")
        no_role = client.post("/admin/users/new", data={"_csrf": csrf, "username": "bad name!", "display_name": "王老师",
                                                       "units": class_1, "password": "short"})
        assert no_role.status_code == 422
        assert "用户名只能包含字母、数字、下划线、点和减号" in no_role.text and "请至少选择一个角色" in no_role.text
        assert 'value="王老师"' in no_role.text and 'value="bad name!"' in no_role.text
        assert f'name="units" value="{class_1}" checked>' in no_role.text
        unknown = client.post("/admin/users/new", data={"_csrf": csrf, "username": "zhao", "roles": ["teacher", "dean"],
                                                       "units": class_1})
        assert unknown.status_code == 422
        assert "未知的角色：dean" in unknown.text
        assert 'value="teacher" checked' in unknown.text
        weak = client.post("/admin/users/new", data={"_csrf": csrf, "username": "zhao", "roles": "teacher", "units": class_1,
                                                    "password": "abc"})
        assert weak.status_code == 422 and "密码至少8位" in weak.text
        taken = client.post("/admin/users/new", data={"_csrf": csrf, "username": "REG", "roles": "teacher", "units": class_1})
        assert taken.status_code == 422 and "用户名“REG”已存在" in taken.text
        no_unit = client.post("/admin/users/new", data={"_csrf": csrf, "username": "zhao", "roles": "teacher"})
        assert no_unit.status_code == 422 and "请至少选择一个所属单位" in no_unit.text
    with state.db.read() as s:
        assert s.scalar(select(User).where(User.username.in_(["zhao", "bad name!"]))) is None


def test_edit_user__roles_units_and_name_saved(admin_app) -> None:
    app, state = admin_app
    reg = _user_id(state, "reg")
    for user_client in client_for(app):
        login(user_client, "reg")
        assert "reg（学籍管理员）" in user_client.get("/").text
        for client in client_for(app):
            csrf = login(client, "root")
            saved = client.post(f"/admin/users/{reg}", data={"_csrf": csrf, "display_name": "钱老师", "roles": "head_teacher",
                                                             "units": str(unit_id(state, CLASS_1)), "active": "1"},
                                follow_redirects=False)
            assert saved.status_code == 303
            page = client.get(f"/admin/users/{reg}").text
            assert "已保存" in page and 'value="钱老师"' in page and 'value="head_teacher" checked' in page
            assert 'value="registrar" checked' not in page
        # The running session sees the new roles on its next request.
        assert "钱老师（班主任）" in user_client.get("/").text


def test_reset_password__new_password_works(admin_app) -> None:
    app, state = admin_app
    for client in client_for(app):
        csrf = login(client, "root")
        reset = client.post(f"/admin/users/{_user_id(state, 'reg')}/reset-password", data={"_csrf": csrf})
        assert reset.status_code == 200 and "密码已重置" in reset.text
        password = _shown_password(reset.text)
        assert password != PASSWORD
    for client in client_for(app):
        assert _try_login(client, "reg", PASSWORD).status_code == 401
        response = _try_login(client, "reg", password)
        assert response.status_code == 303 and response.headers["location"] == "/password"


def test_reset_password__signs_out_old_sessions(admin_app) -> None:
    app, state = admin_app
    for user_client in client_for(app):
        login(user_client, "reg")
        for admin in client_for(app):
            csrf = login(admin, "root")
            admin.post(f"/admin/users/{_user_id(state, 'reg')}/reset-password", data={"_csrf": csrf})
            assert admin.get("/admin/").status_code == 200
        assert user_client.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_unlock__delayed_user_can_log_in_again(admin_app) -> None:
    app, state = admin_app
    reg = _user_id(state, "reg")
    with state.db.write() as s:  # eight wrong passwords in a row: the next try waits half a minute
        for _ in range(ACCOUNT.free + 5):
            throttle.record_failure(s, throttle.account_key("reg"), ACCOUNT, utcnow())
        s.commit()
    for client in client_for(app):
        delayed = _try_login(client, "reg", PASSWORD)
        assert delayed.status_code == 401 and "登录尝试过于频繁" in delayed.text
    for admin in client_for(app):
        csrf = login(admin, "root")
        assert "登录受限" in admin.get("/admin/users").text
        assert "解除登录限制" in admin.get(f"/admin/users/{reg}").text
        unlocked = admin.post(f"/admin/users/{reg}/unlock", data={"_csrf": csrf}, follow_redirects=False)
        assert unlocked.status_code == 303
        page = admin.get(f"/admin/users/{reg}").text
        assert "已解除用户“reg”的登录限制" in page and "解除登录限制</button>" not in page
    for client in client_for(app):
        assert _try_login(client, "reg", PASSWORD).headers["location"] == "/"


def test_deactivate__user_logged_out_at_once(admin_app) -> None:
    app, state = admin_app
    reg = _user_id(state, "reg")
    for user_client in client_for(app):
        login(user_client, "reg")
        assert user_client.get("/", follow_redirects=False).status_code == 200
        for admin in client_for(app):
            csrf = login(admin, "root")
            saved = admin.post(f"/admin/users/{reg}", data={"_csrf": csrf, "display_name": "reg", "roles": "registrar",
                                                            "units": str(unit_id(state, SCHOOL))}, follow_redirects=False)
            assert saved.status_code == 303
            assert "已停用" in admin.get("/admin/users").text
        with state.db.read() as s:
            assert s.scalars(select(Session).where(Session.user_id == reg)).all() == []
        after = user_client.get("/", follow_redirects=False)
        assert after.status_code == 303 and after.headers["location"].startswith("/login")
        assert _try_login(user_client, "reg", PASSWORD).status_code == 401
    assert _user(state, "reg").is_active is False


def test_deactivate_self__refused(admin_app) -> None:
    app, state = admin_app
    root = _user_id(state, "root")
    for client in client_for(app):
        csrf = login(client, "root")
        refused = client.post(f"/admin/users/{root}", data={"_csrf": csrf, "display_name": "root", "roles": "sysadmin",
                                                            "units": str(unit_id(state, DISTRICT))})
        assert refused.status_code == 422 and "不能停用自己的账号" in refused.text
        demoted = client.post(f"/admin/users/{root}", data={"_csrf": csrf, "display_name": "root", "roles": "teacher",
                                                            "units": str(unit_id(state, DISTRICT)), "active": "1"})
        assert demoted.status_code == 422 and "不能取消自己的系统管理员角色" in demoted.text
        assert client.get("/admin/").status_code == 200
    assert _user(state, "root").is_active is True


@pytest.fixture
def own_definitions_app(fresh_db_url: str, tmp_path: Path):
    definitions = copy_definitions(tmp_path / "definitions")
    app, state = build(fresh_db_url, definitions=definitions, tmp=tmp_path)
    add_user(state, "root", "sysadmin", DISTRICT)
    yield app, state, definitions
    state.db.dispose()


def test_reload__broken_definitions_keep_last_good_version(own_definitions_app) -> None:
    app, state, definitions = own_definitions_app
    award = definitions / "forms" / "award.yaml"
    lines = award.read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip() == "type: choice")
    lines[line - 1] = lines[line - 1].replace("choice", "choise")
    award.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = state.definitions.version
    for client in client_for(app):
        csrf = login(client, "root")
        failed = client.post("/admin/reload", data={"_csrf": csrf})
        assert failed.status_code == 422
        assert re.search(rf"forms/award\.yaml:{line}:\d+: 未知的字段类型“choise”（提示：是不是“choice”？）", failed.text)
        assert f"系统继续使用最后一次正确的定义（版本 {before}）" in failed.text
        assert state.definitions.version == before
        assert client.get("/f/award/").status_code == 200
        assert before in client.get("/admin/").text


def test_reload__valid_change_goes_live(own_definitions_app) -> None:
    app, state, definitions = own_definitions_app
    award = definitions / "forms" / "award.yaml"
    award.write_text(award.read_text(encoding="utf-8").replace("title: 奖惩记录", "title: 奖惩登记"), encoding="utf-8")
    before = state.definitions.version
    for client in client_for(app):
        csrf = login(client, "root")
        done = client.post("/admin/reload", data={"_csrf": csrf})
        assert done.status_code == 200
        assert state.definitions.version != before
        assert f"定义已重新加载，当前版本 {state.definitions.version}" in done.text
        assert "奖惩登记" in client.get("/").text
