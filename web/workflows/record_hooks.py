"""What workflows add to record pages: start buttons, the applications panel, and edits held as change requests."""
from __future__ import annotations

from typing import Any

from litestar import Request

from engine.permissions import Principal, scope
from engine.records import StoredRecord
from engine.spec import FormSpec
from engine.workflows.changes import ChangeRequests
from engine.workflows.errors import WorkflowError
from engine.workflows.service import WorkflowService
from engine.workflows.spec import STATUS_LABELS
from web.auth import app_state
from web.features import Action, HeldUpdate
from web.presenter import issue_text
from web.state import AppState
from web.workflows.badge import counts, service
from web.workflows.views import may_start, starter_of


def record_actions(holder: dict[str, AppState], form: FormSpec, principal: Principal, record: StoredRecord) -> list[Action]:
    state = holder.get("state")
    if state is None:
        return []
    units = state.units()
    workflows = WorkflowService(state.db, state.records)
    busy: dict[str, bool] = {}  # exclusive group -> an application of it is in flight on this record
    actions = []
    for spec in state.definitions.workflows.values():
        if spec.form != form.key:
            continue
        starter = starter_of(principal, spec)
        if starter.roles and scope(starter, "read", form).contains(record.unit_path, record.created_by, principal.user_id, record) \
                and may_start(spec, principal, record, units) \
                and not _busy(busy, workflows, state, spec, record):
            actions.append({"href": f"/wf/new/{spec.key}/start?record={record.id}", "label": spec.start_label})
    return actions


def _busy(busy: dict[str, bool], workflows: WorkflowService, state: AppState, spec: Any, record: StoredRecord) -> bool:
    if not spec.exclusive:
        return False
    if spec.exclusive not in busy:
        busy[spec.exclusive] = workflows.exclusive_conflict(state.definitions, spec, record.id) is not None
    return busy[spec.exclusive]


def record_panels(request: Request, form: FormSpec, principal: Principal, record: StoredRecord) -> list[dict[str, Any]]:
    state = app_state(request)
    specs = [w for w in state.definitions.workflows.values() if w.form == form.key]
    if not specs:
        return []
    rows = service(request).for_record(form.key, record.id)
    titles = {k: w.title for k, w in state.definitions.workflows.items()}
    change = next((w for w in specs if w.changes and starter_of(principal, w).roles), None)
    return [{"template": "workflows/panel.html", "wf_rows": rows, "wf_titles": titles, "wf_statuses": STATUS_LABELS,
             "wf_change": change}]


def hold_update(request: Request, form: FormSpec, principal: Principal, record: StoredRecord,
                submitted: dict[str, Any]) -> HeldUpdate | None:
    """Edits of protected fields are not saved: they become a change request (a draft the editor completes)."""
    state = app_state(request)
    requests = ChangeRequests(service(request))
    held = requests.hold(state.definitions, form, principal, record, submitted, state.units())
    if held is None:
        return None
    if held.issues:
        return HeldUpdate(held.keys, held.issues)
    spec = held.spec

    def commit() -> tuple[str, str]:
        try:
            result = requests.submit_draft(state.definitions, held, principal, record.id)
        except WorkflowError as exc:
            return f"受保护信息的修改未提交：{exc.message}", ""
        if not result.ok:
            return "受保护信息的修改未提交：" + "；".join(issue_text(spec.application, i) for i in result.issues), ""
        counts.changed()
        labels = "、".join(form.fields[k].label for k in spec.changes if k in held.keys)
        return (f"{labels}的修改须经审核，未直接保存；已生成{spec.title}申请，请填写申请信息后提交审核",
                f"/wf/a/{result.application_id}/edit")

    return HeldUpdate(held.keys, (), commit)
