"""System administration: definition reloads, the org tree, user accounts (admin roles only)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.response import Redirect, Response, Template
from sqlalchemy import func, select

from engine.accounts import AccountInvalid, UserChanges
from engine.passwords import generate_password
from engine.backup.schedule import backup_status
from engine.org import all_units
from engine.org_units import OrgUnitService, UnitInUse
from engine.storage.models import OrgUnit, User
from engine.storage.projection import pending_refreshes
from web.auth import COOKIE, app_state, current_principal
from web.guards import admin_guard
from web.pages import flash, page
from web.params import Id, parse_id

# A shown password must not stay in a browser or proxy cache.
NO_STORE = {"Cache-Control": "no-store"}


@dataclass
class UserForm:
    """What the user form posted, kept as typed so a refused form comes back filled in."""

    username: str = ""
    display_name: str = ""
    password: str = ""
    roles: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    active: bool = True
    email: str = ""
    phone: str = ""

    def changes(self) -> UserChanges:
        # An id that is no id (0) names no unit: the service reports it with the others.
        return UserChanges(self.display_name, tuple(self.roles), tuple(parse_id(u) or 0 for u in self.units), self.active,
                           self.email, self.phone)


class AdminController(Controller):
    path = "/admin"
    guards = [admin_guard]

    @get("/", name="admin:overview")
    async def overview(self, request: Request) -> Template:
        return _overview(request)

    @post("/reload", name="admin:reload")
    async def reload(self, request: Request) -> Template:
        outcome = app_state(request).reload()
        template = _overview(request, outcome=outcome)
        template.status_code = 200 if outcome.ok else 422
        return template

    @get("/units", name="admin:units")
    async def units(self, request: Request) -> Template:
        parent = request.query_params.get("parent", "")
        return _units_page(request, {"parent": parent, "name": "", "level": ""})

    @get("/units/levels", name="admin:unit_levels")
    async def unit_levels(self, request: Request) -> Template:
        """htmx: the level options a child of the chosen parent may take."""
        state = app_state(request)
        levels = _org(request).levels_under(current_principal(request), state.definitions,
                                            parse_id(request.query_params.get("parent", "")))
        return Template(template_name="admin/level_options.html", context={"levels": levels, "chosen": ""})

    @post("/units", name="admin:create_unit")
    async def add_unit(self, request: Request) -> Response:
        data = await request.form()
        typed = {k: str(data.get(k, "")).strip() for k in ("parent", "name", "level")}
        state = app_state(request)
        try:
            unit_id = await app_state(request).writes.in_thread(partial(
                _org(request).create, current_principal(request), state.definitions, parse_id(typed["parent"]),
                typed["name"], typed["level"], parent_given=bool(typed["parent"])))
        except AccountInvalid as exc:
            return _units_page(request, typed, exc.problems, status=422)
        state.units_changed()
        flash(request, f"已添加单位“{typed['name']}”")
        return Redirect(f"/admin/units#u-{unit_id}", status_code=303)

    @get("/units/{unit_id:int}", name="admin:unit")
    async def unit_detail(self, request: Request, unit_id: Id) -> Template:
        return _unit_page(request, unit_id)

    @post("/units/{unit_id:int}/rename", name="admin:rename_unit")
    async def rename_unit(self, request: Request, unit_id: Id) -> Response:
        name = str((await request.form()).get("name", "")).strip()
        try:
            await app_state(request).writes.in_thread(_org(request).rename, current_principal(request), unit_id, name)
        except AccountInvalid as exc:
            return _unit_page(request, unit_id, exc.problems, typed_name=name, status=422)
        app_state(request).units_changed()
        flash(request, f"已重命名为“{name}”")
        return Redirect(f"/admin/units/{unit_id}", status_code=303)

    @post("/units/{unit_id:int}/delete", name="admin:delete_unit")
    async def delete_unit(self, request: Request, unit_id: Id) -> Response:
        try:
            name = await app_state(request).writes.in_thread(_org(request).delete, current_principal(request), unit_id)
        except UnitInUse as exc:
            return _unit_page(request, unit_id, [exc.message], status=409)
        app_state(request).units_changed()
        flash(request, f"已删除单位“{name}”")
        return Redirect("/admin/units", status_code=303)

    @get("/users", name="admin:users")
    async def users(self, request: Request) -> Template:
        search = request.query_params.get("q", "").strip()
        state = app_state(request)
        rows = state.accounts.listing(current_principal(request), state.definitions, search)
        return page(request, "admin/users.html", rows=rows, search=search, title="用户管理")

    @get("/users/new", name="admin:new_user")
    async def new_user(self, request: Request) -> Template:
        return _user_form_page(request, UserForm(), user=None)

    @post("/users/new", name="admin:create_user")
    async def add_user(self, request: Request) -> Template:
        typed = _read_user_form(await request.form())
        state = app_state(request)
        password = typed.password or generate_password()
        try:
            user = await app_state(request).writes.in_thread(partial(
                state.accounts.create_user, current_principal(request), state.definitions, typed.username, password,
                typed.changes()))
        except AccountInvalid as exc:
            return _user_form_page(request, typed, user=None, problems=exc.problems, status=422)
        return _password_page(request, user=user, password=password, created=True, title="用户已创建")

    @get("/users/{user_id:int}", name="admin:user")
    async def user_detail(self, request: Request, user_id: Id) -> Template:
        user, roles, units = app_state(request).accounts.get_user(current_principal(request), user_id)
        typed = UserForm(username=user.username, display_name=user.display_name, active=user.is_active, roles=roles,
                         units=[str(i) for i in units], email=user.email, phone=user.phone)
        return _user_form_page(request, typed, user=user)

    @post("/users/{user_id:int}", name="admin:update_user")
    async def update_user(self, request: Request, user_id: Id) -> Response:
        typed = _read_user_form(await request.form())
        state, me = app_state(request), current_principal(request)
        user, _roles, _units = state.accounts.get_user(me, user_id)
        typed.username = user.username
        try:
            await app_state(request).writes.in_thread(state.accounts.update_user, me, state.definitions, user_id, typed.changes())
        except AccountInvalid as exc:
            return _user_form_page(request, typed, user=user, problems=exc.problems, status=422)
        flash(request, "已保存")
        return Redirect(f"/admin/users/{user_id}", status_code=303)

    @post("/users/{user_id:int}/reset-password", name="admin:reset_password")
    async def reset_user_password(self, request: Request, user_id: Id) -> Template:
        # Whoever held the old password is signed out; the admin's own session survives.
        reset = partial(app_state(request).accounts.reset_password, current_principal(request), user_id,
                        request.cookies.get(COOKIE))
        user, password = await app_state(request).writes.in_thread(reset)
        return _password_page(request, user=user, password=password, created=False, title="密码已重置")

    @post("/users/{user_id:int}/2fa/disable", name="admin:disable_two_factor")
    async def disable_two_factor(self, request: Request, user_id: Id) -> Redirect:
        """For a user whose phone is lost (and who has no recovery code left): they set it up again."""
        await app_state(request).writes.in_thread(app_state(request).two_factor.disable, current_principal(request), user_id)
        flash(request, "已关闭该用户的两步验证")
        return Redirect(f"/admin/users/{user_id}", status_code=303)

    @post("/users/{user_id:int}/unlock", name="admin:unlock")
    async def unlock(self, request: Request, user_id: Id) -> Redirect:
        accounts, me = app_state(request).accounts, current_principal(request)
        user, _roles, _units = accounts.get_user(me, user_id)
        await app_state(request).writes.in_thread(accounts.unlock, me, user.username)
        flash(request, f"已解除用户“{user.username}”的登录限制")
        return Redirect(f"/admin/users/{user_id}", status_code=303)


# --- overview ----------------------------------------------------------------------------------------
def _overview(request: Request, outcome: Any = None) -> Template:
    state = app_state(request)
    with state.db.read() as s:
        users = s.scalar(select(func.count()).select_from(User)) or 0
        active = s.scalar(select(func.count()).select_from(User).where(User.is_active.is_(True))) or 0
        units = s.scalar(select(func.count()).select_from(OrgUnit)) or 0
        backup = backup_status(s, state.settings.backup_schedule())
    recomputing = [(state.definitions.forms[k].title, n) for k, n in pending_refreshes(state.db).items()
                   if k in state.definitions.forms]
    return page(request, "admin/overview.html", definitions=state.definitions, users=users, active_users=active,
                units=units, outcome=outcome, backup=backup, recomputing=recomputing, title="系统管理")


# --- org units ---------------------------------------------------------------------------------------
def _org(request: Request) -> OrgUnitService:
    return OrgUnitService(app_state(request).db)


def _units_page(request: Request, typed: dict[str, str], problems: list[str] | None = None, status: int = 200) -> Template:
    state, me = app_state(request), current_principal(request)
    levels = _org(request).levels_under(me, state.definitions, parse_id(typed["parent"]))
    template = page(request, "admin/units.html", rows=_org(request).rows(me, state.definitions), typed=typed,
                    levels=levels, problems=problems or [], title="组织机构")
    template.status_code = status
    return template


def _unit_page(request: Request, unit_id: int, problems: list[str] | None = None, typed_name: str | None = None,
               status: int = 200) -> Template:
    row = _org(request).row(current_principal(request), app_state(request).definitions, unit_id)
    template = page(request, "admin/unit.html", row=row, problems=problems or [],
                    typed_name=row.unit.name if typed_name is None else typed_name, title="组织机构")
    template.status_code = status
    return template


# --- users -------------------------------------------------------------------------------------------
def _read_user_form(data: FormMultiDict) -> UserForm:
    return UserForm(
        username=str(data.get("username", "")).strip(), display_name=str(data.get("display_name", "")).strip(),
        password=str(data.get("password", "")), roles=[str(r) for r in data.getall("roles", [])],
        units=[str(u) for u in data.getall("units", [])], active=data.get("active") == "1",
        email=str(data.get("email", "")).strip(), phone=str(data.get("phone", "")).strip(),
    )


def _user_form_page(request: Request, typed: UserForm, user: User | None, problems: list[str] | None = None,
                    status: int = 200) -> Template:
    state = app_state(request)
    with state.db.read() as s:
        units = all_units(s)
    template = page(request, "admin/user_form.html", typed=typed, user=user, problems=problems or [],
                    roles=list(state.definitions.roles.values()), units=units,
                    delayed=user is not None and bool(state.accounts.delayed([user.username])),
                    has_totp=user is not None and user.totp_secret is not None,
                    is_self=user is not None and user.id == current_principal(request).user_id,
                    title="新建用户" if user is None else "编辑用户")
    template.status_code = status
    return template


def _password_page(request: Request, **context: Any) -> Template:
    template = page(request, "admin/password.html", **context)
    template.headers.update(NO_STORE)
    return template
