"""Who is asking: the session cookie, the principal, CSRF, idle sessions, and the forced password change."""
from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.response import Template

from engine.org import build_principal
from engine.permissions import Principal
from engine.sessions import find_session_user, needs_touch
from engine.twofactor import required as two_factor_required
from engine.storage.models import utcnow
from web.state import AppState

COOKIE = "dangan_session"
# The CSRF token of forms shown before signing in (the login page): a cookie of its own, so that showing the login
# page writes nothing to the database (double submit: the form must send back what this cookie holds).
FORM_COOKIE = "dangan_form"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(NotAuthorizedException):
    def __init__(self, expired: bool = False) -> None:
        super().__init__()
        self.expired = expired  # a session cookie came, but its session has ended (idle, lifetime, signed out)


class PasswordChangeRequired(PermissionDeniedException):
    pass


class CsrfFailed(PermissionDeniedException):
    pass


class TwoFactorSetupRequired(PermissionDeniedException):
    """A role of the user requires two-factor sign-in (`require_2fa`) and the user has not enrolled yet."""


@dataclass
class SessionInfo:
    token: str
    csrf: str
    user_id: int | None
    pending: bool = False  # the password was right; the authenticator's code is still to come
    has_totp: bool = False


def app_state(connection: ASGIConnection) -> AppState:
    return connection.app.state["dangan"]


def secure_cookies(connection: ASGIConnection) -> bool:
    """Secure cookies over HTTPS: the request's own scheme, which uvicorn takes from X-Forwarded-Proto when a trusted
    proxy sends it (web/settings.py: trusted_proxies), unless the setting says always or never."""
    mode = app_state(connection).settings.secure_cookies
    return mode == "1" or (mode == "auto" and connection.scope.get("scheme") == "https")


def session_cookie(connection: ASGIConnection, token: str) -> Cookie:
    lifetime = app_state(connection).accounts.policy.sessions.lifetime
    return Cookie(key=COOKIE, value=token, httponly=True, samesite="lax", secure=secure_cookies(connection), path="/",
                  max_age=int(lifetime.total_seconds()))


def clear_cookie(connection: ASGIConnection) -> Cookie:
    return Cookie(key=COOKIE, value="", httponly=True, samesite="lax", secure=secure_cookies(connection), path="/", max_age=0)


def with_form_token(request: Request, template: Template) -> Template:
    """An anonymous page with a form: its CSRF token is the FORM_COOKIE's value, set here when the browser has none.
    (Shown to a signed-in user, the form carries the session's token, which is the one checked then.)"""
    if request.state.get("session") is not None:
        return template
    token = request.cookies.get(FORM_COOKIE) or ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        template.cookies.append(Cookie(key=FORM_COOKIE, value=token, httponly=True, samesite="strict",
                                       secure=secure_cookies(request), path="/"))
    template.context["csrf"] = token
    return template


# (database, user id, user created at, auth_version, definitions version)
PrincipalKey = tuple[str, int, Any, int, str]


class PrincipalCache:
    """Principals by (user, auth_version, definitions version): one joined query per request instead of six.

    Any change of roles or units bumps users.auth_version in the database, so every process sees a
    new key on its next request; activity and the forced password change are read live each time.
    """

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.entries: OrderedDict[PrincipalKey, Principal] = OrderedDict()

    def get(self, key: PrincipalKey) -> Principal | None:
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    def put(self, key: PrincipalKey, principal: Principal) -> None:
        self.entries[key] = principal
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)


_principals = PrincipalCache()


def _load(state: AppState, token: str | None) -> tuple[SessionInfo | None, Principal | None, bool]:
    """The session, its principal, and whether its idle expiry should be pushed on (see engine/sessions.py)."""
    # A plain connection for the per-request lookup; an ORM session only when the principal must be built.
    with state.db.single() as connection:
        user = find_session_user(connection, token)
    if user is None:
        return None, None, False
    now = utcnow()
    info = SessionInfo(token=token or "", csrf=user.csrf_token, user_id=user.user_id, pending=user.pending is not None,
                       has_totp=bool(user.has_totp))
    touch = needs_touch(user, state.accounts.policy.sessions, now)
    if user.id is None or not user.is_active or info.pending:
        return info, None, touch
    # The database and the row's creation time are part of the key: user ids are only unique within one
    # database (several apps in one process, a restored backup), and SQLite may reuse a freed id.
    key = (state.db.url, user.id, user.created_at, user.auth_version, state.definitions.version)
    principal = _principals.get(key)
    if principal is None:
        with state.db.read() as s:
            principal = build_principal(s, user, state.definitions)
        _principals.put(key, principal)
    must_change = user.must_change_password or state.accounts.policy.password_expired(user.password_changed_at, now)
    if principal.must_change_password != must_change:
        principal = replace(principal, must_change_password=must_change)
    return info, principal, touch


async def session_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """App-level guard: every route is private unless it says `opt={"public": True}`."""
    if handler.opt.get("static"):
        return  # htmx.min.js and CSS need no session lookup
    state = app_state(connection)
    state.follow_reloads()
    token = connection.cookies.get(COOKIE)
    info, principal, touch = _load(state, token)
    connection.state.session = info
    connection.state.principal = principal
    if touch and token:
        # At most once a minute per session; in a thread, because a write may wait for the database's lock.
        await state.writes.in_thread(state.accounts.touch_session, token)
    public = handler.opt.get("public")
    if principal is None and not public:
        raise LoginRequired(expired=bool(token) and info is None)  # a session waiting for its code has not expired
    if connection.scope["type"] == "http" and connection.scope["method"] not in SAFE_METHODS:
        await _check_csrf(connection, info)
    if public:
        return
    if principal.must_change_password and not handler.opt.get("password_change"):
        raise PasswordChangeRequired()
    if not info.has_totp and two_factor_required(principal.roles) and not handler.opt.get("two_factor_setup"):  # type: ignore[union-attr]
        raise TwoFactorSetupRequired()


async def _check_csrf(connection: ASGIConnection, info: SessionInfo | None) -> None:
    """Synchroniser token: the session's secret must come back in a header (htmx) or a form field; before signing in,
    the FORM_COOKIE's value must."""
    expected = info.csrf if info is not None else connection.cookies.get(FORM_COOKIE, "")
    if len(expected) < 32:
        raise CsrfFailed("页面已过期，请刷新后重试")
    sent = connection.headers.get("x-csrf-token")
    if not sent and isinstance(connection, Request):
        content_type = connection.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await connection.form()
            sent = form.get("_csrf")
    if not isinstance(sent, str) or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed("页面已过期或来源不可信（CSRF 校验失败），请刷新页面后重试")


def current_principal(request: Request) -> Principal:
    principal = request.state.get("principal")
    if principal is None:
        raise LoginRequired()
    return principal


def optional_principal(request: Request) -> Principal | None:
    return request.state.get("principal")


def csrf_token(request: Request) -> str:
    info: SessionInfo | None = request.state.get("session")
    return info.csrf if info else ""


def client_address(connection: ASGIConnection) -> str:
    """The client's address: uvicorn puts a trusted proxy's X-Forwarded-For there (web/settings.py: trusted_proxies)."""
    client = connection.scope.get("client")
    return str(client[0]) if client else "unknown"

