"""The organisation tree (district → school → grade → class) and the principal built from it."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session as DbSession

from engine.permissions import Principal
from engine.spec import Definitions
from engine.storage.models import OrgUnit, Sequence, User, UserRecord, UserRole, UserUnit


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


def create_unit(s: DbSession, name: str, level: str, parent: OrgUnit | None, changed: bool = True) -> OrgUnit:
    """A new unit under `parent`; `changed`: say so to the cached trees (tree_changed) — a caller making many
    says it once."""
    unit = OrgUnit(name=name, level=level, parent_id=parent.id if parent else None, path="")
    s.add(unit)
    s.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    s.flush()
    if changed:
        tree_changed(s)
    return unit


def seed_units(s: DbSession, tree: Iterable[Any], parent: OrgUnit | None = None) -> int:
    """Create the demo tree from org.yaml's `demo_units`; returns how many units were made."""
    count = _seed(s, tree, parent)
    tree_changed(s)
    return count


def _seed(s: DbSession, tree: Iterable[Any], parent: OrgUnit | None) -> int:
    count = 0
    for node in tree:
        unit = create_unit(s, node["name"], node["level"], parent, changed=False)
        count += 1 + _seed(s, node.get("children", []), unit)
    return count


def all_units(s: DbSession | Connection) -> list[Unit]:
    """The whole tree in path order, each unit with its full name; plain columns (no ORM entities: 23,000 units
    take ~0.1 s instead of ~0.4 s)."""
    rows = s.execute(select(OrgUnit.id, OrgUnit.name, OrgUnit.level, OrgUnit.path, OrgUnit.parent_id)
                     .order_by(OrgUnit.path)).all()
    names = {u.id: u.name for u in rows}
    full: dict[int, str] = {}
    units = []
    for u in rows:  # path order: a parent comes before its children
        parent = full.get(u.parent_id) if u.parent_id is not None else ""
        name = full[u.id] = (f"{parent}/{u.name}" if parent else u.name) if parent is not None \
            else "/".join(names.get(i, "?") for i in ancestor_ids(u.path))
        units.append(Unit(u.id, u.name, u.level, u.path, u.parent_id, name))
    return units


# --- the tree's version, and the tree kept until it changes -------------------------------------------------
TREE_VERSION = "org_units:version"  # a row of `sequences`, one more on every change to the tree


def tree_changed(s: DbSession | Connection) -> None:
    """Count a change to the tree (a unit made, renamed or deleted), in the caller's transaction: every process's
    OrgTree sees the new version at its next look and reads the tree again."""
    table = Sequence.__table__
    bumped = s.execute(update(table).where(table.c.scope == TREE_VERSION).values(last_value=table.c.last_value + 1))
    if not bumped.rowcount:
        s.execute(table.insert().values(scope=TREE_VERSION, last_value=1))


def tree_version(s: DbSession | Connection) -> int:
    return s.execute(select(Sequence.last_value).where(Sequence.scope == TREE_VERSION)).scalar() or 0


class OrgTree:
    """The org tree, read once and kept until it changes: each look reads the tree's version (one row by primary
    key) at most every CHECK_SECONDS, or at once when `local()` (a counter this server's workers share, moved by
    the admin pages) says this server changed it. The whole tree is read again only when the version moved —
    never on a timer."""

    CHECK_SECONDS = 1.0

    def __init__(self, db: Any, local: Callable[[], int] = lambda: 0) -> None:
        self.db, self.local = db, local
        self._lock = threading.Lock()
        self._kept: tuple[int, int, list[Unit]] | None = None  # (local counter, version, units)
        self._checked = 0.0

    def units(self) -> list[Unit]:
        kept, local = self._kept, self.local()
        if kept is not None and kept[0] == local and time.monotonic() - self._checked < self.CHECK_SECONDS:
            return kept[2]
        with self._lock:
            kept = self._kept
            with self.db.single() as connection:
                version = tree_version(connection)
                if kept is None or kept[0] != local or kept[1] != version:
                    kept = self._kept = (local, version, all_units(connection))
            self._checked = time.monotonic()
            return kept[2]


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
    tree_changed(s)


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
