"""Signing in, sessions and passwords (issue 14, items 5-8): failures slow the next try down by address and by name
instead of locking an account anyone could lock; every refusal reads the same for known and unknown names; a
password change ends the other sessions and renews this one; idle sessions end; common and reused passwords are
refused; the login page writes nothing and expired sessions are purged."""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import delete, func, select, update

from engine import accounts as accounts_module
from engine import throttle
from engine.accounts import AccountInvalid, AccountPolicy, AccountService, SignInDelayed, SignInFailed
from engine.passwords import password_problems
from engine.permissions import Principal
from engine.sessions import SessionPolicy
from engine.storage.models import LoginThrottle, Session, User, utcnow
from tests.browser_fixtures import DANGAN
from tests.conftest import pg_schema_url
from tests.engine.helpers import principal_of
from tests.support import DEFINITIONS, PASSWORD, REPO, SCHOOL, add_user, csrf_of
from web.app import create_app, prepare
from web.auth import COOKIE, FORM_COOKIE
from web.settings import Settings
from web.state import AppState

NEW = "Hetang#Yuese-2026"
NEWER = "Qingshan$Lushui-88"


@dataclass
class App:
    app: Litestar
    state: AppState
    url: str
    settings: Settings

    def user(self, role: str = "registrar", unit: str = SCHOOL) -> str:
        name = "u" + uuid.uuid4().hex[:10]
        add_user(self.state, name, role, unit)
        return name

    def client(self) -> TestClient:
        return TestClient(app=self.app, base_url="http://testserver.local")


def _build(url: str, tmp: Path, **changes: object) -> App:
    settings = replace(Settings(), database_url=url, definitions=DEFINITIONS, var_dir=tmp, **changes)
    state, _ = prepare(settings)
    return App(create_app(settings, state), state, url, settings)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"], ids=["sqlite", "pg"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("signin")
    with ExitStack() as stack:
        url = f"sqlite:///{tmp / 'dangan.db'}" if request.param == "sqlite" else stack.enter_context(pg_schema_url())
        built = _build(url, tmp)
        stack.callback(built.state.db.dispose)
        yield built


@pytest.fixture(autouse=True)
def _fresh_throttle(request: pytest.FixtureRequest) -> None:
    """Every test client signs in from the same address ("testclient"): each test starts with its failures forgotten."""
    if "site" in request.fixturenames:
        site: App = request.getfixturevalue("site")
        with site.state.db.write() as s:
            s.execute(delete(LoginThrottle))
            s.commit()


def _try(client: TestClient, username: str, password: str):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    return client.post("/login", data={"_csrf": csrf_of(page.text), "username": username, "password": password, "next": "/"},
                       follow_redirects=False)


def _login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    response = _try(client, username, password)
    assert response.status_code == 303, response.text[:2000]
    return csrf_of(client.get("/password" if response.headers["location"] == "/password" else "/").text)


def _sessions(site: App, username: str | None = None) -> int:
    with site.state.db.read() as s:
        query = select(func.count()).select_from(Session)
        if username is not None:
            query = query.join(User, User.id == Session.user_id).where(User.username == username)
        return s.scalar(query) or 0


def _message(response) -> str:  # type: ignore[no-untyped-def]
    found = re.search(r'<div class="summary" role="alert"><p>([^<]*)</p>', response.text)
    assert found, response.text[:2000]
    return found[1]


# --- item 5: throttling instead of lockout -----------------------------------------------------------------------

def test_rule__free_tries_then_doubling_delays_up_to_a_cap() -> None:
    rule = throttle.Rule(free=3, first=2, longest=60)
    assert [rule.delay(n).total_seconds() for n in range(1, 10)] == [0, 0, 0, 2, 4, 8, 16, 32, 60]
    assert rule.delay(1000).total_seconds() == 60


def test_throttle__failures_forgotten_after_a_quiet_hour(site: App) -> None:
    key, start = throttle.account_key("u" + uuid.uuid4().hex), utcnow()
    with site.state.db.write() as s:
        for _ in range(5):
            throttle.record_failure(s, key, throttle.ACCOUNT, start)
        assert throttle.wait_seconds(s, [key], start) > 0
        later = start + dt.timedelta(hours=1, seconds=1)
        assert throttle.wait_seconds(s, [key], later) == 0
        assert throttle.record_failure(s, key, throttle.ACCOUNT, later) == 1
        s.commit()


