"""org.yaml's unit tree (`demo_units`) applied to a running database: what differs (units to add, rename, move,
change level, delete), and the change made in one transaction. A unit that holds anything (records, users, any row
of another table that names it) is never deleted nor moved: it is listed as kept. Renames and moves are declared
with `renamed_from` on the unit in org.yaml (an old name under the same parent, or an old full path)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import Integer, func, literal, select, update
from sqlalchemy.orm import Session as DbSession

from engine.org import Unit, all_units, ancestor_ids, create_unit, tree_changed
from engine.storage.db import Database
from engine.storage.models import Base, OrgUnit

PENDING = ("add", "rename", "move", "level", "delete")
KIND_NAMES = {"add": "新增", "rename": "改名", "move": "移动", "level": "改层级", "delete": "删除（空单位）",
              "keep": "保留（不在 org.yaml 中，但仍有数据）", "stay": "不移动（仍有数据）"}
COMMAND = "dangan org-apply"


@dataclass(frozen=True)
class OrgChange:
    kind: str  # one of KIND_NAMES
    path: str  # the unit's full name as org.yaml has it (for delete/keep: as the database has it)
    old: str = ""  # the full name in the database (rename, move), or the old level (level)
    reason: str = ""  # what a kept unit still holds
    level: str = ""

    def describe(self) -> str:
        if self.kind in ("rename", "move"):
            return f"{self.old} → {self.path}"
        if self.kind == "level":
            return f"{self.path}（{self.old} → {self.level}）"
        if self.kind in ("keep", "stay"):
            moved = f" → {self.old}" if self.kind == "stay" else ""
            return f"{self.path}{moved}（{self.reason}）"
        return self.path


@dataclass
class OrgPlan:
    changes: list[OrgChange] = field(default_factory=list)
    declared: bool = True  # org.yaml has a `demo_units` tree at all

    def of(self, kind: str) -> list[OrgChange]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def pending(self) -> bool:
        return any(c.kind in PENDING for c in self.changes)

    def counts(self) -> str:
        found = [(KIND_NAMES[k].split("（")[0], len(self.of(k))) for k in PENDING]
        return "、".join(f"{name} {n} 个" for name, n in found if n)

    def lines(self) -> list[str]:
        """The preview, one line per change, grouped by kind."""
        out = []
        for kind in KIND_NAMES:
            found = self.of(kind)
            if found:
                out.append(f"{KIND_NAMES[kind]}：{len(found)} 个")
                out += [f"  {c.describe()}" for c in found]
        return out


# --- what a unit holds ---------------------------------------------------------------------------------
def _unit_columns() -> list[Any]:
    """Every column that names a unit: foreign keys to org_units (records, user_units, …) and integer `unit_id`
    columns kept without one (workflow tasks). org_units' own parent_id is the tree, not a holding."""
    found = []
    for table in Base.metadata.sorted_tables:
        if table.name == OrgUnit.__tablename__:
            continue
        for column in table.columns:
            refers = any(fk.column.table.name == OrgUnit.__tablename__ for fk in column.foreign_keys)
            if refers or (isinstance(column.type, Integer) and (column.name == "unit_id" or column.name.endswith("_unit_id"))):
                found.append(column)
    return found


_NOUNS = {"records": "条档案记录", "user_units": "名用户"}


def holdings(s: DbSession) -> dict[int, dict[str, int]]:
    """Unit id → {what: how many} for every unit that anything refers to."""
    held: dict[int, dict[str, int]] = {}
    for column in _unit_columns():
        noun = _NOUNS.get(column.table.name, "条其他数据")
        for unit_id, count in s.execute(select(column, func.count()).where(column.is_not(None)).group_by(column)):
            mine = held.setdefault(int(unit_id), {})
            mine[noun] = mine.get(noun, 0) + count
    return held


def _describe(counts: dict[str, int]) -> str:
    return "、".join(f"{n}{noun}" for noun, n in counts.items())


