"""Who is asking: the session cookie, the principal, CSRF, and the forced first password change."""
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

from engine.org import build_principal
from engine.permissions import Principal
from engine.sessions import LIFETIME, find_session_user
from web.state import AppState

COOKIE = "dangan_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(NotAuthorizedException):
    pass


class PasswordChangeRequired(PermissionDeniedException):
    pass


class CsrfFailed(PermissionDeniedException):
    pass


@dataclass
class SessionInfo:
    token: str
    csrf: str
    user_id: int | None


def app_state(connection: ASGIConnection) -> AppState:
    return connection.app.state["dangan"]


def session_cookie(token: str, secure: bool) -> Cookie:
    return Cookie(key=COOKIE, value=token, httponly=True, samesite="lax", secure=secure, path="/",
                  max_age=int(LIFETIME.total_seconds()))


def clear_cookie(secure: bool) -> Cookie:
    return Cookie(key=COOKIE, value="", httponly=True, samesite="lax", secure=secure, path="/", max_age=0)


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


def _load(state: AppState, token: str | None) -> tuple[SessionInfo | None, Principal | None]:
    # A plain connection for the per-request lookup; an ORM session only when the principal must be built.
    with state.db.single() as connection:
        user = find_session_user(connection, token)
    if user is None:
        return None, None
    info = SessionInfo(token=token or "", csrf=user.csrf_token, user_id=user.user_id)
    if user.id is None or not user.is_active:
        return info, None
    # The database and the row's creation time are part of the key: user ids are only unique within one
    # database (several apps in one process, a restored backup), and SQLite may reuse a freed id.
    key = (state.db.url, user.id, user.created_at, user.auth_version, state.definitions.version)
    principal = _principals.get(key)
    if principal is None:
        with state.db.read() as s:
            principal = build_principal(s, user, state.definitions)
        _principals.put(key, principal)
    if principal.must_change_password != user.must_change_password:
        principal = replace(principal, must_change_password=user.must_change_password)
    return info, principal


async def session_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """App-level guard: every route is private unless it says `opt={"public": True}`."""
    if handler.opt.get("static"):
        return  # htmx.min.js and CSS need no session lookup
    state = app_state(connection)
    state.follow_reloads()
    info, principal = _load(state, connection.cookies.get(COOKIE))
    connection.state.session = info
    connection.state.principal = principal
    if connection.scope["type"] == "http" and connection.scope["method"] not in SAFE_METHODS:
        await _check_csrf(connection, info)
    if handler.opt.get("public"):
        return
    if principal is None:
        raise LoginRequired()
    if principal.must_change_password and not handler.opt.get("password_change"):
        raise PasswordChangeRequired()


async def _check_csrf(connection: ASGIConnection, info: SessionInfo | None) -> None:
    """Synchroniser token: the session's secret must come back in a header (htmx) or a form field."""
    if info is None:
        raise CsrfFailed("页面已过期，请刷新后重试")
    sent = connection.headers.get("x-csrf-token")
    if not sent and isinstance(connection, Request):
        content_type = connection.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await connection.form()
            sent = form.get("_csrf")
    if not isinstance(sent, str) or not secrets.compare_digest(sent, info.csrf):
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


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"
