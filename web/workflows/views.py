"""What the workflow pages show, worked out from specs, applications and the viewer's rights (no requests here)."""
from __future__ import annotations

from typing import Any, Mapping

from litestar.datastructures import UploadFile

from engine.fields.files import UploadedFile
from engine.permissions import Principal, is_editable, is_masked, policy, scope, writable_keys
from engine.records import StoredRecord
from engine.org import Unit
from engine.spec import FormPolicy, FormSpec, OrgLevel
from engine.storage.models import Application
from engine.workflows import routing
from engine.workflows.routing import Actor, Context
from engine.workflows.service import Bundle, system_principal
from engine.workflows.spec import ACTION_LABELS, WorkflowSpec
from web.formdata import read_submission
from web.params import parse_id
from web.presenter import display_text
from web.state import AppState

TASK_LABELS = {"open": "待处理", "approved": "已同意", "rejected": "已驳回", "returned": "已退回", "cancelled": "无需处理"}


def check_url(spec: WorkflowSpec, target: StoredRecord, bundle: Bundle | None) -> str:
    """Where a field of this application form is checked; the field's key is appended."""
    if bundle is not None:
        return f"/wf/a/{bundle.application.id}/check?field="
    return f"/wf/new/{spec.key}/check?record={target.id}&field="


def current_values(spec: WorkflowSpec, form: FormSpec, found: FormPolicy, target: StoredRecord) -> dict[str, str]:
    """A change request's fields as the record holds them now, shown as this user may see them."""
    return {k: display_text(form.fields[k], target.values.get(k), is_masked(found, form.fields[k]))
            for k in spec.changes}


def diff_rows(form: FormSpec, found: FormPolicy, app: Application) -> list[dict[str, str]]:
    """A change request's old → new values, each shown as this viewer may see it."""
    rows = []
    for key, (old, new) in (app.changes or {}).items():
        spec = form.fields.get(key)
        if spec is None or key in found.hidden:
            continue
        masked = is_masked(found, spec)
        rows.append({"key": key, "label": spec.label, "masked": masked,
                     "old": stored_text(spec, old, masked), "new": stored_text(spec, new, masked)})
    return rows


def stored_text(spec: Any, stored: Any, masked: bool) -> str:
    if stored is None:
        return ""
    try:
        return display_text(spec, spec.kind.from_json(stored), masked)
    except (ValueError, TypeError, KeyError):
        return str(stored)


def timeline_rows(bundle: Bundle) -> list[dict[str, Any]]:
    return [{"action": a, "label": ACTION_LABELS.get(a.action, a.action),
             "link": f"/wf/files/{a.attachment['id']}" if a.attachment else ""} for a in bundle.actions]


def progress_rows(spec: WorkflowSpec, bundle: Bundle) -> list[dict[str, Any]]:
    """Each step with its groups in the current round: who, which unit, what they did."""
    app = bundle.application
    current = [t for t in bundle.tasks if t.round == app.round]
    steps = []
    for step in spec.steps:
        tasks = [{"label": t.label, "unit": t.unit_name, "status": TASK_LABELS.get(t.status, t.status),
                  "who": t.acted_name, "at": t.acted_at} for t in current if t.step == step.key]
        state = "current" if app.status == "pending" and app.step == step.key else ("done" if tasks else "waiting")
        steps.append({"step": step, "tasks": tasks, "state": state})
    return steps


def step_lines(state: AppState, spec: WorkflowSpec) -> list[str]:
    lines = []
    for step in spec.steps:
        who = ("、" if step.mode == "all" else " 或 ").join(a.label for a in step.assignees)
        lines.append(f"{step.title}：{who}{'（均须同意）' if step.mode == 'all' and len(step.assignees) > 1 else ''}"
                     f"{'（满足条件时）' if step.when else ''}")
    return lines


def unit_full_name(state: AppState, unit_id: int | None) -> str:
    unit = next((u for u in state.units() if u.id == unit_id), None)
    return unit.full_name if unit else ""


def file_link(view: Any) -> Any:
    """Application attachments are served by /wf/files (the application's rule), not /files (a record's)."""
    if view.link.startswith("/files/"):
        view.link = "/wf" + view.link
    return view


def masked_all(form: FormSpec) -> FormPolicy:
    return FormPolicy(actions=frozenset(), masked=frozenset(form.fields))


def application_policy(spec: WorkflowSpec, form: FormSpec, found: FormPolicy) -> FormPolicy:
    """The application form for this user: proposed values follow their rights on the target's fields."""
    changes = [form.fields[k] for k in spec.changes]
    return FormPolicy(
        actions=frozenset({"create", "read", "update"}),
        hidden=frozenset(f.key for f in changes if f.key in found.hidden),
        readonly=frozenset(f.key for f in changes if not is_editable(found, f)),
        masked=frozenset(f.key for f in changes if is_masked(found, f)),
        reveal_sensitive=found.reveal_sensitive,
    )


def reader_of(principal: Principal, form: FormSpec) -> Principal:
    """Reads the target record for display whatever the viewer's scope (they passed the application's rule)."""
    return system_principal(principal, form)


def starter_of(principal: Principal, spec: WorkflowSpec) -> Principal:
    roles = tuple(r for r in principal.roles if r.key in spec.start_roles)
    return Principal(principal.user_id, principal.username, principal.display_name, roles, principal.unit_paths, principal.anchors)


