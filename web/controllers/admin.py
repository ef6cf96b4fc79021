"""System administration: definition reloads, the org tree, user accounts (admin roles only)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Response, Template
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from engine.accounts import AccountError, create_user, generate_password, reset_password, set_memberships
from engine.org import Unit, all_units, ancestor_ids, create_unit, move_unit_name
from engine.sessions import token_digest
from engine.spec import Definitions, OrgLevel
from engine.storage.models import OrgUnit, Record, Session, User, UserRole, UserUnit, holds_id, utcnow
from web.auth import COOKIE, app_state, current_principal
from web.guards import admin_guard
from web.pages import flash, page
from web.params import Id, parse_id

# A shown password must not stay in a browser or proxy cache.
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class UnitRow:
    unit: Unit
    depth: int
    level_label: str
    children: int
    users: int
    records: int
    can_have_children: bool

    @property
    def blockers(self) -> list[str]:
        return _describe_blockers(self.children, self.users, self.records)


@dataclass
class UserForm:
    """What the user form posted, kept as typed so a refused form comes back filled in."""

    username: str = ""
    display_name: str = ""
    password: str = ""
    roles: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    active: bool = True


@dataclass(frozen=True)
class UserRow:
    user: User
    roles: list[str]
    units: list[str]
    locked: bool


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
        with app_state(request).db.read() as s:
            levels = _child_levels(app_state(request).definitions, _unit(s, request.query_params.get("parent", "")))
        return Template(template_name="admin/level_options.html", context={"levels": levels, "chosen": ""})

    @post("/units", name="admin:create_unit")
    async def add_unit(self, request: Request) -> Response:
        data = await request.form()
        typed = {k: str(data.get(k, "")).strip() for k in ("parent", "name", "level")}
        with app_state(request).db.write() as s:
            parent = _unit(s, typed["parent"])
            problems = _new_unit_problems(s, app_state(request).definitions, typed, parent)
            if not problems:
                unit = create_unit(s, typed["name"], typed["level"], parent)
                s.commit()
                app_state(request).units_changed()
        if problems:
            return _units_page(request, typed, problems, status=422)
        flash(request, f"已添加单位“{typed['name']}”")
        return Redirect(f"/admin/units#u-{unit.id}", status_code=303)

    @get("/units/{unit_id:int}", name="admin:unit")
    async def unit_detail(self, request: Request, unit_id: Id) -> Template:
        return _unit_page(request, unit_id)

    @post("/units/{unit_id:int}/rename", name="admin:rename_unit")
    async def rename_unit(self, request: Request, unit_id: Id) -> Response:
        name = str((await request.form()).get("name", "")).strip()
        with app_state(request).db.write() as s:
            unit = _unit_or_404(s, unit_id)
            problems = _name_problems(s, name, unit.parent_id, exclude=unit.id)
            if not problems:
                move_unit_name(s, unit.id, name)
                s.commit()
                app_state(request).units_changed()
        if problems:
            return _unit_page(request, unit_id, problems, typed_name=name, status=422)
        flash(request, f"已重命名为“{name}”")
        return Redirect(f"/admin/units/{unit_id}", status_code=303)

    @post("/units/{unit_id:int}/delete", name="admin:delete_unit")
    async def delete_unit(self, request: Request, unit_id: Id) -> Response:
        state = app_state(request)
        try:
            with state.db.write() as s:
                unit = _unit_or_404(s, unit_id)
                name, blockers = unit.name, _blockers(s, unit_id)
                if not blockers:
                    s.delete(unit)
                    s.commit()
        except IntegrityError:
            # A feature's own table may still point at the unit; the foreign key has the last word.
            return _unit_page(request, unit_id, [f"不能删除“{name}”：它仍被其他数据引用。"], status=409)
        if blockers:
            return _unit_page(request, unit_id, [f"不能删除“{name}”：它还有{'、'.join(blockers)}。请先移走或删除这些内容。"],
                              status=409)
        state.units_changed()
        flash(request, f"已删除单位“{name}”")
        return Redirect("/admin/units", status_code=303)

    @get("/users", name="admin:users")
    async def users(self, request: Request) -> Template:
        search = request.query_params.get("q", "").strip()
        return page(request, "admin/users.html", rows=_user_rows(request, search), search=search, title="用户管理")

    @get("/users/new", name="admin:new_user")
    async def new_user(self, request: Request) -> Template:
        return _user_form_page(request, UserForm(), user=None)

    @post("/users/new", name="admin:create_user")
    async def add_user(self, request: Request) -> Template:
        typed = _read_user_form(await request.form())
        state = app_state(request)
        password = typed.password or generate_password()
        with state.db.write() as s:
            problems, unit_ids = _membership_problems(s, state.definitions, typed)
            try:
                user = create_user(s, typed.username, password, typed.roles, unit_ids, display_name=typed.display_name)
            except AccountError as exc:
                problems.insert(0, str(exc))
            if problems:
                s.rollback()
            else:
                s.commit()
        if problems:
            return _user_form_page(request, typed, user=None, problems=problems, status=422)
        return _password_page(request, user=user, password=password, created=True, title="用户已创建")

    @get("/users/{user_id:int}", name="admin:user")
    async def user_detail(self, request: Request, user_id: Id) -> Template:
        with app_state(request).db.read() as s:
            user = _user_or_404(s, user_id)
            typed = UserForm(username=user.username, display_name=user.display_name, active=user.is_active,
                             roles=list(s.scalars(select(UserRole.role_key).where(UserRole.user_id == user_id))),
                             units=[str(i) for i in s.scalars(select(UserUnit.unit_id).where(UserUnit.user_id == user_id))])
        return _user_form_page(request, typed, user=user)

    @post("/users/{user_id:int}", name="admin:update_user")
    async def update_user(self, request: Request, user_id: Id) -> Response:
        typed = _read_user_form(await request.form())
        state, me = app_state(request), current_principal(request)
        with state.db.write() as s:
            user = _user_or_404(s, user_id)
            typed.username = user.username
            problems, unit_ids = _membership_problems(s, state.definitions, typed)
            if user.id == me.user_id:
                problems += _self_problems(state.definitions, typed)
            if not problems:
                _save_user(s, user, typed, unit_ids)
                s.commit()
        if problems:
            return _user_form_page(request, typed, user=user, problems=problems, status=422)
        flash(request, "已保存")
        return Redirect(f"/admin/users/{user_id}", status_code=303)

    @post("/users/{user_id:int}/reset-password", name="admin:reset_password")
    async def reset_user_password(self, request: Request, user_id: Id) -> Template:
        with app_state(request).db.write() as s:
            user = _user_or_404(s, user_id)
            password = reset_password(s, user)
            # Whoever held the old password is signed out; the admin's own session survives.
            s.execute(delete(Session).where(Session.user_id == user.id,
                                            Session.id != token_digest(request.cookies.get(COOKIE, ""))))
            s.commit()
        return _password_page(request, user=user, password=password, created=False, title="密码已重置")

    @post("/users/{user_id:int}/unlock", name="admin:unlock")
    async def unlock(self, request: Request, user_id: Id) -> Redirect:
        with app_state(request).db.write() as s:
            user = _user_or_404(s, user_id)
            user.failed_logins = 0
            user.locked_until = None
            s.commit()
        flash(request, f"已解锁用户“{user.username}”")
        return Redirect(f"/admin/users/{user_id}", status_code=303)


# --- overview ----------------------------------------------------------------------------------------
def _overview(request: Request, outcome: Any = None) -> Template:
    state = app_state(request)
    with state.db.read() as s:
        users = s.scalar(select(func.count()).select_from(User)) or 0
        active = s.scalar(select(func.count()).select_from(User).where(User.is_active.is_(True))) or 0
        units = s.scalar(select(func.count()).select_from(OrgUnit)) or 0
    return page(request, "admin/overview.html", definitions=state.definitions, users=users, active_users=active,
                units=units, outcome=outcome, title="系统管理")


# --- org units ---------------------------------------------------------------------------------------
def _unit(s: DbSession, raw: str) -> OrgUnit | None:
    unit_id = parse_id(raw)
    return s.get(OrgUnit, unit_id) if unit_id is not None and holds_id(OrgUnit, unit_id) else None


def _unit_or_404(s: DbSession, unit_id: int) -> OrgUnit:
    unit = s.get(OrgUnit, unit_id) if holds_id(OrgUnit, unit_id) else None
    if unit is None:
        raise NotFoundException("没有这个单位")
    return unit


def _level_labels(definitions: Definitions) -> dict[str, str]:
    return {level.key: level.label for level in definitions.org_levels}


def _child_levels(definitions: Definitions, parent: OrgUnit | None) -> list[OrgLevel]:
    """The org levels run top-down: a top unit takes the first level, a child the level after its parent's."""
    levels = list(definitions.org_levels)
    if parent is None:
        return levels[:1]
    keys = [level.key for level in levels]
    if parent.level not in keys:
        return []
    at = keys.index(parent.level)
    return levels[at + 1:at + 2]


