"""First start on an empty database: the demo org tree and the first administrator."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import func, select

from engine.accounts import create_user, generate_password
from engine.org import seed_units
from engine.spec import Definitions
from engine.storage.db import Database
from engine.storage.models import OrgUnit, User


@dataclass(frozen=True)
class InitialAdmin:
    username: str
    password: str


def bootstrap(db: Database, definitions: Definitions, demo_units: Iterable[Any]) -> InitialAdmin | None:
    """Seed an empty database; returns the first admin's credentials when it was just created."""
    with db.write() as s:
        if not s.scalar(select(func.count()).select_from(OrgUnit)):
            seed_units(s, demo_units)
        if s.scalar(select(func.count()).select_from(User)):
            s.commit()
            return None
        admin_roles = [key for key, role in definitions.roles.items() if role.admin]
        if not admin_roles:
            raise RuntimeError("定义中没有 admin: true 的角色，无法创建第一个管理员")
        roots = list(s.scalars(select(OrgUnit.id).where(OrgUnit.parent_id.is_(None))))
        password = generate_password()
        create_user(s, "admin", password, admin_roles[:1], roots, display_name="系统管理员", must_change=True)
        s.commit()
    return InitialAdmin("admin", password)
