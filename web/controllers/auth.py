"""Signing in (password, then the authenticator's code where enrolled), signing out, the password change, 忘记密码
(codes sent or issued), and the user's own two-factor settings."""
from __future__ import annotations

import threading
from functools import partial

import anyio
from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.response import Redirect, Response, Template

from engine.accounts import AccountInvalid, ChallengeRequired, SignedIn, SignInDelayed, SignInFailed
from engine.passwords import verify
from engine.recovery import ResetCodeInvalid
from engine.refusals import NotPermitted
from engine.storage.models import User
from engine.twofactor import SecondFactorFailed, required as two_factor_required
from web.auth import (COOKIE, app_state, clear_cookie, client_address, current_principal, session_cookie,
                      with_form_token)
from web.pages import flash, page

IDLE_NOTE = "您已较长时间未操作或已在别处退出，请重新登录。"
RESET_NOTE = "密码已重置，请用新密码登录。"
# Opened before the password is changed or two-factor sign-in is set up, when either is required.
ACCOUNT_STEP = {"password_change": True, "two_factor_setup": True}


async def reset_codes_guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """Administrators, and roles with `issue_reset_codes` (RecoveryService.issue checks each user's scope)."""
    principal = connection.state.principal
    if not principal.is_admin and not any(role.issue_reset_codes for role in principal.roles):
        raise NotPermitted()


def _safe_next(target: object) -> str:
    # Only local paths: an attacker-supplied "next" must not send users off-site after login.
    if isinstance(target, str) and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def _login_page(request: Request, next_page: str, error: str = "", username: str = "", status: int = 200) -> Template:
    shown = {"1": IDLE_NOTE}.get(request.query_params.get("expired", "")) or (
        RESET_NOTE if request.query_params.get("reset") == "1" else "")
    challenge = app_state(request).accounts.challenge_for(client_address(request))
    template = page(request, "auth/login.html", next=next_page, error=error, username=username,
                    note="" if error else shown, challenge=challenge, title="登录")
    template.status_code = status
    return with_form_token(request, template)