def _name_problems(s: DbSession, name: str, parent_id: int | None, exclude: int | None = None) -> list[str]:
    if not name:
        return ["请填写单位名称"]
    if len(name) > 100:
        return ["单位名称不能超过100个字"]
    if "/" in name:
        # Full names are joined with "/" (e.g. in `dangan create-user --unit`).
        return ["单位名称不能包含“/”"]
    same = select(OrgUnit.id).where(OrgUnit.name == name,
                                    OrgUnit.parent_id.is_(None) if parent_id is None else OrgUnit.parent_id == parent_id)
    if exclude is not None:
        same = same.where(OrgUnit.id != exclude)
    if s.scalar(same) is not None:
        return [f"同一上级下已有名为“{name}”的单位"]
    return []


def _new_unit_problems(s: DbSession, definitions: Definitions, typed: dict[str, str], parent: OrgUnit | None) -> list[str]:
    labels = _level_labels(definitions)
    if typed["parent"] and parent is None:
        return ["所选上级单位不存在"]
    problems = _name_problems(s, typed["name"], parent.id if parent else None)
    allowed = _child_levels(definitions, parent)
    if not allowed:
        problems.append(f"“{parent.name if parent else ''}”（{labels.get(parent.level, parent.level) if parent else ''}）是最低一级，不能再添加下级单位")
    elif typed["level"] not in {level.key for level in allowed}:
        where = f"“{parent.name}”（{labels.get(parent.level, parent.level)}）下" if parent else "最上一级"
        problems.append(f"{where}只能添加“{'、'.join(level.label for level in allowed)}”一级的单位")
    return problems


