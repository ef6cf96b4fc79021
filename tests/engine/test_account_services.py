"""The account, org unit and attachment services enforce their rules themselves (issue 13 §2): called directly by a
principal who is no administrator they refuse, and `dangan create-user` meets the rules the admin page meets."""
from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

import pytest
from sqlalchemy import select

from engine.accounts import AccountInvalid, UserChanges, UserNotFound, system_principal
from engine.org import unit_by_path
from engine.org_units import OrgUnitService, UnitInUse, UnitNotFound
from engine.permissions import Principal
from engine.refusals import NotPermitted, Refused
from engine.storage.models import User
from tests.browser_fixtures import DANGAN
from tests.conftest import pg_schema_url
from tests.engine.helpers import principal_of
from tests.support import CLASS_1, DEFINITIONS, DISTRICT, PASSWORD, REPO, SCHOOL, add_user, build, unit_id
from web.errors import REFUSAL_STATUS
from web.state import AppState


@pytest.fixture(scope="module", params=["sqlite", "postgresql"], ids=["sqlite", "pg"])
def state(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppState, str]]:
    tmp = tmp_path_factory.mktemp("services")
    with ExitStack() as stack:
        url = f"sqlite:///{tmp / 'dangan.db'}" if request.param == "sqlite" else stack.enter_context(pg_schema_url())
        _app, built = build(url, tmp=tmp)
        stack.callback(built.db.dispose)
        add_user(built, "root", "sysadmin", DISTRICT)
        add_user(built, "reg", "registrar", SCHOOL)
        yield built, url


def _calls(state: AppState) -> dict[str, Callable[[Principal], object]]:
    accounts, units, definitions = state.accounts, OrgUnitService(state.db), state.definitions
    root = principal_of(state, "root")
    school = unit_id(state, SCHOOL)
    changes = UserChanges("新人", ("teacher",), (unit_id(state, CLASS_1),))
    return {
        "accounts.create_user": lambda p: accounts.create_user(p, definitions, "newbie", PASSWORD, changes),
        "accounts.update_user": lambda p: accounts.update_user(p, definitions, root.user_id, changes),
        "accounts.reset_password": lambda p: accounts.reset_password(p, root.user_id),
        "accounts.unlock": lambda p: accounts.unlock(p, "root"),
        "accounts.get_user": lambda p: accounts.get_user(p, root.user_id),
        "accounts.listing": lambda p: accounts.listing(p, definitions, ""),
        "org_units.create": lambda p: units.create(p, definitions, school, "新年级", "grade"),
        "org_units.rename": lambda p: units.rename(p, school, "改名"),
        "org_units.delete": lambda p: units.delete(p, school),
        "org_units.rows": lambda p: units.rows(p, definitions),
        "org_units.row": lambda p: units.row(p, definitions, school),
        "org_units.levels_under": lambda p: units.levels_under(p, definitions, school),
    }


CALLS = ["accounts.create_user", "accounts.update_user", "accounts.reset_password", "accounts.unlock", "accounts.get_user",
         "accounts.listing", "org_units.create", "org_units.rename", "org_units.delete", "org_units.rows", "org_units.row",
         "org_units.levels_under"]


@pytest.mark.parametrize("call", CALLS)
def test_service_called_by_no_administrator__refused(state, call: str) -> None:  # type: ignore[no-untyped-def]
    built, _url = state
    before = _snapshot(built)
    nobody = Principal(user_id=0, username="nobody", display_name="nobody", roles=())
    for principal in (principal_of(built, "reg"), nobody):
        with pytest.raises(NotPermitted):
            _calls(built)[call](principal)
    assert _snapshot(built) == before


def test_every_service_call_is_listed(state) -> None:  # type: ignore[no-untyped-def]
    built, _url = state
    assert set(_calls(built)) == set(CALLS)


def _snapshot(state: AppState) -> list[tuple]:
    with state.db.read() as s:
        users = [(u.username, u.password_hash, u.display_name, u.is_active, u.auth_version) for u in s.scalars(select(User).order_by(User.id))]
        school = unit_by_path(s, SCHOOL)
    return [*users, (school.name if school else None,)]


def test_refusals_carry_codes_and_kinds_the_web_maps_in_one_place(state) -> None:  # type: ignore[no-untyped-def]
    built, _url = state
    system = system_principal(built.definitions)
    with pytest.raises(UserNotFound) as missing:
        built.accounts.get_user(system, 2**40)
    with pytest.raises(UnitNotFound):
        OrgUnitService(built.db).row(system, built.definitions, 2**40)
    with pytest.raises(UnitInUse) as in_use:
        OrgUnitService(built.db).delete(system, unit_id(built, SCHOOL))
    for refusal in (missing.value, in_use.value):
        assert isinstance(refusal, Refused) and refusal.kind in REFUSAL_STATUS and not hasattr(refusal, "status")
    assert in_use.value.message.startswith("不能删除“示范区第一中学”：它还有")


def test_admin_rules__enforced_for_the_system_principal_too(state) -> None:  # type: ignore[no-untyped-def]
    built, _url = state
    system = system_principal(built.definitions)
    with pytest.raises(AccountInvalid) as refused:
        built.accounts.create_user(system, built.definitions, "x y", "Passw0rd!", UserChanges("", ("nope",), ()))
    assert any("用户名只能包含" in p for p in refused.value.problems)
    assert any("未知的角色" in p for p in refused.value.problems)
    assert any("请至少选择一个所属单位" in p for p in refused.value.problems)
    assert any("太常见" in p for p in refused.value.problems)


def test_admin_may_not_lock_themselves_out(state) -> None:  # type: ignore[no-untyped-def]
    built, _url = state
    root = principal_of(built, "root")
    with pytest.raises(AccountInvalid) as refused:
        built.accounts.update_user(root, built.definitions, root.user_id,
                                   UserChanges("root", ("teacher",), (unit_id(built, DISTRICT),), active=False))
    assert refused.value.problems == ["不能停用自己的账号", "不能取消自己的系统管理员角色"]


def _cli(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DANGAN_DATABASE_URL": url, "DANGAN_DEFINITIONS": str(DEFINITIONS), "DANGAN_VAR": str(tmp)}
    return subprocess.run([str(DANGAN), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_create_user_command__the_same_rules_as_the_page(state, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built, url = state
    weak = _cli(url, tmp_path, "create-user", "--username", "clerk", "--role", "registrar", "--unit", SCHOOL,
                "--password", "P@ssw0rd")
    assert weak.returncode == 1 and "太常见" in weak.stderr
    taken = _cli(url, tmp_path, "create-user", "--username", "ROOT", "--role", "registrar", "--unit", SCHOOL)
    assert taken.returncode == 1 and "用户名“ROOT”已存在" in taken.stderr
    unknown = _cli(url, tmp_path, "create-user", "--username", "clerk", "--role", "nope", "--unit", SCHOOL)
    assert unknown.returncode == 1 and "未知的角色" in unknown.stderr
    made = _cli(url, tmp_path, "create-user", "--username", "clerk", "--role", "registrar", "--unit", SCHOOL)
    assert made.returncode == 0, made.stderr
    assert "已创建用户 clerk" in made.stdout
    with built.db.read() as s:
        clerk = s.scalar(select(User).where(User.username == "clerk"))
    assert clerk is not None and clerk.must_change_password