def _signed_in(request: Request, signed_in: SignedIn, next_page: str) -> Redirect:
    if signed_in.second_factor:
        target = "/login/2fa?next=" + next_page
    else:
        target = "/password" if signed_in.must_change_password else next_page
    return Redirect(target, status_code=303, cookies=[session_cookie(request, signed_in.token)])


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
        username, password = str(data.get("username", ""))[:200], str(data.get("password", ""))
        state = app_state(request)
        sign_in = partial(state.accounts.sign_in, username, password, client_address(request),
                          # A fresh session id at login: a session fixed before login is worthless after it.
                          request.cookies.get(COOKIE), str(data.get("challenge_token", "")),
                          str(data.get("challenge_answer", "")))
        try:
            # Argon2 and the database's write lock: in a thread, never on the event loop.
            signed_in = await app_state(request).writes.in_thread(sign_in)
        except (SignInFailed, SignInDelayed, ChallengeRequired) as refusal:
            return _login_page(request, _safe_next(data.get("next")), refusal.message, username, status=401)
        return _signed_in(request, signed_in, _safe_next(data.get("next")))

    @get("/login/2fa", opt={"public": True}, name="auth:second_factor_page")
    async def second_factor_page(self, request: Request) -> Response:
        session = request.state.get("session")
        if session is None or not session.pending:
            return Redirect("/login", status_code=303)
        return page(request, "auth/second_factor.html", next=_safe_next(request.query_params.get("next")), error="",
                    title="两步验证")

    @post("/login/2fa", opt={"public": True}, name="auth:second_factor")
    async def second_factor(self, request: Request) -> Response:
        session = request.state.get("session")
        data = await request.form()
        if session is None or not session.pending:
            return Redirect("/login", status_code=303)
        complete = partial(app_state(request).two_factor.complete_sign_in, session.token, str(data.get("code", ""))[:40],
                           client_address(request))
        try:
            signed_in = await app_state(request).writes.in_thread(complete)
        except (SecondFactorFailed, SignInDelayed) as refusal:
            template = page(request, "auth/second_factor.html", next=_safe_next(data.get("next")), error=refusal.message,
                            title="两步验证")
            template.status_code = 401
            return template
        return _signed_in(request, signed_in, _safe_next(data.get("next")))

    @post("/logout", opt=ACCOUNT_STEP, name="auth:logout")
    async def logout(self, request: Request) -> Response:
        await app_state(request).writes.in_thread(app_state(request).accounts.sign_out, request.cookies.get(COOKIE))
        return Redirect("/login", status_code=303, cookies=[clear_cookie(request)])

    @get("/password", opt=ACCOUNT_STEP, name="auth:password_page")
    async def password_page(self, request: Request) -> Template:
        principal = current_principal(request)
        return page(request, "auth/password.html", errors=[], forced=principal.must_change_password, title="修改密码")

    @post("/password", opt=ACCOUNT_STEP, name="auth:password")
    async def change(self, request: Request) -> Response:
        principal = current_principal(request)
        data = await request.form()
        change = partial(app_state(request).accounts.change_password, principal, request.cookies.get(COOKIE, ""),
                         str(data.get("current", "")), str(data.get("new", "")), str(data.get("confirm", "")))
        try:
            signed_in = await app_state(request).writes.in_thread(change)
        except AccountInvalid as refusal:
            template = page(request, "auth/password.html", errors=refusal.problems, forced=principal.must_change_password,
                            title="修改密码")
            template.status_code = 422
            return template
        # Every other session of this user has ended; this one goes on under a new id (and CSRF token).
        flash(request, "密码已修改", session_secret=signed_in.csrf)
        return Redirect("/", status_code=303, cookies=[session_cookie(request, signed_in.token)])

    # --- 忘记密码 ------------------------------------------------------------------------------------------------
    @get("/forgot", opt={"public": True}, name="auth:forgot_page")
    async def forgot_page(self, request: Request) -> Template:
        return _forgot_page(request, sent=False)

    @post("/forgot", opt={"public": True}, name="auth:forgot")
    async def forgot(self, request: Request) -> Template:
        data = await request.form()
        recovery = app_state(request).recovery
        if recovery.self_service:
            # Sent from a thread of its own, not awaited: the answer comes as soon for an account that does not exist
            # as for one whose mail server is slow.
            threading.Thread(target=recovery.request, args=(str(data.get("username", ""))[:200], client_address(request)),
                             name="dangan-reset-mail", daemon=True).start()
        return _forgot_page(request, sent=recovery.self_service)

    @get("/reset", opt={"public": True}, name="auth:reset_page")
    async def reset_page(self, request: Request) -> Template:
        params = request.query_params
        return with_form_token(request, page(request, "auth/reset.html", errors=[], username=params.get("user", ""),
                                             code=params.get("code", ""), title="重置密码"))

    @post("/reset", opt={"public": True}, name="auth:reset")
    async def reset(self, request: Request) -> Response:
        data = await request.form()
        username, code = str(data.get("username", ""))[:200], str(data.get("code", ""))[:100]
        reset = partial(app_state(request).recovery.reset, username, code, str(data.get("new", "")),
                        str(data.get("confirm", "")), client_address(request))
        try:
            await app_state(request).writes.in_thread(reset)
        except (ResetCodeInvalid, AccountInvalid) as refusal:
            problems = refusal.problems if isinstance(refusal, AccountInvalid) else [refusal.message]
            template = page(request, "auth/reset.html", errors=problems, username=username, code=code, title="重置密码")
            template.status_code = 422
            return with_form_token(request, template)
        return Redirect("/login?reset=1", status_code=303, cookies=[clear_cookie(request)])

    @get("/account/reset-codes", guards=[reset_codes_guard], name="auth:reset_codes_page")
    async def reset_codes_page(self, request: Request) -> Template:
        return _reset_codes_page(request)

    @post("/account/reset-codes", guards=[reset_codes_guard], name="auth:issue_reset_code")
    async def issue_reset_code(self, request: Request) -> Template:
        state, principal = app_state(request), current_principal(request)
        username = str((await request.form()).get("username", "")).strip()[:200]
        user = state.recovery.issuable_users(principal, state.definitions, username)
        if user is None:
            return _reset_codes_page(request, error=f"没有您可以为其生成重置码的用户“{username}”", status=422)
        user, code = await app_state(request).writes.in_thread(state.recovery.issue, principal, state.definitions, user.id)
        return _reset_codes_page(request, user=user, code=code)

    # --- the user's own two-factor sign-in ---------------------------------------------------------------------
    @get("/account/2fa", opt={"two_factor_setup": True}, name="auth:two_factor_page")
    async def two_factor_page(self, request: Request) -> Template:
        return _two_factor_page(request)

    @post("/account/2fa/begin", opt={"two_factor_setup": True}, name="auth:two_factor_begin")
    async def two_factor_begin(self, request: Request) -> Template:
        await app_state(request).writes.in_thread(app_state(request).two_factor.begin, current_principal(request))
        return _two_factor_page(request)

    @post("/account/2fa/confirm", opt={"two_factor_setup": True}, name="auth:two_factor_confirm")
    async def two_factor_confirm(self, request: Request) -> Template:
        code = str((await request.form()).get("code", ""))[:40]
        try:
            codes = await app_state(request).writes.in_thread(app_state(request).two_factor.confirm, current_principal(request), code)
        except AccountInvalid as refusal:
            return _two_factor_page(request, errors=refusal.problems, status=422)
        return _two_factor_page(request, recovery_codes=codes)

    @post("/account/2fa/disable", opt={"two_factor_setup": True}, name="auth:two_factor_disable")
    async def two_factor_disable(self, request: Request) -> Response:
        state, principal = app_state(request), current_principal(request)
        password = str((await request.form()).get("password", ""))
        with state.db.read() as s:
            stored = s.get(User, principal.user_id)
        right = await anyio.to_thread.run_sync(verify, stored.password_hash if stored else None, password)
        if not right:
            return _two_factor_page(request, errors=["当前密码不正确"], status=422)
        if two_factor_required(principal.roles):
            raise NotPermitted()
        await app_state(request).writes.in_thread(state.two_factor.disable, principal, principal.user_id)
        flash(request, "两步验证已关闭")
        return Redirect("/account/2fa", status_code=303)