def _describe_blockers(children: int, users: int, records: int) -> list[str]:
    """Why a unit may not be deleted; empty for an empty leaf."""
    counts = ((children, "个下级单位"), (users, "名用户"), (records, "条档案记录"))
    return [f"{n}{what}" for n, what in counts if n]


def _blockers(s: DbSession, unit_id: int) -> list[str]:
    def count(model: Any, column: Any) -> int:
        return s.scalar(select(func.count()).select_from(model).where(column == unit_id)) or 0
    return _describe_blockers(count(OrgUnit, OrgUnit.parent_id), count(UserUnit, UserUnit.unit_id), count(Record, Record.unit_id))


def _counts(s: DbSession, column: Any) -> dict[int, int]:
    return {k: n for k, n in s.execute(select(column, func.count()).group_by(column)) if k is not None}


def _unit_rows(request: Request) -> list[UnitRow]:
    """The whole tree depth-first, siblings in the order they were created."""
    definitions = app_state(request).definitions
    labels = _level_labels(definitions)
    parents = {level.key for level in definitions.org_levels[:-1]}
    with app_state(request).db.read() as s:
        units = sorted(all_units(s), key=lambda u: ancestor_ids(u.path))
        children = _counts(s, OrgUnit.parent_id)
        users = _counts(s, UserUnit.unit_id)
        records = _counts(s, Record.unit_id)
    return [UnitRow(u, len(ancestor_ids(u.path)) - 1, labels.get(u.level, u.level), children.get(u.id, 0),
                    users.get(u.id, 0), records.get(u.id, 0), u.level in parents) for u in units]


def _unit_row(request: Request, unit_id: int) -> UnitRow:
    row = next((r for r in _unit_rows(request) if r.unit.id == unit_id), None)
    if row is None:
        raise NotFoundException("没有这个单位")
    return row


def _units_page(request: Request, typed: dict[str, str], problems: list[str] | None = None, status: int = 200) -> Template:
    state = app_state(request)
    with state.db.read() as s:
        levels = _child_levels(state.definitions, _unit(s, typed["parent"]))
    template = page(request, "admin/units.html", rows=_unit_rows(request), typed=typed, levels=levels,
                    problems=problems or [], title="组织机构")
    template.status_code = status
    return template


def _unit_page(request: Request, unit_id: int, problems: list[str] | None = None, typed_name: str | None = None,
               status: int = 200) -> Template:
    row = _unit_row(request, unit_id)
    template = page(request, "admin/unit.html", row=row, problems=problems or [],
                    typed_name=row.unit.name if typed_name is None else typed_name, title="组织机构")
    template.status_code = status
    return template


