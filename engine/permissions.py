"""Who may do what: pure functions over role specs and the current principal."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, TypeVar

from engine.spec import FieldSpec, FormPolicy, FormSpec, RoleSpec

U = TypeVar("U")
ACTIONS = ("create", "read", "update", "delete", "export", "import")


@dataclass(frozen=True)
class Principal:
    """The signed-in user as permission checks see it; built once per request from the session."""

    user_id: int
    username: str
    display_name: str
    roles: tuple[RoleSpec, ...]
    # Materialised paths ("/1/4/") of the user's own units, and of their ancestors by org level.
    unit_paths: frozenset[str] = frozenset()
    anchors: Mapping[str, frozenset[str]] = field(default_factory=dict)
    must_change_password: bool = False
    # Records the user is linked to, by form (a parent's children): what a `scope: linked` role reaches.
    linked: Mapping[str, frozenset[int]] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return any(role.admin for role in self.roles)

    @property
    def role_names(self) -> str:
        return "、".join(role.name for role in self.roles)


@dataclass(frozen=True)
class Scope:
    """Which records an action reaches: everything, unit subtrees by path prefix, and/or own records."""

    everything: bool = False
    paths: frozenset[str] = frozenset()
    own: bool = False
    # `scope: linked`: these records (record_key "") or the records whose link field `record_key` points at them.
    records: frozenset[int] = frozenset()
    record_key: str = ""

    @property
    def empty(self) -> bool:
        return not (self.everything or self.paths or self.own or self.records)

    def contains(self, unit_path: str, created_by: int | None, user_id: int, record: Any = None) -> bool:
        if self.everything:
            return True
        if self.own and created_by == user_id:
            return True
        if self.records and record is not None:
            linked = record.id if not self.record_key else record.values.get(self.record_key)
            if getattr(linked, "id", linked) in self.records:
                return True
        return any(unit_path.startswith(p) for p in self.paths)


def _role_policy(role: RoleSpec, form_key: str) -> FormPolicy | None:
    return role.forms.get(form_key) or role.forms.get("*")


def policy(principal: Principal, form: FormSpec) -> FormPolicy | None:
    """The union of the user's roles for one form: actions add up, field restrictions must all agree."""
    found = [p for p in (_role_policy(r, form.key) for r in principal.roles) if p is not None]
    if not found:
        return None
    return FormPolicy(
        actions=frozenset().union(*(p.actions for p in found)),
        hidden=frozenset.intersection(*(p.hidden for p in found)),
        readonly=frozenset.intersection(*(p.readonly for p in found)),
        masked=frozenset.intersection(*(p.masked for p in found)),
        reveal_sensitive=any(p.reveal_sensitive for p in found),
    )


def can(principal: Principal, action: str, form: FormSpec) -> bool:
    found = policy(principal, form)
    return found is not None and action in found.actions


def scope(principal: Principal, action: str, form: FormSpec) -> Scope:
    """Records reachable for `action`, from every role that grants it."""
    everything, own, paths, records, record_key = False, False, set(), set(), ""
    for role in principal.roles:
        granted = _role_policy(role, form.key)
        if granted is None or action not in granted.actions:
            continue
        reach = granted.scope or role.scope
        if reach == "all":
            everything = True
        elif reach == "own":
            own = True
        elif reach == "subtree":
            paths |= principal.unit_paths
        elif reach == "linked":  # the user's own linked records, and the records that belong to them
            if form.key in principal.linked:
                records |= principal.linked[form.key]
            elif form.parent_form in principal.linked:
                records |= principal.linked[form.parent_form]
                record_key = form.parent_field
        else:
            paths |= principal.anchors.get(reach, frozenset())
    return Scope(everything=everything, paths=frozenset(paths), own=own, records=frozenset(records), record_key=record_key)


def unit_allowed(principal: Principal, form: FormSpec, action: str, unit_path: str, unit_level: str) -> bool:
    """Whether a record of `form` may be placed in this unit for `action`: a unit of the form's org level, inside
    the scope the action has (an "own" scope places records in the user's own units)."""
    if form.unit_level and unit_level != form.unit_level:
        return False
    reach = scope(principal, action, form)
    return (reach.everything or any(unit_path.startswith(p) for p in reach.paths)
            or (reach.own and any(unit_path.startswith(p) for p in principal.unit_paths)))


def placeable_units(units: Iterable[U], principal: Principal, form: FormSpec, action: str) -> list[U]:
    """The units (anything with `path` and `level`) a record of `form` may be placed in for `action`."""
    return [u for u in units if unit_allowed(principal, form, action, u.path, u.level)]  # type: ignore[attr-defined]


def readable_fields(found: FormPolicy, form: FormSpec) -> tuple[FieldSpec, ...]:
    return tuple(f for k, f in form.fields.items() if k not in found.hidden)


def is_masked(found: FormPolicy, spec: FieldSpec) -> bool:
    return spec.key in found.masked or (spec.sensitive and not found.reveal_sensitive)


def is_editable(found: FormPolicy, spec: FieldSpec) -> bool:
    """A user may write a field they can see in full, that is not read-only, and that they type."""
    return (
        spec.key not in found.hidden
        and spec.key not in found.readonly
        and not spec.readonly
        and not is_masked(found, spec)
        and spec.user_input
    )


def writable_keys(found: FormPolicy, form: FormSpec) -> frozenset[str]:
    return frozenset(k for k, f in form.fields.items() if is_editable(found, f))


def forms_for(principal: Principal, forms: Iterable[FormSpec], action: str = "read") -> list[FormSpec]:
    return [f for f in forms if can(principal, action, f)]
