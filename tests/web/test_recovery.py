"""忘记密码 (issue 19 §3): a one-time link by e-mail through a real SMTP server in this process, a code by a pluggable
SMS sender, and codes an administrator or a registrar issues where nothing is sent; no answer tells whether an account
exists; the sign-in challenge after repeated failures from one address."""
from __future__ import annotations

import datetime as dt
import email
import re
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import delete, select, update

from engine import challenge
from engine.accounts import system_principal
from engine.recovery import REQUESTS, RecoveryService
from engine.storage.models import LoginThrottle, ResetCode, User, utcnow
from tests.browser_fixtures import _free_port
from tests.conftest import pg_schema_url
from tests.web.sms_plugin import SENT
from tests.support import (CLASS_1, DEFINITIONS, DISTRICT, OTHER_DISTRICT_CLASS, PASSWORD, SCHOOL, add_user, csrf_of)
from web.app import create_app, prepare
from web.settings import Settings
from web.state import AppState

NEW = "Hetang#Yuese-2026"


class Mailbox:
    """aiosmtpd's handler: keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, _server, _session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802 — aiosmtpd's name
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@dataclass
class Site:
    app: Litestar
    state: AppState
    mailbox: Mailbox | None = None

    def client(self) -> TestClient:
        return TestClient(app=self.app, base_url="http://testserver.local")

    def user(self, role: str = "teacher", unit: str = CLASS_1, email: str = "", phone: str = "") -> str:
        name = "u" + uuid.uuid4().hex[:10]
        add_user(self.state, name, role, unit)
        with self.state.db.write() as s:
            s.execute(update(User).where(User.username == name).values(email=email, phone=phone))
            s.commit()
        return name


def _site(url: str, tmp: Path, **changes: object) -> Site:
    settings = replace(Settings(), database_url=url, definitions=DEFINITIONS, var_dir=tmp, **changes)
    state, _ = prepare(settings)
    return Site(create_app(settings, state), state)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"], ids=["sqlite", "pg"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("recovery")
    with ExitStack() as stack:
        yield (f"sqlite:///{tmp / 'dangan.db'}" if request.param == "sqlite" else stack.enter_context(pg_schema_url())), tmp


@pytest.fixture
def plain(database) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    """No sender configured: codes are issued in person."""
    site = _site(*database)
    _forget_failures(site)
    yield site
    site.state.db.dispose()


@pytest.fixture
def mailing(database) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    """An SMTP server in this process, and the SMS plug-in."""
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        site = _site(*database, smtp_host="127.0.0.1", smtp_port=port,
                     smtp_from="dangan@school.example", sms_sender="tests.web.sms_plugin:CollectingSms",
                     public_url="https://dangan.example")
        site.mailbox = mailbox
        _forget_failures(site)
        yield site
        site.state.db.dispose()
    finally:
        controller.stop()


def _forget_failures(site: Site) -> None:
    with site.state.db.write() as s:
        s.execute(delete(LoginThrottle))
        s.commit()


def _wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _sign_in(client: TestClient, username: str, password: str):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    return client.post("/login", data={"_csrf": csrf_of(page.text), "username": username, "password": password},
                       follow_redirects=False)


def _reset(client: TestClient, username: str, code: str, password: str = NEW):  # type: ignore[no-untyped-def]
    page = client.get("/reset")
    return client.post("/reset", data={"_csrf": csrf_of(page.text), "username": username, "code": code, "new": password,
                                       "confirm": password}, follow_redirects=False)


def _issue(client: TestClient, csrf: str, username: str):  # type: ignore[no-untyped-def]
    return client.post("/account/reset-codes", data={"_csrf": csrf, "username": username})


def _signed_in_csrf(client: TestClient, username: str) -> str:
    response = _sign_in(client, username, PASSWORD)
    assert response.status_code == 303, response.text[:1000]
    return csrf_of(client.get("/").text)


# --- no sender: the page says whom to ask, and codes are issued ------------------------------------------------------

def test_without_a_sender__the_page_says_whom_to_ask(plain: Site) -> None:
    with plain.client() as client:
        assert "忘记密码" in client.get("/login").text
        page = client.get("/forgot").text
        assert plain.state.settings.password_help in page and 'action="/forgot"' not in page


def test_issued_code__resets_once_and_ends_every_session(plain: Site) -> None:
    name = plain.user()
    add_user(plain.state, "root" + name, "sysadmin", DISTRICT)
    with plain.client() as admin, plain.client() as victim_session, plain.client() as user:
        _signed_in_csrf(victim_session, name)
        issued = _issue(admin, _signed_in_csrf(admin, "root" + name), name)
        code = re.search(r'id="reset-code">([^<]+)<', issued.text)
        assert issued.status_code == 200 and code, issued.text[:2000]
        assert issued.headers["cache-control"] == "no-store"
        done = _reset(user, name, code[1])
        assert done.status_code == 303 and done.headers["location"] == "/login?reset=1"
        assert "密码已重置" in user.get("/login?reset=1").text
        assert victim_session.get("/", follow_redirects=False).status_code == 303  # signed out everywhere
        assert _sign_in(user, name, NEW).headers["location"] == "/"
        again = _reset(user, name, code[1], "Another#Pass-2026x")
        assert again.status_code == 422 and "重置码不正确、已使用或已过期" in again.text


def test_codes__expired_or_wrong_or_for_nobody_read_the_same(plain: Site) -> None:
    name = plain.user()
    _user, code = plain.state.recovery.issue(system_principal(plain.state.definitions), plain.state.definitions,
                                             user_id_of(plain, name))
    with plain.state.db.write() as s:
        s.execute(update(ResetCode).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
        s.commit()
    with plain.client() as client:
        answers = [_reset(client, name, code), _reset(client, name, "WRONG-CODE0"), _reset(client, "nobody-" + name, code)]
    assert [a.status_code for a in answers] == [422] * 3
    assert len({re.search(r'<div class="summary" role="alert"><p>([^<]+)<', a.text)[1] for a in answers}) == 1  # type: ignore[index]


def test_registrar__issues_codes_in_their_school_only_and_never_to_an_administrator(plain: Site) -> None:
    registrar, near, far = plain.user("registrar", SCHOOL), plain.user(), plain.user(unit=OTHER_DISTRICT_CLASS)
    admin = plain.user("sysadmin", DISTRICT)
    with plain.client() as client:
        csrf = _signed_in_csrf(client, registrar)
        assert _issue(client, csrf, near).status_code == 200
        for refused in (far, admin, "nobody-" + far):
            answer = _issue(client, csrf, refused)
            assert answer.status_code == 422 and "没有您可以为其生成重置码的用户" in answer.text
    with plain.client() as teacher:
        csrf = _signed_in_csrf(teacher, near)
        assert _issue(teacher, csrf, far).status_code == 403


# --- e-mail through SMTP, SMS through a plug-in --------------------------------------------------------------------

def test_email__a_link_that_resets(mailing: Site) -> None:
    name = mailing.user(email="zhang@school.example")
    with mailing.client() as client:
        page = client.get("/forgot")
        answer = client.post("/forgot", data={"_csrf": csrf_of(page.text), "username": name})
        assert answer.status_code == 200 and "重置密码的方式已经发出" in answer.text
        assert mailing.mailbox is not None
        _wait_for(lambda: mailing.mailbox.messages, "the reset e-mail")  # type: ignore[union-attr]
        recipients, raw = mailing.mailbox.messages[-1]  # type: ignore[union-attr]
        assert recipients == ["zhang@school.example"]
        content = email.message_from_string(raw).get_payload(decode=True).decode()
        link = re.search(r"https://dangan\.example/reset\?user=([^&\s]+)&code=(\S+)", content)
        assert link and link[1] == name, content
        form = client.get(f"/reset?user={link[1]}&code={link[2]}")
        assert f'value="{link[2]}"' in form.text
        assert _reset(client, name, link[2]).headers["location"] == "/login?reset=1"
        assert _sign_in(client, name, NEW).headers["location"] == "/"


def test_email__an_unknown_name_gets_the_same_answer_and_no_mail(mailing: Site) -> None:
    known = mailing.user(email="li@school.example")
    with mailing.client() as client:
        page = client.get("/forgot")
        answers = [client.post("/forgot", data={"_csrf": csrf_of(page.text), "username": n}).text
                   for n in ("nobody-" + known, known)]
    _wait_for(lambda: mailing.mailbox.messages, "the known user's e-mail")  # type: ignore[union-attr]
    time.sleep(0.5)
    assert [to for to, _ in mailing.mailbox.messages] == [["li@school.example"]]  # type: ignore[union-attr]
    assert _body(answers[0]) == _body(answers[1])


def _body(html: str) -> str:
    return re.sub(r'value="[^"]*"', "", html)


def test_sms__a_short_code_through_the_plug_in(mailing: Site) -> None:
    name = mailing.user(phone="13812345678")
    SENT.clear()
    with mailing.client() as client:
        page = client.get("/forgot")
        client.post("/forgot", data={"_csrf": csrf_of(page.text), "username": name})
        _wait_for(lambda: SENT, "the SMS")
        to, text = SENT[-1]
        assert to == "13812345678"
        code = re.search(r"验证码是 (\d{6})", text)
        assert code, text
        assert _reset(client, name, code[1]).headers["location"] == "/login?reset=1"


def test_requests__a_few_an_hour_per_name(mailing: Site) -> None:
    name = mailing.user(email="wang@school.example")
    service: RecoveryService = mailing.state.recovery
    for _ in range(REQUESTS.free + 4):
        service.request(name, "192.0.2.8")
    assert len(mailing.mailbox.messages) == REQUESTS.free + 1  # type: ignore[union-attr]


# --- the challenge after repeated failures from one address ----------------------------------------------------------

def test_challenge__after_five_failures_from_an_address(plain: Site) -> None:
    name = plain.user()
    with plain.client() as client:
        assert "challenge-image" not in client.get("/login").text
        for n in range(5):  # five names: no name's own delay gets in the way
            assert _sign_in(client, f"{name}{n}", f"Wrong#Guess-{n}").status_code == 401
        page = client.get("/login").text
        assert 'id="challenge-image"' in page and 'src="data:image/png;base64,' in page
        token = re.search(r'name="challenge_token" value="([^"]+)"', page)[1]  # type: ignore[index]
        refused = client.post("/login", data={"_csrf": csrf_of(page), "username": name, "password": PASSWORD,
                                               "challenge_token": token, "challenge_answer": "999"}, follow_redirects=False)
        assert refused.status_code == 401 and "图中算式的结果" in refused.text
        answer = next(str(n) for n in range(100) if challenge.check(plain.state.accounts.secret, token, str(n), "testclient",
                                                                        utcnow()))
        signed_in = client.post("/login", data={"_csrf": csrf_of(page), "username": name, "password": PASSWORD,
                                                "challenge_token": token, "challenge_answer": answer}, follow_redirects=False)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"


def test_challenge__bound_to_its_address_and_expiry() -> None:
    secret, now = b"s" * 32, utcnow()
    made = challenge.make(secret, "192.0.2.1", now)
    right = next(str(n) for n in range(100) if challenge.check(secret, made.token, str(n), "192.0.2.1", now))
    assert not challenge.check(secret, made.token, right, "192.0.2.2", now)
    assert not challenge.check(secret, made.token, right, "192.0.2.1", now + challenge.LIFETIME + dt.timedelta(seconds=2))
    assert not challenge.check(b"t" * 32, made.token, right, "192.0.2.1", now)


def user_id_of(site: Site, username: str) -> int:
    with site.state.db.read() as s:
        return s.scalar(select(User.id).where(User.username == username))
