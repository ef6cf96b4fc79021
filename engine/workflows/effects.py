"""Records a workflow creates (`on_approve.create`, and `hand_over.on_confirm.create` when the receiving unit confirms):
one runner for both, writing through RecordService in the caller's transaction."""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from sqlalchemy.orm import Session as DbSession

from engine.expressions import value_of
from engine.issues import Issue
from engine.messages import render
from engine.permissions import Principal
from engine.records import RecordService
from engine.spec import Definitions, FieldSpec, FormPolicy, FormSpec, RoleSpec
from engine.workflows.errors import EffectFailed, ScopeUnresolved
from engine.workflows.routing import UnitInfo
from engine.workflows.spec import SIDE_LABELS, UNIT_SIDES, ChildSpec


def create_linked(s: DbSession, records: RecordService, definitions: Definitions, parent: FormSpec,
                  children: tuple[ChildSpec, ...], names: Mapping[str, Any], units: Mapping[str, Mapping[str, UnitInfo]],
                  record_id: int, principal: Principal) -> list[str]:
    """Each `children` record linked to `record_id` (of child forms, or of forms placed in a unit of the application's
    `units`), values from the expressions over `names`. A refusal raises EffectFailed (ScopeUnresolved when the unit
    cannot be found), so the caller's transaction rolls back as a whole. Returns the timeline's notes."""
    notes = []
    for child in children:
        form = definitions.forms[child.form]
        values = {k: value_of(e, names) for k, e in child.compute.items()}
        values[child.link or form.parent_field] = record_id
        unit_id = None
        if child.unit is not None:  # not a child form: in the unit the definition names, as at submission
            found = units.get(child.unit.side, {}).get(child.unit.level)
            if found is None:
                raise ScopeUnresolved(what=SIDE_LABELS[child.unit.side], level=child.unit.level)
            unit_id = found.id
        result = records.create(form, creator_principal(principal, form, parent), unit_id, values, session=s)
        if not result.ok:
            raise effect_failed(form, result.issues)
        notes.append(f"已新建{form.title}记录 #{result.record_id}")
    return notes


def units_of(snapshot: Mapping[str, Any] | None) -> dict[str, dict[str, UnitInfo]]:
    """An application's stored unit snapshot (side -> level -> [id, path, name]) as UnitInfo."""
    return {side: {level: UnitInfo(*triple) for level, triple in (snapshot or {}).get(side, {}).items()}
            for side in UNIT_SIDES}


def creator_principal(principal: Principal, child: FormSpec, parent: FormSpec) -> Principal:
    """The approver creating an approval's child record: may create it anywhere and link it to any parent record.
    Made per call: a role of a few frozen objects, nothing worth keeping between calls."""
    role = RoleSpec(key="_workflow", name="审批流程", scope="all", forms=MappingProxyType({
        child.key: FormPolicy(actions=frozenset({"create", "read"}), reveal_sensitive=True),
        parent.key: FormPolicy(actions=frozenset({"read"}), reveal_sensitive=True)}))
    return Principal(principal.user_id, principal.username, principal.display_name, (role,))


def effect_failed(form: FormSpec, issues: list[Issue]) -> EffectFailed:
    problems = issues or [Issue("conflict", {"who": "他人", "when": "刚才"})]
    return EffectFailed(detail="；".join(issue_text(form, i) for i in problems))


def issue_text(form: FormSpec, issue: Issue) -> str:
    spec: FieldSpec | None = form.fields.get(issue.path.split(".")[0])
    return render(issue, spec.label if spec else "", spec.messages if spec else None)
