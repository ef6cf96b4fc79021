"""Behind HTTPS the session cookie is Secure and HSTS is sent, directly or through a trusted proxy's
X-Forwarded-Proto; pages of a signed-in user are never cached (issue 14, item 12)."""
from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Callable

import httpx
import pytest
from litestar.testing import TestClient

from tests.browser_fixtures import Server
from tests.support import PASSWORD, SCHOOL, add_user, build, csrf_of


def _sign_in(client: httpx.Client | TestClient, username: str = "reg") -> httpx.Response:
    page = client.get("/login")
    return client.post("/login", data={"_csrf": csrf_of(page.text), "username": username, "password": PASSWORD, "next": "/"},
                       follow_redirects=False)


@pytest.fixture
def site(tmp_path: Path):  # type: ignore[no-untyped-def]
    app, state = build(f"sqlite:///{tmp_path / 'https.db'}", tmp=tmp_path)
    add_user(state, "reg", "registrar", SCHOOL)
    yield app
    state.db.dispose()


def test_over_https__secure_cookies_and_hsts(site) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app=site, base_url="https://testserver.local") as client:
        login_page = client.get("/login")
        assert "secure" in login_page.headers["set-cookie"].lower()
        assert login_page.headers["strict-transport-security"] == "max-age=31536000"
        signed_in = _sign_in(client)
        assert re.search(r"dangan_session=[^;]+;.*Secure", signed_in.headers["set-cookie"], re.IGNORECASE)


def test_over_plain_http__no_secure_flag_no_hsts(site) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app=site, base_url="http://testserver.local") as client:
        signed_in = _sign_in(client)
        assert "secure" not in signed_in.headers["set-cookie"].lower()
        assert "strict-transport-security" not in signed_in.headers


def test_signed_in_pages__no_store_static_files_cacheable(site) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app=site, base_url="http://testserver.local") as client:
        assert "cache-control" not in client.get("/login").headers
        _sign_in(client)
        for path in ("/", "/f/student/", "/wf/todo", "/f/student/999"):
            assert client.get(path).headers["cache-control"] == "no-store", path
        assert "no-store" not in client.get("/static/app.css").headers.get("cache-control", "")


def _through_proxy(server: Server, proto: str) -> tuple[str, str | None]:
    request = urllib.request.Request(server.base_url + "/login", headers={"X-Forwarded-Proto": proto,
                                                                         "X-Forwarded-For": "203.0.113.9"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("set-cookie", ""), response.headers.get("strict-transport-security")


def test_behind_a_trusted_proxy__https_it_reports_makes_cookies_secure(start_server: Callable[..., Server],
                                                                       tmp_path: Path) -> None:
    trusted = start_server(f"sqlite:///{tmp_path / 'trusted.db'}")  # the proxy is on 127.0.0.1, trusted by default
    cookie, hsts = _through_proxy(trusted, "https")
    assert "secure" in cookie.lower() and hsts == "max-age=31536000"
    cookie, hsts = _through_proxy(trusted, "http")
    assert "secure" not in cookie.lower() and hsts is None


def test_an_untrusted_sender__its_x_forwarded_proto_ignored(start_server: Callable[..., Server], tmp_path: Path) -> None:
    untrusted = start_server(f"sqlite:///{tmp_path / 'untrusted.db'}", DANGAN_TRUSTED_PROXIES="10.9.9.9")
    cookie, hsts = _through_proxy(untrusted, "https")
    assert "secure" not in cookie.lower() and hsts is None


def test_secure_cookies_setting__always(start_server: Callable[..., Server], tmp_path: Path) -> None:
    always = start_server(f"sqlite:///{tmp_path / 'always.db'}", DANGAN_SECURE_COOKIES="1")
    cookie, _hsts = _through_proxy(always, "http")
    assert "secure" in cookie.lower()