def test_no_lock_an_attacker_controls__the_owner_waits_a_minute_at_most(site: App) -> None:
    name = site.user()
    now = utcnow()
    with site.state.db.write() as s:
        for _ in range(500):  # an attacker's night of guesses against the name
            throttle.record_failure(s, throttle.account_key(name), throttle.ACCOUNT, now)
        assert throttle.wait_seconds(s, [throttle.account_key(name)], now) <= throttle.ACCOUNT.longest + 1
        s.rollback()


def test_delay__after_the_free_tries_even_the_right_password_waits(site: App) -> None:
    name = site.user()
    with site.client() as client:
        for _ in range(throttle.ACCOUNT.free + 1):
            assert _message(_try(client, name, "Wrong#Guess-123")) == "用户名或密码错误"
        delayed = _try(client, name, PASSWORD)
    assert delayed.status_code == 401
    assert re.fullmatch(r"登录尝试过于频繁，请 \d+ 秒后再试", _message(delayed))


def test_delay__by_address_whatever_the_names(site: App) -> None:
    address = f"203.0.113.{uuid.uuid4().int % 250}"
    now = utcnow()
    with site.state.db.write() as s:
        for _ in range(throttle.ADDRESS.free + 1):
            throttle.record_failure(s, throttle.address_key(address), throttle.ADDRESS, now)
        s.commit()
    name = site.user()
    with pytest.raises(SignInDelayed):
        site.state.accounts.sign_in(name, PASSWORD, address)
    assert site.state.accounts.sign_in(name, PASSWORD, "198.51.100.7").user_id > 0  # another address is not held up


