"""The organisation tree (district → school → grade → class) and the principal built from it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session as DbSession

from engine.permissions import Principal
from engine.spec import Definitions
from engine.storage.models import OrgUnit, User, UserRecord, UserRole, UserUnit


@dataclass(frozen=True)
class Unit:
    id: int
    name: str
    level: str
    path: str
    parent_id: int | None
    full_name: str = ""  # "示范区教育局/第一中学/高一/高一(1)班"


def ancestor_ids(path: str) -> list[int]:
    return [int(part) for part in path.strip("/").split("/") if part]


def create_unit(s: DbSession, name: str, level: str, parent: OrgUnit | None) -> OrgUnit:
    unit = OrgUnit(name=name, level=level, parent_id=parent.id if parent else None, path="")
    s.add(unit)
    s.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    s.flush()
    return unit


def seed_units(s: DbSession, tree: Iterable[Any], parent: OrgUnit | None = None) -> int:
    """Create the demo tree from org.yaml's `demo_units`; returns how many units were made."""
    count = 0
    for node in tree:
        unit = create_unit(s, node["name"], node["level"], parent)
        count += 1 + seed_units(s, node.get("children", []), unit)
    return count


def all_units(s: DbSession) -> list[Unit]:
    rows = list(s.scalars(select(OrgUnit).order_by(OrgUnit.path)))
    names = {u.id: u.name for u in rows}
    return [
        Unit(u.id, u.name, u.level, u.path, u.parent_id, "/".join(names.get(i, "?") for i in ancestor_ids(u.path)))
        for u in rows
    ]


def unit_by_path(s: DbSession, full_name: str) -> OrgUnit | None:
    """Find a unit by its names from the root, e.g. "示范区教育局/示范区第一中学/高一/高一(1)班"."""
    parent_id = None
    unit = None
    for name in [p for p in full_name.strip("/").split("/") if p]:
        unit = s.scalar(select(OrgUnit).where(OrgUnit.name == name, OrgUnit.parent_id.is_(None) if parent_id is None else OrgUnit.parent_id == parent_id))
        if unit is None:
            return None
        parent_id = unit.id
    return unit


def move_unit_name(s: DbSession, unit_id: int, name: str) -> None:
    s.execute(update(OrgUnit).where(OrgUnit.id == unit_id).values(name=name))


def build_principal(s: DbSession, user: User, definitions: Definitions) -> Principal:
    """Roles from the current definitions, units with their ancestors by level, for scope checks."""
    role_keys = s.scalars(select(UserRole.role_key).where(UserRole.user_id == user.id)).all()
    roles = tuple(definitions.roles[k] for k in sorted(role_keys) if k in definitions.roles)
    units = list(s.scalars(select(OrgUnit).join(UserUnit, UserUnit.unit_id == OrgUnit.id).where(UserUnit.user_id == user.id)))
    ancestor_set = {i for u in units for i in ancestor_ids(u.path)}
    ancestors = {u.id: u for u in s.scalars(select(OrgUnit).where(OrgUnit.id.in_(ancestor_set)))} if ancestor_set else {}
    anchors: dict[str, set[str]] = {}
    for unit in units:
        for ancestor_id in ancestor_ids(unit.path):
            ancestor = ancestors.get(ancestor_id)
            if ancestor is not None:
                anchors.setdefault(ancestor.level, set()).add(ancestor.path)
    return Principal(
        user_id=user.id, username=user.username, display_name=user.display_name or user.username, roles=roles,
        unit_paths=frozenset(u.path for u in units),
        anchors={level: frozenset(paths) for level, paths in anchors.items()},
        must_change_password=user.must_change_password, linked=linked_records(s, user.id),
    )


def linked_records(s: DbSession, user_id: int) -> dict[str, frozenset[int]]:
    found: dict[str, set[int]] = {}
    for form_key, record_id in s.execute(select(UserRecord.form_key, UserRecord.record_id).where(UserRecord.user_id == user_id)):
        found.setdefault(form_key, set()).add(record_id)
    return {k: frozenset(v) for k, v in found.items()}