# --- users -------------------------------------------------------------------------------------------
def _user_or_404(s: DbSession, user_id: int) -> User:
    user = s.get(User, user_id) if holds_id(User, user_id) else None
    if user is None:
        raise NotFoundException("没有这个用户")
    return user


def _read_user_form(data: FormMultiDict) -> UserForm:
    return UserForm(
        username=str(data.get("username", "")).strip(), display_name=str(data.get("display_name", "")).strip(),
        password=str(data.get("password", "")), roles=[str(r) for r in data.getall("roles", [])],
        units=[str(u) for u in data.getall("units", [])], active=data.get("active") == "1",
    )


def _membership_problems(s: DbSession, definitions: Definitions, typed: UserForm) -> tuple[list[str], list[int]]:
    """Checks the roles, units and name shared by the new and the edit form; returns problems and unit ids."""
    problems = []
    if len(typed.display_name) > 100:
        problems.append("姓名不能超过100个字")
    unknown = [r for r in typed.roles if r not in definitions.roles]
    if unknown:
        problems.append(f"未知的角色：{'、'.join(unknown)}（可用：{'、'.join(r.name for r in definitions.roles.values())}）")
    elif not typed.roles:
        problems.append("请至少选择一个角色")
    unit_ids = [i for i in map(parse_id, typed.units) if i is not None and holds_id(OrgUnit, i)]
    found = set(s.scalars(select(OrgUnit.id).where(OrgUnit.id.in_(unit_ids)))) if unit_ids else set()
    if len(found) != len(set(typed.units)):
        problems.append("所选单位不存在，请刷新页面后重新选择")
    elif not found:
        problems.append("请至少选择一个所属单位")
    return problems, sorted(found)


def _save_user(s: DbSession, user: User, typed: UserForm, unit_ids: list[int]) -> None:
    user.display_name = typed.display_name or user.username
    set_memberships(s, user, typed.roles, unit_ids)
    if user.is_active and not typed.active:
        # Logged out at once, not when the session would expire.
        s.execute(delete(Session).where(Session.user_id == user.id))
    user.is_active = typed.active


def _self_problems(definitions: Definitions, typed: UserForm) -> list[str]:
    """An admin may not lock themselves out of this page."""
    problems = []
    if not typed.active:
        problems.append("不能停用自己的账号")
    if not any(definitions.roles[r].admin for r in typed.roles if r in definitions.roles):
        problems.append("不能取消自己的系统管理员角色")
    return problems


def _user_rows(request: Request, search: str) -> list[UserRow]:
    state = app_state(request)
    now = utcnow()
    query = select(User).order_by(User.username)
    if search:
        # Typed text, not a pattern: "%" and "_" in a name match themselves.
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", search.lower()) + "%"
        query = query.where(or_(func.lower(User.username).like(pattern, escape="\\"),
                                func.lower(User.display_name).like(pattern, escape="\\")))
    with state.db.read() as s:
        users = list(s.scalars(query))
        roles: dict[int, list[str]] = {}
        for user_id, key in s.execute(select(UserRole.user_id, UserRole.role_key).order_by(UserRole.role_key)):
            role = state.definitions.roles.get(key)
            roles.setdefault(user_id, []).append(role.name if role else f"{key}（已不在定义中）")
        names = {u.id: u.full_name for u in all_units(s)}
        units: dict[int, list[str]] = {}
        for user_id, unit_id in s.execute(select(UserUnit.user_id, UserUnit.unit_id)):
            units.setdefault(user_id, []).append(names.get(unit_id, "?"))
    return [UserRow(u, roles.get(u.id, []), sorted(units.get(u.id, [])), bool(u.locked_until and u.locked_until > now))
            for u in users]


def _user_form_page(request: Request, typed: UserForm, user: User | None, problems: list[str] | None = None,
                    status: int = 200) -> Template:
    state = app_state(request)
    with state.db.read() as s:
        units = all_units(s)
    template = page(request, "admin/user_form.html", typed=typed, user=user, problems=problems or [],
                    roles=list(state.definitions.roles.values()), units=units, now=utcnow(),
                    is_self=user is not None and user.id == current_principal(request).user_id,
                    title="新建用户" if user is None else "编辑用户")
    template.status_code = status
    return template


def _password_page(request: Request, **context: Any) -> Template:
    template = page(request, "admin/password.html", **context)
    template.headers.update(NO_STORE)
    return template
