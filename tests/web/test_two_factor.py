"""Two-factor sign-in with TOTP (issue 19 §3): enrolling, signing in with the app's code or a recovery code, a code
good once, roles that require it, and an administrator turning it off for a lost phone."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Iterator

import pyotp
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import delete

from engine.storage.models import LoginThrottle
from engine.twofactor import TwoFactorService
from tests.engine.helpers import principal_of
from tests.support import CLASS_1, DEFINITIONS, DISTRICT, PASSWORD, SCHOOL, add_user, build, csrf_of
from web.state import AppState


@pytest.fixture
def site(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[Litestar, AppState]]:
    definitions = tmp_path / "definitions"
    shutil.copytree(DEFINITIONS, definitions)
    registrar = definitions / "roles" / "registrar.yaml"
    registrar.write_text(registrar.read_text(encoding="utf-8").replace("admin: false\n", "admin: false\nrequire_2fa: true\n"),
                         encoding="utf-8")
    app, state = build(fresh_db_url, definitions, tmp=tmp_path)
    yield app, state
    state.db.dispose()


def _client(app: Litestar) -> TestClient:
    return TestClient(app=app, base_url="http://testserver.local")


def _password_step(client: TestClient, username: str):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    return client.post("/login", data={"_csrf": csrf_of(page.text), "username": username, "password": PASSWORD, "next": "/f/student/"},
                       follow_redirects=False)


def _code_step(client: TestClient, code: str):  # type: ignore[no-untyped-def]
    page = client.get("/login/2fa")
    return client.post("/login/2fa", data={"_csrf": csrf_of(page.text), "code": code, "next": "/f/student/"},
                       follow_redirects=False)


def _enroll(client: TestClient) -> tuple[str, list[str]]:
    page = client.get("/account/2fa").text
    begun = client.post("/account/2fa/begin", data={"_csrf": csrf_of(page)}).text
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', begun)[1]  # type: ignore[index]
    assert "otpauth://totp/" in begun
    wrong = client.post("/account/2fa/confirm", data={"_csrf": csrf_of(begun), "code": "000000"})
    assert wrong.status_code == 422
    done = client.post("/account/2fa/confirm", data={"_csrf": csrf_of(begun), "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200, done.text[:2000]
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", done.text)
    assert len(codes) == 10
    return secret, codes


def test_enroll_then_sign_in_needs_the_code(site) -> None:  # type: ignore[no-untyped-def]
    app, state = site
    add_user(state, "t1", "teacher", CLASS_1)
    with _client(app) as client:
        assert _password_step(client, "t1").headers["location"] == "/f/student/"  # optional, and not yet on
        secret, _codes = _enroll(client)
    with _client(app) as client:
        first = _password_step(client, "t1")
        assert first.headers["location"].startswith("/login/2fa")
        assert client.get("/f/student/", follow_redirects=False).status_code == 303  # the password alone opens nothing
        assert _code_step(client, "123456").status_code == 401
        before = client.cookies["dangan_session"]
        # The code that confirmed the enrollment is spent; the app's next one (a phone's clock a little ahead) is not.
        code = pyotp.TOTP(secret).at(time.time() + 30)
        passed = _code_step(client, code)
        assert passed.status_code == 303 and passed.headers["location"] == "/f/student/"
        assert client.cookies["dangan_session"] != before  # a new session id for the full session
        assert client.get("/f/student/").status_code == 200
    with _client(app) as replay:  # the same code a second time: refused, even within its 30 seconds
        _password_step(replay, "t1")
        assert _code_step(replay, code).status_code == 401


def test_recovery_code__works_once(site) -> None:  # type: ignore[no-untyped-def]
    app, state = site
    add_user(state, "t2", "teacher", CLASS_1)
    with _client(app) as client:
        _password_step(client, "t2")
        _secret, codes = _enroll(client)
    with _client(app) as client:
        _password_step(client, "t2")
        assert _code_step(client, codes[0].upper()).status_code == 303
    with _client(app) as client:
        _password_step(client, "t2")
        assert _code_step(client, codes[0]).status_code == 401
        assert _code_step(client, codes[1]).status_code == 303


def test_role_requiring_it__enrolls_before_anything_else(site) -> None:  # type: ignore[no-untyped-def]
    app, state = site
    add_user(state, "reg", "registrar", SCHOOL)
    with _client(app) as client:
        _password_step(client, "reg")
        blocked = client.get("/f/student/", follow_redirects=False)
        assert blocked.status_code == 303 and blocked.headers["location"] == "/account/2fa"
        assert "您的角色要求使用两步验证" in client.get("/account/2fa").text
        _enroll(client)
        assert client.get("/f/student/").status_code == 200
        page = client.get("/account/2fa").text
        assert 'action="/account/2fa/disable"' not in page  # required: the user may not turn it off


def test_wrong_codes__throttled_like_passwords(site) -> None:  # type: ignore[no-untyped-def]
    app, state = site
    add_user(state, "t3", "teacher", CLASS_1)
    with _client(app) as client:
        _password_step(client, "t3")
        secret, _codes = _enroll(client)
    with _client(app) as client:
        _password_step(client, "t3")
        for n in range(4):
            assert _code_step(client, f"{n:06d}").status_code == 401
        delayed = _code_step(client, pyotp.TOTP(secret).at(time.time() + 30))
        assert delayed.status_code == 401 and "登录尝试过于频繁" in delayed.text
    with state.db.write() as s:
        s.execute(delete(LoginThrottle))
        s.commit()


def test_lost_phone__an_administrator_turns_it_off(site) -> None:  # type: ignore[no-untyped-def]
    app, state = site
    add_user(state, "t4", "teacher", CLASS_1)
    add_user(state, "root", "sysadmin", DISTRICT)
    with _client(app) as client:
        _password_step(client, "t4")
        _enroll(client)
    service = TwoFactorService(state.db)
    with _client(app) as admin:
        page = admin.get("/login")
        admin.post("/login", data={"_csrf": csrf_of(page.text), "username": "root", "password": PASSWORD})
        user_page = admin.get("/admin/users").text
        user_id = re.search(r'href="/admin/users/(\d+)">t4<', user_page)[1]  # type: ignore[index]
        assert "关闭两步验证" in admin.get(f"/admin/users/{user_id}").text
        done = admin.post(f"/admin/users/{user_id}/2fa/disable", data={"_csrf": csrf_of(admin.get("/").text)},
                          follow_redirects=False)
        assert done.status_code == 303
    with _client(app) as client:
        assert _password_step(client, "t4").headers["location"] == "/f/student/"
    assert service.remaining_recovery_codes(principal_of(state, "t4")) == 0
