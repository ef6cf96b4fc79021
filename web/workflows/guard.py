"""`workflow_guard`: reads `opt={"workflow": ...}` of a route (the package docstring lists the needs)."""
from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler

from engine.issues import Issue
from engine.messages import render
from web.auth import app_state
from web.workflows.badge import service


async def workflow_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    # async: a sync guard costs a thread-pool round trip per request; its queries are as short as a handler's.
    need = handler.opt["workflow"]
    state, principal = app_state(connection), connection.state.principal
    if need == "inbox":
        return
    if need == "start":
        spec = state.definitions.workflows.get(connection.path_params.get("key", ""))
        if spec is None:
            raise NotFoundException("没有这个流程")
        if not {r.key for r in principal.roles} & set(spec.start_roles):
            raise PermissionDeniedException(render(Issue("wf_start_not_allowed", {"workflow": spec.title})))
        return
    if need == "file":
        return  # the handler finds the attachment's application and applies the "view" rule
    if need == "decide":
        return  # WorkflowService.decide refuses (404 / 403) before it reads or shows anything else
    # The applicant's actions need no timeline; the page loads it.
    bundle = service(connection).load(connection.path_params["application_id"], timeline=need == "view")
    if bundle is None:
        raise NotFoundException("申请不存在")
    connection.state.wf_bundle = bundle
    if need == "view" and not service(connection).can_view(state.definitions, principal, bundle):
        raise NotFoundException("申请不存在或不在您的权限范围内")
    if need == "applicant" and bundle.application.applicant_id != principal.user_id:
        raise PermissionDeniedException(render(Issue("wf_not_applicant")))