def test_unknown_and_known_names__same_answer_same_work(site: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same sentence, the same Argon2 check, the same failure records; no count of tries left."""
    name = site.user()
    calls: list[str] = []
    real_verify = accounts_module.verify
    monkeypatch.setattr(accounts_module, "verify", lambda stored, pw: calls.append("verify") or real_verify(stored, pw))
    real_record = throttle.record_failure
    monkeypatch.setattr(throttle, "record_failure", lambda *a: calls.append("record") or real_record(*a))
    answers = []
    for username in (name, "nobody-" + uuid.uuid4().hex[:8]):
        with site.state.db.write() as s:  # each from a clean address, below the challenge's threshold
            s.execute(delete(LoginThrottle))
            s.commit()
        calls.clear()
        with site.client() as client:
            answers.append([_message(_try(client, username, f"Wrong#Guess-{n}")) for n in range(throttle.ACCOUNT.free)])
        assert calls == ["verify", "record", "record"] * throttle.ACCOUNT.free
    assert answers[0] == answers[1] == ["用户名或密码错误"] * throttle.ACCOUNT.free


def test_inactive_account__answered_like_a_wrong_password(site: App) -> None:
    name = site.user()
    with site.state.db.write() as s:
        s.execute(update(User).where(User.username == name).values(is_active=False))
        s.commit()
    with site.client() as client:
        assert _message(_try(client, name, PASSWORD)) == "用户名或密码错误"


def test_unlock_user_command__installed(site: App, tmp_path: Path) -> None:
    name = site.user()
    with site.state.db.write() as s:
        for _ in range(throttle.ACCOUNT.free + 5):
            throttle.record_failure(s, throttle.account_key(name), throttle.ACCOUNT, utcnow())
        s.commit()
    env = {**os.environ, "DANGAN_DATABASE_URL": site.url, "DANGAN_DEFINITIONS": str(DEFINITIONS), "DANGAN_VAR": str(tmp_path)}
    done = subprocess.run([str(DANGAN), "unlock-user", name], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"已解除用户 {name} 的登录限制" in done.stdout
    with site.client() as client:
        assert _try(client, name, PASSWORD).headers["location"] == "/"
    unknown = subprocess.run([str(DANGAN), "unlock-user", "no-such-user"], env=env, cwd=REPO, capture_output=True,
                             text=True, timeout=120)
    assert unknown.returncode == 1 and "没有用户“no-such-user”" in unknown.stderr


def test_unlock__refused_to_whoever_is_no_administrator(site: App) -> None:
    name = site.user()
    with pytest.raises(accounts_module.NotPermitted):
        site.state.accounts.unlock(principal_of(site.state, name), name)


# --- item 6: sessions end with a password change, when idle, and past their lifetime -----------------------------------

def test_password_change__ends_other_sessions_and_renews_this_one(site: App) -> None:
    name = site.user()
    with site.client() as mine, site.client() as other:
        csrf = _login(mine, name)
        _login(other, name)
        before = mine.cookies[COOKIE]
        assert _sessions(site, name) == 2
        changed = mine.post("/password", data={"_csrf": csrf, "current": PASSWORD, "new": NEW, "confirm": NEW},
                            follow_redirects=False)
        assert changed.status_code == 303, changed.text[:2000]
        assert changed.cookies[COOKIE] != before  # a new session id
        assert "密码已修改" in mine.get("/").text
        assert _sessions(site, name) == 1
        assert other.get("/", follow_redirects=False).headers["location"].startswith("/login")
        # The old id is worthless, even to whoever copied it.
        with site.client() as thief:
            thief.cookies.set(COOKIE, before)
            assert thief.get("/", follow_redirects=False).status_code == 303


def test_idle_session__ends_and_the_login_page_says_why(site: App) -> None:
    name = site.user()
    with site.client() as client:
        _login(client, name)
        with site.state.db.write() as s:  # 31 minutes later
            s.execute(update(Session).values(expires_at=utcnow() - dt.timedelta(seconds=1))
                      .where(Session.user_id == select(User.id).where(User.username == name).scalar_subquery()))
            s.commit()
        gone = client.get("/f/student/", follow_redirects=False)
        assert gone.status_code == 303 and "expired=1" in gone.headers["location"]
        assert "您已较长时间未操作" in client.get(gone.headers["location"]).text


def test_activity__moves_the_idle_expiry_on_but_never_past_the_lifetime(site: App) -> None:
    name = site.user()
    policy = site.state.accounts.policy.sessions
    with site.client() as client:
        _login(client, name)
        user_id = select(User.id).where(User.username == name).scalar_subquery()
        with site.state.db.write() as s:  # last seen 25 minutes ago
            s.execute(update(Session).values(expires_at=utcnow() + dt.timedelta(minutes=5)).where(Session.user_id == user_id))
            s.commit()
        assert client.get("/").status_code == 200
        with site.state.db.read() as s:
            expires = s.scalar(select(Session.expires_at).where(Session.user_id == user_id))
        assert expires > utcnow() + policy.idle - dt.timedelta(minutes=1)
        with site.state.db.write() as s:  # signed in 7 h 50 min ago
            s.execute(update(Session).values(created_at=utcnow() - policy.lifetime + dt.timedelta(minutes=10),
                                             expires_at=utcnow() + dt.timedelta(minutes=5)).where(Session.user_id == user_id))
            s.commit()
        client.get("/")
        with site.state.db.read() as s:
            row = s.scalar(select(Session).where(Session.user_id == user_id))
        assert row.expires_at <= row.created_at + policy.lifetime


def test_settings__idle_timeout_30_minutes_and_password_age_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DANGAN_IDLE_TIMEOUT_MINUTES", "DANGAN_PASSWORD_MAX_AGE_DAYS", "DANGAN_PASSWORD_HISTORY"):
        monkeypatch.delenv(name, raising=False)
    policy = Settings().account_policy()
    assert policy.sessions.idle == dt.timedelta(minutes=30) and policy.password_max_age is None
    assert policy.password_history == 5
    monkeypatch.setenv("DANGAN_IDLE_TIMEOUT_MINUTES", "10")
    monkeypatch.setenv("DANGAN_PASSWORD_MAX_AGE_DAYS", "90")
    policy = Settings().account_policy()
    assert policy.sessions.idle == dt.timedelta(minutes=10) and policy.password_max_age == dt.timedelta(days=90)


def test_password_age__an_old_password_must_be_changed_when_the_policy_is_on(tmp_path: Path) -> None:
    aged = _build(f"sqlite:///{tmp_path / 'aged.db'}", tmp_path, password_max_age_days=90)
    try:
        add_user(aged.state, "old", "registrar", SCHOOL)
        with aged.state.db.write() as s:
            s.execute(update(User).where(User.username == "old").values(password_changed_at=utcnow() - dt.timedelta(days=91)))
            s.commit()
        with aged.client() as client:
            assert _try(client, "old", PASSWORD).headers["location"] == "/password"
            assert client.get("/f/student/", follow_redirects=False).headers["location"] == "/password"
            assert "密码已使用过久" in client.get("/password").text
        off = _build(aged.url, tmp_path)  # the same account, the policy off (the default)
        with off.client() as client:
            assert _try(client, "old", PASSWORD).headers["location"] == "/"
        off.state.db.dispose()
    finally:
        aged.state.db.dispose()


# --- item 7: common and reused passwords -------------------------------------------------------------------------

@pytest.mark.parametrize("password", ["Passw0rd!", "P@ssw0rd", "12345678a!", "Passw0rd!2026", "Admin@123", "Qwerty123!"])
def test_common_passwords__refused(password: str) -> None:
    assert any("太常见" in p for p in password_problems(password, "zhangsan")), password


def test_common_password__refused_on_the_change_page(site: App) -> None:
    name = site.user()
    with site.client() as client:
        csrf = _login(client, name)
        for weak in ("Passw0rd!", "P@ssw0rd", "12345678a!"):
            refused = client.post("/password", data={"_csrf": csrf, "current": PASSWORD, "new": weak, "confirm": weak})
            assert refused.status_code == 422 and ("太常见" in refused.text or "须包含" in refused.text), weak


def test_recent_passwords__may_not_come_back(tmp_path: Path) -> None:
    short = _build(f"sqlite:///{tmp_path / 'history.db'}", tmp_path, password_history=2)
    try:
        add_user(short.state, "wang.lei", "registrar", SCHOOL)
        accounts, me = short.state.accounts, principal_of(short.state, "wang.lei")
        with short.state.db.write() as s:
            token = accounts_module.open_session(s, me.user_id)[0]
            s.commit()
        with pytest.raises(AccountInvalid, match="不能与最近 2 次"):
            accounts.change_password(me, token, PASSWORD, PASSWORD, PASSWORD)
        token = accounts.change_password(me, token, PASSWORD, NEW, NEW).token
        with pytest.raises(AccountInvalid, match="不能与最近 2 次"):
            accounts.change_password(me, token, NEW, PASSWORD, PASSWORD)
        token = accounts.change_password(me, token, NEW, NEWER, NEWER).token
        # Three passwords on, the first may be used again (the policy remembers two).
        assert accounts.change_password(me, token, NEWER, PASSWORD, PASSWORD).token
    finally:
        short.state.db.dispose()


# --- item 8: the login page writes nothing; expired sessions go ------------------------------------------------------

def test_login_page__anonymous_views_insert_no_session(site: App) -> None:
    before = _sessions(site)
    with site.client() as client:
        for _ in range(50):
            assert client.get("/login").status_code == 200
    with site.client() as other:
        other.get("/login")
    assert _sessions(site) == before


def test_login_form__needs_its_cookie_token(site: App) -> None:
    name = site.user()
    with site.client() as client:
        token = csrf_of(client.get("/login").text)
        assert client.cookies[FORM_COOKIE] == token
        client.cookies.delete(FORM_COOKIE)
        refused = client.post("/login", data={"_csrf": token, "username": name, "password": PASSWORD}, follow_redirects=False)
        assert refused.status_code == 403
    with site.client() as forger:  # a token of the attacker's own, without the victim's cookie
        forged = forger.post("/login", data={"_csrf": "x" * 43, "username": name, "password": PASSWORD}, follow_redirects=False)
        assert forged.status_code == 403


def test_expired_sessions__purged_at_sign_in(site: App) -> None:
    name = site.user()
    with site.state.db.write() as s:
        for n in range(20):
            s.add(Session(id=f"{n:02d}{uuid.uuid4().hex}", user_id=None, csrf_token="x", created_at=utcnow() - dt.timedelta(days=2),
                          expires_at=utcnow() - dt.timedelta(days=1)))
        s.commit()
    site.state.accounts._purged_at = dt.datetime.min  # as a new process: the purge runs at its first sign-in
    with site.client() as client:
        _login(client, name)
    with site.state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Session).where(Session.expires_at < utcnow())) == 0
        assert s.scalar(select(func.count()).select_from(LoginThrottle).where(
            LoginThrottle.last_failure_at < utcnow() - dt.timedelta(days=1))) == 0


def test_sign_in_service__refusals_for_callers(site: App) -> None:
    with pytest.raises(SignInFailed):
        site.state.accounts.sign_in("nobody-" + uuid.uuid4().hex[:6], PASSWORD, "192.0.2.1")
    nobody = Principal(user_id=0, username="x", display_name="x", roles=())
    with pytest.raises(accounts_module.UserNotFound):
        site.state.accounts.change_password(nobody, "", PASSWORD, NEW, NEW)
    assert isinstance(AccountService(site.state.db, AccountPolicy(SessionPolicy())).policy, AccountPolicy)
