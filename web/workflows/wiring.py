"""The workflows feature as the app composes it (web/features.py): routes, navigation and record-page hooks."""
from __future__ import annotations

from engine.permissions import Principal, can
from web.features import Feature
from web.pages import NavItem
from web.state import AppState
from web.workflows.badge import inbox_count, returned_count
from web.workflows.controller import WorkflowController
from web.workflows.record_hooks import hold_update, record_actions, record_panels
from web.workflows.views import is_assignee, moving_workflows, startable


def workflows_feature() -> Feature:
    # nav(state) is called once when the app is built; record_actions has no request, so it reads that state.
    holder: dict[str, AppState] = {}

    def nav(state: AppState) -> list[NavItem]:
        holder["state"] = state

        def assignee(principal: Principal) -> bool:
            return is_assignee(state, principal)

        def starter(principal: Principal) -> bool:
            return bool(startable(state, principal))

        def count(principal: Principal) -> int:
            return inbox_count(state, principal)

        def returned(principal: Principal) -> int:
            return returned_count(state, principal)

        def mover(principal: Principal) -> bool:
            """Reads a form whose records some workflow changes."""
            moving = moving_workflows(state)
            return any(can(principal, "read", state.definitions.forms[w.form]) for k, w in state.definitions.workflows.items()
                       if k in moving and w.form in state.definitions.forms)
        return [
            NavItem("wf_todo", "/wf/todo", "待办", "等待我审批的申请", visible=assignee, count=count),
            NavItem("wf_done", "/wf/done", "已办", "我审批过的申请", visible=assignee),
            NavItem("wf_mine", "/wf/mine", "我的申请", "我提交的申请及其进度", visible=starter, count=returned),
            NavItem("wf_moves", "/wf/moves", "学籍异动", "转出、转入、休学、退学等已生效的变动", visible=mover),
            NavItem("wf_new", "/wf/new", "发起申请", "转学、休学、复学、退学、毕业、信息变更", visible=starter),
        ]

    return Feature(
        name="workflows", routes=(WorkflowController,), nav=nav,
        record_actions=lambda form, principal, record: record_actions(holder, form, principal, record),
        record_panels=record_panels, hold_update=hold_update,
    )
