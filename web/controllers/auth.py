"""Login, logout and the password change (forced at first login)."""
from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Response, Template

from engine.accounts import authenticate, change_password
from engine.sessions import close_session, open_session
from engine.storage.models import User
from web.auth import COOKIE, app_state, clear_cookie, current_principal, session_cookie
from web.pages import flash, page


def _safe_next(target: str | None) -> str:
    # Only local paths: an attacker-supplied "next" must not send users off-site after login.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


class AuthController(Controller):
    path = "/"

    @get("/login", opt={"public": True}, name="auth:login_page")
    async def login_page(self, request: Request) -> Response:
        if request.state.get("principal") is not None:
            return Redirect("/", status_code=303)
        template = page(request, "auth/login.html", next=_safe_next(request.query_params.get("next")), error="", username="")
        if request.state.get("session") is None:
            # An anonymous session carries the CSRF token the login form posts back.
            with app_state(request).db.write() as s:
                token, row = open_session(s, None)
                s.commit()
            template.context["csrf"] = row.csrf_token
            template.cookies.append(session_cookie(token, app_state(request).settings.secure_cookies))
        return template

    @post("/login", opt={"public": True}, name="auth:login")
    async def login(self, request: Request) -> Response:
        data = await request.form()
        username, password = str(data.get("username", "")), str(data.get("password", ""))
        state = app_state(request)
        with state.db.write() as s:
            outcome = authenticate(s, username, password)
            if outcome.user is None:
                s.commit()
                template = page(request, "auth/login.html", next=_safe_next(data.get("next")), error=outcome.error, username=username)
                template.status_code = 401
                return template
            # A fresh session id at login: a session fixed before login is worthless after it.
            close_session(s, request.cookies.get(COOKIE))
            token, _ = open_session(s, outcome.user.id)
            must_change = outcome.user.must_change_password
            s.commit()
        target = "/password" if must_change else _safe_next(data.get("next"))
        return Redirect(target, status_code=303, cookies=[session_cookie(token, state.settings.secure_cookies)])

    @post("/logout", opt={"password_change": True}, name="auth:logout")
    async def logout(self, request: Request) -> Response:
        state = app_state(request)
        with state.db.write() as s:
            close_session(s, request.cookies.get(COOKIE))
            s.commit()
        return Redirect("/login", status_code=303, cookies=[clear_cookie(state.settings.secure_cookies)])

    @get("/password", opt={"password_change": True}, name="auth:password_page")
    async def password_page(self, request: Request) -> Template:
        principal = current_principal(request)
        return page(request, "auth/password.html", errors=[], forced=principal.must_change_password, title="修改密码")

    @post("/password", opt={"password_change": True}, name="auth:password")
    async def change(self, request: Request) -> Response:
        principal = current_principal(request)
        data = await request.form()
        with app_state(request).db.write() as s:
            user = s.get(User, principal.user_id)
            errors = change_password(s, user, str(data.get("current", "")), str(data.get("new", "")), str(data.get("confirm", "")))
            if errors:
                s.rollback()
                template = page(request, "auth/password.html", errors=errors, forced=principal.must_change_password, title="修改密码")
                template.status_code = 422
                return template
            s.commit()
        flash(request, "密码已修改")
        return Redirect("/", status_code=303)
