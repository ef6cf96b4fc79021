"""Login, logout and the password change (forced at first login, after a reset, or when the password is too old)."""
from __future__ import annotations

from functools import partial

import anyio
from litestar import Controller, Request, get, post
from litestar.response import Redirect, Response, Template

from engine.accounts import AccountInvalid, SignInDelayed, SignInFailed
from web.auth import COOKIE, app_state, clear_cookie, client_address, current_principal, session_cookie, with_form_token
from web.pages import flash, page

IDLE_NOTE = "您已较长时间未操作或已在别处退出，请重新登录。"


def _safe_next(target: object) -> str:
    # Only local paths: an attacker-supplied "next" must not send users off-site after login.
    if isinstance(target, str) and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def _login_page(request: Request, next_page: str, error: str = "", username: str = "", status: int = 200) -> Template:
    note = IDLE_NOTE if request.query_params.get("expired") == "1" and not error else ""
    template = page(request, "auth/login.html", next=next_page, error=error, username=username, note=note, title="登录")
    template.status_code = status
    return with_form_token(request, template)


class AuthController(Controller):
    path = "/"

    @get("/login", opt={"public": True}, name="auth:login_page")
    async def login_page(self, request: Request) -> Response:
        if request.state.get("principal") is not None:
            return Redirect("/", status_code=303)
        # Nothing is written: the form's CSRF token is a cookie of its own (web/auth.py: with_form_token).
        return _login_page(request, _safe_next(request.query_params.get("next")))

    @post("/login", opt={"public": True}, name="auth:login")
    async def login(self, request: Request) -> Response:
        data = await request.form()
        username, password = str(data.get("username", "")), str(data.get("password", ""))
        state = app_state(request)
        try:
            # Argon2 and the database's write lock: in a thread, never on the event loop.
            # A fresh session id at login: a session fixed before login is worthless after it.
            signed_in = await anyio.to_thread.run_sync(state.accounts.sign_in, username[:200], password,
                                                       client_address(request), request.cookies.get(COOKIE))
        except (SignInFailed, SignInDelayed) as refusal:
            return _login_page(request, _safe_next(data.get("next")), refusal.message, username[:200], status=401)
        target = "/password" if signed_in.must_change_password else _safe_next(data.get("next"))
        return Redirect(target, status_code=303, cookies=[session_cookie(request, signed_in.token)])

    @post("/logout", opt={"password_change": True}, name="auth:logout")
    async def logout(self, request: Request) -> Response:
        await anyio.to_thread.run_sync(app_state(request).accounts.sign_out, request.cookies.get(COOKIE))
        return Redirect("/login", status_code=303, cookies=[clear_cookie(request)])

    @get("/password", opt={"password_change": True}, name="auth:password_page")
    async def password_page(self, request: Request) -> Template:
        principal = current_principal(request)
        return page(request, "auth/password.html", errors=[], forced=principal.must_change_password, title="修改密码")

    @post("/password", opt={"password_change": True}, name="auth:password")
    async def change(self, request: Request) -> Response:
        principal = current_principal(request)
        data = await request.form()
        change = partial(app_state(request).accounts.change_password, principal, request.cookies.get(COOKIE, ""),
                         str(data.get("current", "")), str(data.get("new", "")), str(data.get("confirm", "")))
        try:
            signed_in = await anyio.to_thread.run_sync(change)
        except AccountInvalid as refusal:
            template = page(request, "auth/password.html", errors=refusal.problems, forced=principal.must_change_password,
                            title="修改密码")
            template.status_code = 422
            return template
        # Every other session of this user has ended; this one goes on under a new id (and CSRF token).
        flash(request, "密码已修改", session_secret=signed_in.csrf)
        return Redirect("/", status_code=303, cookies=[session_cookie(request, signed_in.token)])
