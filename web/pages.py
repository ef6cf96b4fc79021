"""Rendering helpers shared by controllers: the page context, flash messages, unit choices."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from litestar import Request
from litestar.response import Template
from sqlalchemy import update

from engine.org import Unit
from engine.permissions import Principal, forms_for, scope
from engine.spec import FormSpec
from engine.storage.models import Session
from engine.sessions import token_digest
from web.auth import COOKIE, app_state, csrf_token, optional_principal


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
    token = request.cookies.get(COOKIE)
    if not token:
        return
    with app_state(request).db.write() as s:
        s.execute(update(Session).where(Session.id == token_digest(token)).values(flash=message))
        s.commit()


def pop_flash(request: Request) -> str:
    info = request.state.get("session")
    if info is None or not info.flash:
        return ""
    with app_state(request).db.write() as s:
        s.execute(update(Session).where(Session.id == token_digest(info.token)).values(flash=""))
        s.commit()
    return info.flash


def units_for(request: Request, principal: Principal, form: FormSpec, action: str) -> list[Unit]:
    """Units a record of `form` may be placed in: the form's org level, inside the user's scope."""
    reach = scope(principal, action, form)
    units = app_state(request).units()
    return [
        u for u in units
        if (not form.unit_level or u.level == form.unit_level)
        and (reach.everything or any(u.path.startswith(p) for p in reach.paths)
             or (reach.own and any(u.path.startswith(p) for p in principal.unit_paths)))
    ]
