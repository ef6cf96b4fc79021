"""First start on an empty database: the demo org tree and the first administrator."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from sqlalchemy import func, select

from engine.accounts import AccountService, UserChanges, system_principal
from engine.org import seed_units
from engine.passwords import generate_password
from engine.spec import Definitions
from engine.storage.db import Database
from engine.storage.models import OrgUnit, User


@dataclass(frozen=True)
class InitialAdmin:
    username: str
    password: str


def bootstrap(db: Database, definitions: Definitions, demo_units: Iterable[Any] | Callable[[], Iterable[Any]]
              ) -> InitialAdmin | None:
    """Seed an empty database; returns the first admin's credentials when it was just created. `demo_units` may be
    a function that reads them: called only when the database has no unit yet (a large org.yaml is not parsed
    again on every start)."""
    with db.write() as s:
        if not s.scalar(select(OrgUnit.id).limit(1)):
            seed_units(s, demo_units() if callable(demo_units) else demo_units)
        has_users = bool(s.scalar(select(func.count()).select_from(User)))
        roots = list(s.scalars(select(OrgUnit.id).where(OrgUnit.parent_id.is_(None))))
        s.commit()
    if has_users:
        return None
    system = system_principal(definitions)  # raises when no role is admin: true
    password = generate_password()
    AccountService(db).create_user(system, definitions, "admin", password,
                                   UserChanges("系统管理员", (system.roles[0].key,), tuple(roots)), must_change=True)
    return InitialAdmin("admin", password)