def may_start(spec: WorkflowSpec, principal: Principal, record: StoredRecord, units: list[Any]) -> bool:
    levels = {u.level: routing.UnitInfo(u.id, u.path, u.name) for u in units if record.unit_path.startswith(u.path)}
    return routing.start_allowed(spec, Actor.of(principal), Context({}, record.values, {"record_unit": levels}, principal.user_id))


def startable(state: AppState, principal: Principal) -> list[WorkflowSpec]:
    keys = {r.key for r in principal.roles}
    return [w for w in state.definitions.workflows.values() if keys & set(w.start_roles)]


async def submission(spec: WorkflowSpec, form: FormSpec, principal: Principal, data: Any) -> dict[str, Any]:
    """What the applicant may write: their own fields, and proposed values of fields they may edit on the record."""
    app_found = application_policy(spec, form, policy(principal, form) or masked_all(form))
    writable = writable_keys(app_found, spec.application)
    submitted = await read_submission(spec.application, data, writable)
    return {k: v for k, v in submitted.items() if k in writable}


async def read_upload(value: Any) -> UploadedFile | None:
    if isinstance(value, UploadFile) and value.filename:
        return UploadedFile(value.filename, value.content_type or "", await value.read())
    return None


def parse_unit(raw: Any) -> int | None:
    return parse_id(raw)


def submitted_message(outcome: Any, spec: WorkflowSpec) -> str:
    if outcome is None:
        return "已保存"
    if outcome.status == "approved":
        return "申请已提交，无需审批，已生效"
    step = spec.step(outcome.step)
    return f"申请已提交，等待“{step.title}”" if step else "申请已提交"


def snapshot_values(form: FormSpec, app: Application) -> dict[str, Any]:
    """The record's summary values as the application kept them (submitted, then decided)."""
    values = {}
    for key, stored in ((app.record_snapshot or {}).get("values") or {}).items():
        spec = form.fields.get(key)
        if spec is not None and stored is not None:
            try:
                values[key] = spec.kind.from_json(stored)
            except (ValueError, TypeError, KeyError):
                values[key] = None
    return values


def returned_note(bundle: Bundle) -> dict[str, Any] | None:
    """Why a returned application came back: the return of the current round (shown at the top of its page)."""
    app = bundle.application
    if app.status != "returned":
        return None
    found = [a for a in bundle.actions if a.action == "return" and a.round == app.round]
    if not found:
        return None
    last = found[-1]
    return {"comment": last.comment, "who": last.display_name, "step": last.step_title, "at": last.at}


def is_assignee(state: AppState, principal: Principal) -> bool:
    """Holds a role some workflow step is assigned to (待办 and 已办 concern them)."""
    keys = {r.key for r in principal.roles}
    return any(a.role in keys for w in state.definitions.workflows.values() for s in w.steps for a in s.assignees)


def unit_column(state: AppState, principal: Principal) -> tuple[OrgLevel | None, list[Unit]]:
    """The org level a list shows and filters applications by, for a user over several units of it (a bureau: the
    school), with the units of that level they reach; (None, []) for a user within one unit of every level."""
    levels = list(state.definitions.org_levels)
    keys = [level.key for level in levels]
    top = min((keys.index(k) for k, paths in principal.anchors.items() if paths and k in keys), default=None)
    if top is None or top + 1 >= len(levels) - 1:  # no level between the user's and the records' (a class)
        return None, []
    level = levels[top + 1]
    reach = tuple(p for paths in principal.anchors.values() for p in paths) + tuple(principal.unit_paths)
    units = [u for u in state.units() if u.level == level.key and (principal.is_admin or u.path.startswith(reach))]
    return level, sorted(units, key=lambda u: u.full_name)


def row_unit(row: dict[str, Any], level: OrgLevel | None) -> str:
    """A list row's record unit at `level`, as fixed at submission."""
    if level is None:
        return ""
    found = ((row.get("units") or {}).get("record_unit") or {}).get(level.key)
    return found[2] if found else ""


def moving_workflows(state: AppState) -> set[str]:
    """Workflows whose approval changes the record (学籍异动 lists them)."""
    return {k for k, w in state.definitions.workflows.items()
            if w.effects.set or w.effects.compute or w.effects.move_to_chosen_unit or w.effects.create}


def side_units(units: Mapping[str, Any] | None, side: str) -> str:
    """A side's unit as fixed at submission, by its names from the top ("示范区教育局/示范区第一中学/…")."""
    found = sorted(((units or {}).get(side) or {}).values(), key=lambda triple: len(triple[1]))
    return "/".join(triple[2] for triple in found)


def move_row(state: AppState, principal: Principal, row: dict[str, Any]) -> dict[str, Any]:
    """One 学籍异动 entry as this user reads it: 转出 from their units, 转入 into them, else the workflow's title."""
    spec = state.definitions.workflows.get(row["workflow"])
    title = spec.title if spec is not None else row["workflow"]
    kind = title
    if spec is not None and spec.effects.move_to_chosen_unit:
        form = state.definitions.forms.get(spec.form)
        reach = scope(principal, "read", form) if form is not None else None
        sides = [label for label, path in (("转出", row["record_path"]), ("转入", row["chosen_path"]))
                 if reach is not None and path and reach.contains(path, None, principal.user_id)]
        kind = f"{title}（{'、'.join(sides)}）" if sides else title
    return {**row, "kind": kind, "from": side_units(row.get("units"), "record_unit"),
            "to": side_units(row.get("units"), "chosen_unit")}
