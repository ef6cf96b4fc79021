"""Rendering helpers shared by controllers: the page context, flash messages, unit choices."""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Callable

from litestar import Request
from litestar.datastructures import Cookie
from litestar.response import Template
from litestar.types import Message, Scope

from engine.org import Unit
from engine.permissions import Principal, forms_for, placeable_units
from engine.spec import FormSpec
from web.auth import SessionInfo, app_state, csrf_token, optional_principal

FLASH_COOKIE = "dangan_flash"
_FLASH_OUT, _FLASH_SHOWN = "flash_out", "flash_shown"  # request state read by send_flash_cookie


@dataclass(frozen=True)
class NavItem:
    """A navigation entry a feature package adds (e.g. 待办 with its count)."""

    key: str
    href: str
    label: str
    description: str = ""
    visible: Callable[[Principal], bool] = lambda _principal: True
    count: Callable[[Principal], int] | None = None


def nav_forms(request: Request) -> list[FormSpec]:
    principal = optional_principal(request)
    if principal is None:
        return []
    return forms_for(principal, app_state(request).definitions.forms.values())


def page(request: Request, template: str, **context: Any) -> Template:
    """A full page (or the same template as an htmx fragment): adds user, navigation, CSRF and flash."""
    context.setdefault("title", "")
    context.update(
        principal=optional_principal(request),
        nav_forms=nav_forms(request),
        csrf=csrf_token(request),
        flash=pop_flash(request),
        path=request.url.path,
        nav_extra=request.app.state.get("nav_extra", []),
    )
    return Template(template_name=template, context=context)


def flash(request: Request, message: str) -> None:
    """The message the next page shows, sent with this response in a cookie of its own (see send_flash_cookie): no
    database write to set it, and none to clear it once shown."""
    info: SessionInfo | None = request.state.get("session")
    if info is not None:
        request.state[_FLASH_OUT] = _signed(message, info.csrf)


def pop_flash(request: Request) -> str:
    """The message an earlier response left for this page, if it was meant for this session; this response clears it."""
    sent = request.cookies.get(FLASH_COOKIE)
    info: SessionInfo | None = request.state.get("session")
    if not sent or info is None:
        return ""
    request.state[_FLASH_SHOWN] = True
    return _verified(sent, info.csrf)


async def send_flash_cookie(message: Message, asgi_scope: Scope) -> None:
    """App-level before_send hook: sets the cookie `flash` asked for, or clears one `pop_flash` has shown."""
    if message["type"] != "http.response.start":
        return
    state = asgi_scope.get("state") or {}
    value = state.get(_FLASH_OUT)
    if value is None and not state.get(_FLASH_SHOWN):
        return
    secure = asgi_scope["app"].state["dangan"].settings.secure_cookies
    cookie = Cookie(key=FLASH_COOKIE, value=value or "", httponly=True, samesite="lax", secure=secure, path="/",
                    max_age=None if value else 0)
    message["headers"] = [*message.get("headers", []), cookie.to_encoded_header()]


def _signed(message: str, secret: str) -> str:
    # Signed with the session's own secret: a cookie planted from elsewhere, or left from another session, shows nothing.
    body = base64.urlsafe_b64encode(message.encode()).decode()
    return f"{body}.{_mac(body, secret)}"


def _verified(value: str, secret: str) -> str:
    body, _, mac = value.rpartition(".")
    if not body or not hmac.compare_digest(mac, _mac(body, secret)):
        return ""
    try:
        return base64.urlsafe_b64decode(body).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def _mac(body: str, secret: str) -> str:
    return hmac.new(secret.encode(), f"flash:{body}".encode(), hashlib.sha256).hexdigest()


def units_for(request: Request, principal: Principal, form: FormSpec, action: str) -> list[Unit]:
    """Units a record of `form` may be placed in: the form's org level, inside the user's scope."""
    return placeable_units(app_state(request).units(), principal, form, action)