# --- the plan ------------------------------------------------------------------------------------------
class _Walk:
    """Matches org.yaml's tree to the database's top-down: by name under the matched parent, else by `renamed_from`.
    With `apply` the changes are made as they are found (parents before their children)."""

    def __init__(self, s: DbSession, apply: bool) -> None:
        self.s, self.apply = s, apply
        self.units = all_units(s)
        self.by_path = {u.full_name: u for u in self.units}
        self.children: dict[int | None, list[Unit]] = {}
        for unit in self.units:
            self.children.setdefault(unit.parent_id, []).append(unit)
        self.held = holdings(s)
        self.matched: set[int] = set()
        self.moved: set[int] = set()
        self.plan = OrgPlan()

    def subtree_holds(self, unit: Unit) -> dict[str, int]:
        total: dict[str, int] = {}
        for other in self.units:
            if other.path.startswith(unit.path):
                for noun, n in self.held.get(other.id, {}).items():
                    total[noun] = total.get(noun, 0) + n
        return total

    def walk(self, nodes: Iterable[Any], parent_id: int | None, top: bool, parent_path: str, parent_old: str) -> None:
        """`parent_id`: the database unit the nodes go under (None at the top, or under a unit not made yet in a
        preview); `parent_old`: its full name in the database, for `renamed_from` names."""
        for node in nodes:
            name, level = str(node["name"]), str(node["level"])
            path = f"{parent_path}/{name}" if parent_path else name
            unit = self._find(node, parent_id, top, parent_old)
            if unit is None:
                self.plan.changes.append(OrgChange("add", path, level=level))
                made = create_unit(self.s, name, level, self._row(parent_id), changed=False) if self.apply else None
                self.walk(node.get("children", []), made.id if made else None, False, path, "")
                continue
            self.matched.add(unit.id)
            row = self.s.get(OrgUnit, unit.id) if self.apply else None
            if unit.parent_id != parent_id or (parent_id is None and not top):
                held = self.subtree_holds(unit)
                if held:
                    self.plan.changes.append(OrgChange("stay", unit.full_name, old=path,
                                                       reason=f"含{_describe(held)}；有数据的单位不移动"))
                    self.walk(node.get("children", []), unit.id, False, unit.full_name, unit.full_name)
                    continue
                self.plan.changes.append(OrgChange("move", path, old=unit.full_name))
                self.moved.add(unit.id)
                if row is not None:
                    _move(self.s, row, self._row(parent_id), name)
            elif unit.name != name:
                self.plan.changes.append(OrgChange("rename", path, old=unit.full_name))
                if row is not None:
                    row.name = name
            if unit.level != level:
                self.plan.changes.append(OrgChange("level", path, old=unit.level, level=level))
                if row is not None:
                    row.level = level
            self.walk(node.get("children", []), unit.id, False, path, unit.full_name)

    def _row(self, unit_id: int | None) -> OrgUnit | None:
        return self.s.get(OrgUnit, unit_id) if unit_id is not None else None

    def _find(self, node: Any, parent_id: int | None, top: bool, parent_old: str) -> Unit | None:
        """The database unit this node is: a child of the same name, else one it was renamed or moved from."""
        siblings = self.children.get(parent_id, []) if (top or parent_id is not None) else []
        found = next((u for u in siblings if u.name == str(node["name"]) and u.id not in self.matched), None)
        if found is not None:
            return found
        olds = node.get("renamed_from") or []
        for old in [olds] if isinstance(olds, str) else olds:
            old = str(old).strip("/")
            full = old if "/" in old else (f"{parent_old}/{old}" if parent_old else old if top else "")
            found = self.by_path.get(full)
            if found is not None and found.id not in self.matched:
                return found
        return None

    def _stays_below(self, unit: Unit, other: Unit) -> bool:
        """`other` is below `unit` and stays there (no unit between them, itself included, is moved away)."""
        if not other.path.startswith(unit.path) or other.id == unit.id:
            return False
        between = ancestor_ids(other.path)[len(ancestor_ids(unit.path)):]
        return not any(i in self.moved for i in between)

    def leftovers(self) -> None:
        """Units org.yaml does not have: deleted when nothing below them holds data or is still wanted, else kept."""
        for unit in sorted(self.units, key=lambda u: -u.path.count("/")):  # deepest first
            if unit.id in self.matched:
                continue
            held = self.subtree_holds(unit)
            if held or any(self._stays_below(unit, u) for u in self.units if u.id in self.matched):
                reason = f"含{_describe(held)}" if held else "下级单位仍在 org.yaml 中"
                self.plan.changes.append(OrgChange("keep", unit.full_name, reason=reason))
                continue
            self.plan.changes.append(OrgChange("delete", unit.full_name))
            if self.apply:
                row = self.s.get(OrgUnit, unit.id)
                if row is not None:
                    self.s.delete(row)
                    self.s.flush()


def _move(s: DbSession, row: OrgUnit, parent: OrgUnit | None, name: str) -> None:
    old = row.path
    row.parent_id = parent.id if parent is not None else None
    row.name = name
    new = f"{parent.path if parent is not None else '/'}{row.id}/"
    s.flush()
    # The materialised paths of the unit and everything below it.
    s.execute(update(OrgUnit).where(OrgUnit.path.startswith(old, autoescape=True))
              .values(path=literal(new).concat(func.substr(OrgUnit.path, len(old) + 1))).execution_options(synchronize_session=False))
    s.expire_all()


def plan_org(s: DbSession, tree: Iterable[Any]) -> OrgPlan:
    """What applying org.yaml's tree would change; writes nothing."""
    tree = list(tree)
    if not tree:
        return OrgPlan(declared=False)
    walk = _Walk(s, apply=False)
    walk.walk(tree, None, True, "", "")
    walk.leftovers()
    return walk.plan


def apply_org(db: Database, tree: Iterable[Any]) -> OrgPlan:
    """Makes the database's tree org.yaml's, in one transaction (planned again inside it, so what is applied is
    what the database holds at that moment); the tree's version moves once, so every server reads it again."""
    tree = list(tree)
    if not tree:
        return OrgPlan(declared=False)
    with db.write() as s:
        walk = _Walk(s, apply=True)
        walk.walk(tree, None, True, "", "")
        walk.leftovers()
        if walk.plan.pending:
            tree_changed(s)
        s.commit()
    return walk.plan


def org_note(db: Database, tree: Iterable[Any]) -> str | None:
    """One warning when org.yaml's tree differs from the database (for reload and server start), naming the command."""
    with db.read() as s:
        plan = plan_org(s, tree)
    if not plan.pending:
        return None
    first = [c.describe() for c in plan.changes if c.kind in PENDING][:3]
    more = " 等" if len([c for c in plan.changes if c.kind in PENDING]) > 3 else ""
    return (f"注意：org.yaml 中的组织机构与数据库不一致（{plan.counts()}：{'；'.join(first)}{more}），尚未应用。"
            f"运行 `{COMMAND}` 查看差异并确认应用（有数据的单位不会被删除或移动）。")
