"""Administering the org tree: which level a unit may take under its parent, names unique among siblings, and what
keeps a unit from being deleted. Administrators only; every rule here, with its SQL."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from engine.accounts import AccountInvalid
from engine.org import Unit, all_units, ancestor_ids, create_unit, move_unit_name, tree_changed
from engine.permissions import Principal
from engine.refusals import NotFound, NotPermitted, Refused
from engine.spec import Definitions, OrgLevel
from engine.storage.db import Database
from engine.storage.models import OrgUnit, Record, UserUnit, holds_id


class UnitNotFound(NotFound):
    code = "unit_not_found"


class UnitInUse(Refused):
    """A unit that still has children, members or records (or that another table refers to) is not deleted."""

    code, kind = "unit_in_use", "conflict"


@dataclass(frozen=True)
class UnitRow:
    """A unit as the tree page lists it."""

    unit: Unit
    depth: int
    level_label: str
    children: int
    users: int
    records: int
    can_have_children: bool

    @property
    def blockers(self) -> list[str]:
        return describe_blockers(self.children, self.users, self.records)


def describe_blockers(children: int, users: int, records: int) -> list[str]:
    """Why a unit may not be deleted; empty for an empty leaf."""
    counts = ((children, "个下级单位"), (users, "名用户"), (records, "条档案记录"))
    return [f"{n}{what}" for n, what in counts if n]


def child_levels(definitions: Definitions, parent: OrgUnit | Unit | None) -> list[OrgLevel]:
    """The org levels run top-down: a top unit takes the first level, a child the level after its parent's."""
    levels = list(definitions.org_levels)
    if parent is None:
        return levels[:1]
    keys = [level.key for level in levels]
    if parent.level not in keys:
        return []
    at = keys.index(parent.level)
    return levels[at + 1:at + 2]


class OrgUnitService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _admin(self, principal: Principal) -> None:
        if not principal.is_admin:
            raise NotPermitted()

    def levels_under(self, principal: Principal, definitions: Definitions, parent_id: int | None) -> list[OrgLevel]:
        """The levels a new unit under `parent_id` (None: at the top) may take; none for an unknown parent."""
        self._admin(principal)
        with self.db.read() as s:
            parent = _find(s, parent_id)
        if parent_id is not None and parent is None:
            return []
        return child_levels(definitions, parent)

    def rows(self, principal: Principal, definitions: Definitions) -> list[UnitRow]:
        """The whole tree depth-first, siblings in the order they were created, with what each holds."""
        self._admin(principal)
        labels = {level.key: level.label for level in definitions.org_levels}
        parents = {level.key for level in definitions.org_levels[:-1]}
        with self.db.read() as s:
            units = sorted(all_units(s), key=lambda u: ancestor_ids(u.path))
            children = _counts(s, OrgUnit.parent_id)
            users = _counts(s, UserUnit.unit_id)
            records = _counts(s, Record.unit_id)
        return [UnitRow(u, len(ancestor_ids(u.path)) - 1, labels.get(u.level, u.level), children.get(u.id, 0),
                        users.get(u.id, 0), records.get(u.id, 0), u.level in parents) for u in units]

    def row(self, principal: Principal, definitions: Definitions, unit_id: int) -> UnitRow:
        found = next((r for r in self.rows(principal, definitions) if r.unit.id == unit_id), None)
        if found is None:
            raise UnitNotFound()
        return found

    def create(self, principal: Principal, definitions: Definitions, parent_id: int | None, name: str, level: str,
               parent_given: bool = False) -> int:
        """A new unit under `parent_id`; AccountInvalid lists every problem. `parent_given`: a parent was chosen
        (an id that names no unit is then refused, not taken for the top)."""
        self._admin(principal)
        name = name.strip()
        with self.db.write() as s:
            parent = _find(s, parent_id)
            if (parent_given or parent_id is not None) and parent is None:
                raise AccountInvalid(["所选上级单位不存在"])
            problems = _name_problems(s, name, parent.id if parent else None)
            labels = {lvl.key: lvl.label for lvl in definitions.org_levels}
            allowed = child_levels(definitions, parent)
            if not allowed and parent is not None:
                problems.append(f"“{parent.name}”（{labels.get(parent.level, parent.level)}）是最低一级，不能再添加下级单位")
            elif level not in {lvl.key for lvl in allowed}:
                where = f"“{parent.name}”（{labels.get(parent.level, parent.level)}）下" if parent else "最上一级"
                problems.append(f"{where}只能添加“{'、'.join(lvl.label for lvl in allowed)}”一级的单位")
            if problems:
                raise AccountInvalid(problems)
            unit = create_unit(s, name, level, parent)
            s.commit()
            return unit.id

    def rename(self, principal: Principal, unit_id: int, name: str) -> None:
        self._admin(principal)
        name = name.strip()
        with self.db.write() as s:
            unit = _get(s, unit_id)
            problems = _name_problems(s, name, unit.parent_id, exclude=unit.id)
            if problems:
                raise AccountInvalid(problems)
            move_unit_name(s, unit.id, name)
            s.commit()

    def delete(self, principal: Principal, unit_id: int) -> str:
        """Deletes an empty leaf; returns its name. UnitInUse says what it still holds."""
        self._admin(principal)
        try:
            with self.db.write() as s:
                unit = _get(s, unit_id)
                name = unit.name
                blockers = describe_blockers(_count(s, OrgUnit.parent_id, unit_id), _count(s, UserUnit.unit_id, unit_id),
                                             _count(s, Record.unit_id, unit_id))
                if blockers:
                    raise UnitInUse(name=name, what=f"它还有{'、'.join(blockers)}。请先移走或删除这些内容")
                s.delete(unit)
                tree_changed(s)
                s.commit()
        except IntegrityError as exc:
            # A feature's own table may still point at the unit; the foreign key has the last word.
            raise UnitInUse(name=name, what="它仍被其他数据引用") from exc
        return name


def _find(s: DbSession, unit_id: int | None) -> OrgUnit | None:
    return s.get(OrgUnit, unit_id) if unit_id is not None and holds_id(OrgUnit, unit_id) else None


def _get(s: DbSession, unit_id: int) -> OrgUnit:
    unit = _find(s, unit_id)
    if unit is None:
        raise UnitNotFound()
    return unit


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


def _count(s: DbSession, column: Any, unit_id: int) -> int:
    return s.scalar(select(func.count()).where(column == unit_id)) or 0


def _counts(s: DbSession, column: Any) -> dict[int, int]:
    return {k: n for k, n in s.execute(select(column, func.count()).group_by(column)) if k is not None}