def _forgot_page(request: Request, sent: bool) -> Template:
    state = app_state(request)
    channels = "、".join({"email": "邮箱", "sms": "手机号"}.get(s.channel, s.channel) for s in state.recovery.senders)
    template = page(request, "auth/forgot.html", sent=sent, self_service=state.recovery.self_service, channels=channels,
                    help=state.settings.password_help, title="忘记密码")
    return with_form_token(request, template)


def _reset_codes_page(request: Request, error: str = "", user: User | None = None, code: str = "",
                      status: int = 200) -> Template:
    template = page(request, "auth/reset_codes.html", error=error, user=user, code=code,
                    hours=app_state(request).settings.reset_code_hours, title="生成重置码")
    template.status_code = status
    template.headers.update({"Cache-Control": "no-store"})
    return template


def _two_factor_page(request: Request, errors: list[str] | None = None, recovery_codes: list[str] | None = None,
                     status: int = 200) -> Template:
    two_factor, principal = app_state(request).two_factor, current_principal(request)
    enabled = two_factor.enabled(principal)
    template = page(request, "auth/two_factor.html", errors=errors or [], recovery_codes=recovery_codes or [],
                    enabled=enabled, required=two_factor_required(principal.roles),
                    enrollment=None if enabled else two_factor.pending(principal),
                    remaining=two_factor.remaining_recovery_codes(principal) if enabled else 0, title="两步验证")
    template.status_code = status
    return template
