"""Workflow screens: 待办, 已办, 我的申请, starting an application, the application page and its actions.

Every route declares `opt={"workflow": ...}`, read by `workflow_guard`:
  "inbox"     any signed-in user (lists and the start hub show only what concerns them)
  "start"     the workflow exists (else 404) and the user holds one of its start roles (else 403)
  "view"      the application exists and the user may see it (else 404)
  "decide"    the application exists (else 404) and the user belongs to one of its assignee groups (else 403);
              checked by the decision itself, first thing under the application's lock (one read, not two)
  "applicant" the application exists (else 404) and the user is its applicant (else 403)
  "file"      the attachment belongs to an application the user may see (else 404)
"""
from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from engine.attachments import AttachmentService
from engine.fields.files import UploadedFile
from engine.issues import Issue
from engine.messages import render
from engine.permissions import Principal, is_editable, is_masked, policy, scope, writable_keys
from engine.records import ListQuery, StoredRecord
from engine.spec import FormPolicy, FormSpec
from engine.storage.models import Application
from engine.validation import clean_record
from engine.workflows import routing
from engine.workflows.compiler import CHANGES_SECTION
from engine.workflows.errors import (
    ApplicationNotFound, NoAssigneeGroup, StartNotAllowed, VersionBroken, WorkflowError,
)
from engine.workflows.routing import Actor, Context
from engine.workflows.service import Bundle, WorkflowService, system_principal, unit_options
from engine.workflows.spec import ACTION_LABELS, STATUS_LABELS, WITH_APPLICANT, WorkflowSpec
from web.auth import app_state, current_principal
from web.controllers.records import check_context
from web.downloads import file_response
from web.features import Action, Feature, HeldUpdate
from web import generations
from web.formdata import read_submission, table_action
from web.generations import Generation
from web.pages import NavItem, flash, page
from web.params import Id, PageNo, parse_id
from web.presenter import display_text, field_view, issue_text, issues_by_field
from web.state import AppState
from web.writes import run_write

TASK_LABELS = {"open": "待处理", "approved": "已同意", "rejected": "已驳回", "returned": "已退回", "cancelled": "无需处理"}
DONE_MESSAGES = {"approve": "已同意", "reject": "已驳回", "return": "已退回申请人修改"}
LISTS = {"todo": "待办", "done": "已办", "mine": "我的申请"}


class InboxCounts:
    """The 待办 badge is on every page: counted at most once per TTL per user, and afresh after any workflow
    write by any worker of this server (a shared counter); another server's or command's writes show within TTL."""

    def __init__(self, ttl: float = 10.0, size: int = 4096, generation: Generation = generations.workflows) -> None:
        self.ttl, self.size = ttl, size
        self.generation = generation
        self.entries: dict[tuple[Any, ...], tuple[int, float, int]] = {}

    def get(self, key: tuple[Any, ...], compute: Callable[[], int]) -> int:
        found = self.entries.get(key)
        now, generation = time.monotonic(), self.generation.value
        if found is not None and found[0] == generation and now - found[1] < self.ttl:
            return found[2]
        if len(self.entries) >= self.size:
            self.entries.clear()
        value = compute()
        self.entries[key] = (generation, now, value)
        return value

    def changed(self) -> None:
        self.generation.bump()


_counts = InboxCounts()


def _inbox_count(state: AppState, principal: Principal) -> int:
    actor = Actor.of(principal)
    return _counts.get((state.db.url, principal.user_id, actor.roles, actor.paths),
                       lambda: WorkflowService(state.db, state.records).count_inbox(principal))


def service(connection: ASGIConnection) -> WorkflowService:
    state = app_state(connection)
    return WorkflowService(state.db, state.records)


# --- the guard ----------------------------------------------------------------------------------

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


# --- the controller -----------------------------------------------------------------------------

class WorkflowController(Controller):
    path = "/wf"
    guards = [workflow_guard]

    @get("/todo", opt={"workflow": "inbox"}, name="wf:todo")
    async def todo(self, request: Request, page_no: PageNo) -> Template:
        return _list_page(request, "todo", page_no)

    @get("/done", opt={"workflow": "inbox"}, name="wf:done")
    async def done(self, request: Request, page_no: PageNo) -> Template:
        return _list_page(request, "done", page_no)

    @get("/mine", opt={"workflow": "inbox"}, name="wf:mine")
    async def mine(self, request: Request, page_no: PageNo) -> Template:
        return _list_page(request, "mine", page_no)

    @get("/new", opt={"workflow": "inbox"}, name="wf:index")
    async def index(self, request: Request) -> Template:
        principal = current_principal(request)
        return page(request, "workflows/index.html", workflows=_startable(app_state(request), principal), title="发起申请")

    @get("/new/{key:str}", opt={"workflow": "start"}, name="wf:workflow")
    async def workflow(self, request: Request, key: FromPath[str], page_no: PageNo) -> Template:
        state, principal = app_state(request), current_principal(request)
        spec = state.definitions.workflows[key]
        form = state.definitions.forms[spec.form]
        starter = _starter(principal, spec)
        params = request.query_params
        result = state.records.list(form, starter, ListQuery(search=params.get("q", ""), page=page_no))
        found = policy(starter, form)
        columns = [form.fields[k] for k in spec.summary if found is not None and k not in found.hidden][:5]
        units = state.units()
        rows = [(r, [field_view(form, c, found, r.values.get(c.key)) for c in columns], _may_start(spec, principal, r, units))
                for r in result.records]
        return page(request, "workflows/workflow.html", spec=spec, form=form, columns=columns, rows=rows, result=result,
                    q=params.get("q", ""), steps=_step_lines(state, spec), title=spec.title,
                    page_query=lambda number: urlencode({"q": params.get("q", ""), "page": number}))

    @get("/new/{key:str}/start", opt={"workflow": "start"}, name="wf:new")
    async def new(self, request: Request, key: FromPath[str], record: Id) -> Template:
        spec, form, principal, target = _starting(request, key, record)
        return _form_page(request, spec, form, principal, target, values=_start_values(spec, target))

    @post("/new/{key:str}/check", opt={"workflow": "start"}, name="wf:check")
    async def check_new(self, request: Request, key: FromPath[str], record: Id,
                        field: FromQuery[str]) -> Template:
        """htmx: one field of a new application, checked as it is typed (see `_check`)."""
        spec, form, principal, target = _starting(request, key, record)
        return await _check(request, spec, form, principal, target, _start_values(spec, target), field)

    @post("/new/{key:str}/start", opt={"workflow": "start"}, name="wf:start")
    async def start(self, request: Request, key: FromPath[str], record: Id) -> Response:
        state = app_state(request)
        spec, form, principal, target = _starting(request, key, record)
        data = await request.form()
        submitted = await _submission(spec, form, principal, data)
        chosen = _chosen(data.get("_unit"))
        values = _start_values(spec, target)
        if table_action(data, submitted):
            return _form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen)
        try:
            result = service(request).start(state.definitions, spec, principal, record, {**values, **submitted}, chosen)
        except WorkflowError as exc:
            return _form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen,
                              errors=[exc.message], status=exc.status)
        if not result.ok:
            return _form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen,
                              issues=result.issues, status=422)
        _counts.changed()
        flash(request, _submitted_message(result.outcome, spec))
        return Redirect(f"/wf/a/{result.application_id}", status_code=303)

    @get("/a/{application_id:int}", opt={"workflow": "view"}, name="wf:application")
    async def application(self, request: Request, application_id: Id) -> Template:
        return _application_page(request, request.state.wf_bundle)

    @post("/a/{application_id:int}/decide", opt={"workflow": "decide"}, name="wf:decide")
    async def decide(self, request: Request, application_id: Id) -> Response:
        state, principal = app_state(request), current_principal(request)
        data = await request.form()
        decision = data.get("decision") if isinstance(data.get("decision"), str) else ""
        task = _chosen(data.get("task"))
        comment = data.get("comment") if isinstance(data.get("comment"), str) else ""
        upload = await _upload(data.get("attachment"))
        try:
            await run_write(state.db, service(request).decision(state.definitions, principal, application_id, task or 0,
                                                                decision, comment, upload))
            flash(request, DONE_MESSAGES.get(decision, "已处理"))
        except ApplicationNotFound as exc:
            raise NotFoundException("申请不存在") from exc
        except NoAssigneeGroup as exc:
            raise PermissionDeniedException(exc.message) from exc
        except WorkflowError as exc:
            return _application_page(request, service(request).load(application_id), error=exc.message, status=exc.status,
                                     comment=comment)
        _counts.changed()
        return Redirect(f"/wf/a/{application_id}", status_code=303)

    @post("/a/{application_id:int}/withdraw", opt={"workflow": "applicant"}, name="wf:withdraw")
    async def withdraw(self, request: Request, application_id: Id) -> Response:
        state, principal = app_state(request), current_principal(request)
        try:
            await run_write(state.db, partial(service(request).withdraw, state.definitions, principal, application_id))
            flash(request, "申请已撤回")
        except WorkflowError as exc:
            return _application_page(request, service(request).load(application_id), error=exc.message, status=exc.status)
        _counts.changed()
        return Redirect(f"/wf/a/{application_id}", status_code=303)

    @get("/a/{application_id:int}/edit", opt={"workflow": "applicant"}, name="wf:edit")
    async def edit(self, request: Request, application_id: Id) -> Response:
        bundle: Bundle = request.state.wf_bundle
        if bundle.application.status not in WITH_APPLICANT:
            return _not_editable(request, bundle)
        spec, form, target = _edit_context(request, bundle)
        values = WorkflowService.values(spec, bundle.application)
        return _form_page(request, spec, form, current_principal(request), target, values=values, bundle=bundle,
                          chosen=bundle.application.chosen_unit_id)

    @post("/a/{application_id:int}/check", opt={"workflow": "applicant"}, name="wf:check_edit")
    async def check_edit(self, request: Request, application_id: Id, field: FromQuery[str]) -> Template:
        """htmx: one field of the applicant's edit page (after 退回修改, or a draft), checked as it is typed."""
        bundle: Bundle = request.state.wf_bundle
        status = bundle.application.status
        if status not in WITH_APPLICANT:
            issue = Issue("wf_not_in_progress", {"status": STATUS_LABELS.get(status, status)})
            raise HTTPException(status_code=409, detail=render(issue))
        spec, form, target = _edit_context(request, bundle)
        values = WorkflowService.values(spec, bundle.application)
        return await _check(request, spec, form, current_principal(request), target, values, field, bundle)

    @post("/a/{application_id:int}/edit", opt={"workflow": "applicant"}, name="wf:resubmit")
    async def resubmit(self, request: Request, application_id: Id) -> Response:
        state, principal = app_state(request), current_principal(request)
        bundle: Bundle = request.state.wf_bundle
        if bundle.application.status not in WITH_APPLICANT:
            return _not_editable(request, bundle)
        spec, form, target = _edit_context(request, bundle)
        data = await request.form()
        submitted = await _submission(spec, form, principal, data)
        chosen = _chosen(data.get("_unit"))
        values = WorkflowService.values(spec, bundle.application)
        if table_action(data, submitted):
            return _form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen, bundle=bundle)
        try:
            result = service(request).resubmit(state.definitions, principal, application_id, submitted, chosen)
        except WorkflowError as exc:
            return _form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen,
                              bundle=bundle, errors=[exc.message], status=exc.status)
        if not result.ok:
            return _form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen,
                              bundle=bundle, issues=result.issues, status=422)
        _counts.changed()
        flash(request, _submitted_message(result.outcome, spec))
        return Redirect(f"/wf/a/{application_id}", status_code=303)

    @get("/files/{attachment_id:str}", opt={"workflow": "file"}, name="wf:file")
    async def file(self, request: Request, attachment_id: FromPath[str]) -> Response:
        state = app_state(request)
        served = AttachmentService(state.db, state.records).application_file(state.definitions, current_principal(request),
                                                                              attachment_id)
        return file_response(served)


# --- pages --------------------------------------------------------------------------------------

def _list_page(request: Request, kind: str, page_no: int) -> Template:
    state, principal = app_state(request), current_principal(request)
    params = request.query_params
    workflow, status = params.get("workflow", ""), params.get("status", "")
    workflows = service(request)
    if kind == "todo":
        total = None if workflow or status else _inbox_count(state, principal)
        listing = workflows.inbox(principal, workflow, status, page_no, total)
    else:
        listing = getattr(workflows, kind)(principal, workflow, status, page_no)
    titles = {k: w.title for k, w in state.definitions.workflows.items()}
    return page(request, "workflows/list.html", kind=kind, kinds=LISTS, listing=listing, titles=titles,
                workflow=workflow, status=status, statuses=STATUS_LABELS, title=LISTS[kind],
                page_query=lambda number: urlencode({"workflow": workflow, "status": status, "page": number}))


def _application_page(request: Request, bundle: Bundle | None, error: str = "", status: int = 200,
                      comment: str = "") -> Template:
    if bundle is None:
        raise NotFoundException("申请不存在")
    state, principal = app_state(request), current_principal(request)
    app = bundle.application
    spec = _spec(request, app)
    form = state.definitions.forms[spec.form]
    record = state.records.get(form, app.record_id, _reader(principal, form), "read")
    found = policy(principal, form) or _masked_all(form)
    summary = [field_view(form, form.fields[k], found, record.values.get(k)) for k in spec.summary
               if record is not None and k in form.fields and k not in found.hidden]
    app_found = _application_policy(spec, form, found)
    values = WorkflowService.values(spec, app)
    cleaned = clean_record(spec.application, values)
    sections = [(section, [_link(field_view(spec.application, spec.application.fields[k], app_found, values.get(k)))
                           for k in section.fields if k not in cleaned.hidden])
                for section in spec.application.sections if section.key != CHANGES_SECTION]
    actor, state_ = Actor.of(principal), bundle.state()
    mine = routing.actionable(spec, state_, actor, app.applicant_id)
    template = page(
        request, "workflows/application.html", app=app, spec=spec, form=form, record=record, summary=summary,
        sections=sections, diff=_diff(form, found, app), timeline=_timeline(bundle), steps=_progress(spec, bundle),
        chosen=_unit_name(state, app.chosen_unit_id), record_unit=_unit_name(state, record.unit_id) if record else "",
        tasks=[(t, routing.actions_for(spec, t), spec.step(t.step)) for t in mine],
        action_labels=ACTION_LABELS, status_labels=STATUS_LABELS, error=error, comment=comment,
        can_withdraw=routing.can_withdraw(state_, actor, app.applicant_id),
        can_edit=app.applicant_id == principal.user_id and app.status in WITH_APPLICANT,
        title=f"{spec.title}申请 #{app.id}",
    )
    template.status_code = status
    return template


def _form_page(request: Request, spec: WorkflowSpec, form: FormSpec, principal: Principal, target: StoredRecord,
               values: dict[str, Any], raw: dict[str, Any] | None = None, issues: list[Issue] | None = None,
               chosen: int | None = None, bundle: Bundle | None = None, errors: list[str] | None = None,
               status: int = 200) -> Template:
    state = app_state(request)
    raw, issues = raw or {}, issues or []
    found = policy(principal, form) or _masked_all(form)
    app_found = _application_policy(spec, form, found)
    merged = {**values, **{k: v for k, v in raw.items() if k in spec.application.fields}}
    cleaned = clean_record(spec.application, merged)
    by_field = issues_by_field(issues)
    sections = []
    for section in spec.application.sections:
        views = []
        for key in section.fields:
            if key in app_found.hidden:
                continue
            typed = raw.get(key) if key in raw else None
            views.append(_link(field_view(spec.application, spec.application.fields[key], app_found,
                                          value=values.get(key) if typed is None else None, raw=typed,
                                          issues=by_field.get(key, []), visible=key not in cleaned.hidden,
                                          required=key in cleaned.required)))
        sections.append((section, views))
    current = _current(spec, form, found, target)
    summary = [field_view(form, form.fields[k], found, target.values.get(k)) for k in spec.summary
               if k in form.fields and k not in found.hidden]
    options = unit_options(spec, target.unit_path, state.units()) if spec.unit_choice else []
    action = f"/wf/a/{bundle.application.id}/edit" if bundle else f"/wf/new/{spec.key}/start?record={target.id}"
    template = page(request, "workflows/form.html", spec=spec, form=form, target=target, summary=summary, sections=sections,
                    target_unit=_unit_name(state, target.unit_id) or target.unit_name,
                    current=current, check_url=_check_url(spec, target, bundle), options=options,
                    chosen=str(chosen or ""),
                    unit_error=next((issue_text(spec.application, i) for i in issues if i.path == "_unit"), ""),
                    summary_errors=(errors or []) + [issue_text(spec.application, i) for i in issues],
                    action=action, bundle=bundle, title=spec.title)
    template.status_code = status
    return template


async def _check(request: Request, spec: WorkflowSpec, form: FormSpec, principal: Principal, target: StoredRecord,
                 values: dict[str, Any], key: str, bundle: Bundle | None = None) -> Template:
    """The record form's inline check (`check_context`) on the application form: what is typed so far, on top of
    the values the application starts from, through the same validation as submitting (`WorkflowService.validate`:
    the one validator on the application, proposed values also under the target form's rules)."""
    if key not in spec.application.fields:
        raise NotFoundException("没有这个字段")
    state = app_state(request)
    found = policy(principal, form) or _masked_all(form)
    data = await request.form()
    submitted = await _submission(spec, form, principal, data)
    chosen = _chosen(data.get("_unit"))
    cleaned, issues, _ = service(request).validate(spec, form, target, {**values, **submitted}, chosen, state.units())
    context = check_context(spec.application, _application_policy(spec, form, found), key, submitted, cleaned, issues)
    context["dependents"] = [_link(view) for view in context["dependents"]]
    return Template(template_name="workflows/check.html",
                    context={**context, "current": _current(spec, form, found, target),
                             "check_url": _check_url(spec, target, bundle)})


def _check_url(spec: WorkflowSpec, target: StoredRecord, bundle: Bundle | None) -> str:
    """Where a field of this application form is checked; the field's key is appended."""
    if bundle is not None:
        return f"/wf/a/{bundle.application.id}/check?field="
    return f"/wf/new/{spec.key}/check?record={target.id}&field="


def _current(spec: WorkflowSpec, form: FormSpec, found: FormPolicy, target: StoredRecord) -> dict[str, str]:
    """A change request's fields as the record holds them now, shown as this user may see them."""
    return {k: display_text(form.fields[k], target.values.get(k), is_masked(found, form.fields[k]))
            for k in spec.changes}


def _start_values(spec: WorkflowSpec, target: StoredRecord) -> dict[str, Any]:
    """What a new application starts from: its fields' defaults, and a change request's fields as the record has them."""
    values = {k: f.default for k, f in spec.application.fields.items()}
    values.update({k: target.values.get(k) for k in spec.changes})
    return values


def _not_editable(request: Request, bundle: Bundle) -> Template:
    app = bundle.application
    message = render(Issue("wf_not_in_progress", {"status": STATUS_LABELS.get(app.status, app.status)}))
    return _application_page(request, service(request).load(app.id), error=message, status=409)


def _edit_context(request: Request, bundle: Bundle) -> tuple[WorkflowSpec, FormSpec, StoredRecord]:
    """The spec (of the application's version), target form and record for the applicant's edit page."""
    state, principal = app_state(request), current_principal(request)
    app = bundle.application
    spec = _spec(request, app)
    form = state.definitions.forms[spec.form]
    target = state.records.get(form, app.record_id, _reader(principal, form), "read")
    if target is None:
        raise NotFoundException("申请所针对的记录已不存在")
    return spec, form, target


# --- view helpers -------------------------------------------------------------------------------

def _spec(request: Request, app: Application) -> WorkflowSpec:
    """The workflow version the application runs on; one that no longer compiles is a 409 with the reason."""
    try:
        return service(request).spec_of(app_state(request).definitions, app)
    except VersionBroken as exc:
        raise HTTPException(status_code=409, detail=exc.message) from exc


def _diff(form: FormSpec, found: FormPolicy, app: Application) -> list[dict[str, str]]:
    """A change request's old → new values, each shown as this viewer may see it."""
    rows = []
    for key, (old, new) in (app.changes or {}).items():
        spec = form.fields.get(key)
        if spec is None or key in found.hidden:
            continue
        masked = is_masked(found, spec)
        rows.append({"key": key, "label": spec.label, "masked": masked,
                     "old": _stored_text(spec, old, masked), "new": _stored_text(spec, new, masked)})
    return rows


def _stored_text(spec: Any, stored: Any, masked: bool) -> str:
    if stored is None:
        return ""
    try:
        return display_text(spec, spec.kind.from_json(stored), masked)
    except (ValueError, TypeError, KeyError):
        return str(stored)


def _timeline(bundle: Bundle) -> list[dict[str, Any]]:
    return [{"action": a, "label": ACTION_LABELS.get(a.action, a.action),
             "link": f"/wf/files/{a.attachment['id']}" if a.attachment else ""} for a in bundle.actions]


def _progress(spec: WorkflowSpec, bundle: Bundle) -> list[dict[str, Any]]:
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


def _step_lines(state: AppState, spec: WorkflowSpec) -> list[str]:
    lines = []
    for step in spec.steps:
        who = ("、" if step.mode == "all" else " 或 ").join(a.label for a in step.assignees)
        lines.append(f"{step.title}：{who}{'（均须同意）' if step.mode == 'all' and len(step.assignees) > 1 else ''}"
                     f"{'（满足条件时）' if step.when else ''}")
    return lines


def _unit_name(state: AppState, unit_id: int | None) -> str:
    unit = next((u for u in state.units() if u.id == unit_id), None)
    return unit.full_name if unit else ""


def _link(view: Any) -> Any:
    """Application attachments are served by /wf/files (the application's rule), not /files (a record's)."""
    if view.link.startswith("/files/"):
        view.link = "/wf" + view.link
    return view


def _masked_all(form: FormSpec) -> FormPolicy:
    return FormPolicy(actions=frozenset(), masked=frozenset(form.fields))


def _application_policy(spec: WorkflowSpec, form: FormSpec, found: FormPolicy) -> FormPolicy:
    """The application form for this user: proposed values follow their rights on the target's fields."""
    changes = [form.fields[k] for k in spec.changes]
    return FormPolicy(
        actions=frozenset({"create", "read", "update"}),
        hidden=frozenset(f.key for f in changes if f.key in found.hidden),
        readonly=frozenset(f.key for f in changes if not is_editable(found, f)),
        masked=frozenset(f.key for f in changes if is_masked(found, f)),
        reveal_sensitive=found.reveal_sensitive,
    )


def _reader(principal: Principal, form: FormSpec) -> Principal:
    """Reads the target record for display whatever the viewer's scope (they passed the application's rule)."""
    return system_principal(principal, form)


def _starter(principal: Principal, spec: WorkflowSpec) -> Principal:
    roles = tuple(r for r in principal.roles if r.key in spec.start_roles)
    return Principal(principal.user_id, principal.username, principal.display_name, roles, principal.unit_paths, principal.anchors)


def _may_start(spec: WorkflowSpec, principal: Principal, record: StoredRecord, units: list[Any]) -> bool:
    levels = {u.level: routing.UnitInfo(u.id, u.path, u.name) for u in units if record.unit_path.startswith(u.path)}
    return routing.start_allowed(spec, Actor.of(principal), Context({}, record.values, {"record_unit": levels}, principal.user_id))


def _starting(request: Request, key: str, record_id: int) -> tuple[WorkflowSpec, FormSpec, Principal, StoredRecord]:
    """The workflow, its form, the user and the record a new application would be about (404/403 otherwise)."""
    principal = current_principal(request)
    spec = app_state(request).definitions.workflows[key]
    form = app_state(request).definitions.forms[spec.form]
    return spec, form, principal, _start_record(request, spec, form, principal, record_id)


def _start_record(request: Request, spec: WorkflowSpec, form: FormSpec, principal: Principal, record_id: int) -> StoredRecord:
    state = app_state(request)
    if state.records.get(form, record_id, _starter(principal, spec), "read") is None:
        raise NotFoundException("记录不存在或不在您的权限范围内")
    record = service(request).startable_record(None, spec, form, principal, record_id, state.units())
    if record is None:
        raise PermissionDeniedException(StartNotAllowed(workflow=spec.title).message)
    return record


def _startable(state: AppState, principal: Principal) -> list[WorkflowSpec]:
    keys = {r.key for r in principal.roles}
    return [w for w in state.definitions.workflows.values() if keys & set(w.start_roles)]


async def _submission(spec: WorkflowSpec, form: FormSpec, principal: Principal, data: Any) -> dict[str, Any]:
    """What the applicant may write: their own fields, and proposed values of fields they may edit on the record."""
    app_found = _application_policy(spec, form, policy(principal, form) or _masked_all(form))
    writable = writable_keys(app_found, spec.application)
    submitted = await read_submission(spec.application, data, writable)
    return {k: v for k, v in submitted.items() if k in writable}


async def _upload(value: Any) -> UploadedFile | None:
    if isinstance(value, UploadFile) and value.filename:
        return UploadedFile(value.filename, value.content_type or "", await value.read())
    return None


def _chosen(raw: Any) -> int | None:
    return parse_id(raw)


def _submitted_message(outcome: Any, spec: WorkflowSpec) -> str:
    if outcome is None:
        return "已保存"
    if outcome.status == "approved":
        return "申请已提交，无需审批，已生效"
    step = spec.step(outcome.step)
    return f"申请已提交，等待“{step.title}”" if step else "申请已提交"


# --- hooks into the record pages ----------------------------------------------------------------

def _record_actions(holder: dict[str, AppState], form: FormSpec, principal: Principal, record: StoredRecord) -> list[Action]:
    state = holder.get("state")
    if state is None:
        return []
    units = state.units()
    actions = []
    for spec in state.definitions.workflows.values():
        if spec.form != form.key:
            continue
        starter = _starter(principal, spec)
        if starter.roles and scope(starter, "read", form).contains(record.unit_path, record.created_by, principal.user_id, record) \
                and _may_start(spec, principal, record, units):
            actions.append({"href": f"/wf/new/{spec.key}/start?record={record.id}", "label": spec.start_label})
    return actions


def _record_panels(request: Request, form: FormSpec, principal: Principal, record: StoredRecord) -> list[dict[str, Any]]:
    state = app_state(request)
    specs = [w for w in state.definitions.workflows.values() if w.form == form.key]
    if not specs:
        return []
    rows = service(request).for_record(form.key, record.id)
    titles = {k: w.title for k, w in state.definitions.workflows.items()}
    change = next((w for w in specs if w.changes and _starter(principal, w).roles), None)
    return [{"template": "workflows/panel.html", "wf_rows": rows, "wf_titles": titles, "wf_statuses": STATUS_LABELS,
             "wf_change": change}]


def _hold_update(request: Request, form: FormSpec, principal: Principal, record: StoredRecord,
                 submitted: dict[str, Any]) -> HeldUpdate | None:
    """Edits of protected fields are not saved: they become a change request (a draft the editor completes)."""
    state = app_state(request)
    spec = next((w for w in state.definitions.workflows.values() if w.form == form.key and w.changes), None)
    if spec is None:
        return None
    writable = writable_keys(policy(principal, form), form)
    changed = {}
    for key in spec.changes:
        if key in writable and key in submitted:
            value, problems = form.fields[key].kind.clean(submitted[key])
            if problems or value != record.values.get(key):
                changed[key] = submitted[key]
    if not changed:
        return None
    keys, units, workflows = frozenset(changed), state.units(), service(request)
    if workflows.startable_record(None, spec, form, principal, record.id, units) is None:
        return HeldUpdate(keys, tuple(Issue("wf_change_forbidden", {"workflow": spec.title}, path=k) for k in changed))
    pending = next((a for a in workflows.for_record(form.key, record.id)
                    if a.workflow_key == spec.key and a.status in ("draft", "pending", "returned")), None)
    if pending is not None:
        return HeldUpdate(keys, tuple(Issue("wf_change_pending", {"id": pending.id}, path=k) for k in changed))
    raw = {k: f.default for k, f in spec.application.fields.items()}
    raw.update({k: record.values.get(k) for k in spec.changes})
    raw.update(changed)
    _, problems, _ = workflows.validate(spec, form, record, raw, None, units)
    problems = [i for i in problems if i.path.split(".")[0] in spec.changes]
    if problems:
        return HeldUpdate(keys, tuple(problems))

    def commit() -> tuple[str, str]:
        try:
            result = workflows.start(state.definitions, spec, principal, record.id, raw, draft=True)
        except WorkflowError as exc:
            return f"受保护信息的修改未提交：{exc.message}", ""
        if not result.ok:
            return "受保护信息的修改未提交：" + "；".join(issue_text(spec.application, i) for i in result.issues), ""
        _counts.changed()
        labels = "、".join(form.fields[k].label for k in changed)
        return (f"{labels}的修改须经审核，未直接保存；已生成{spec.title}申请，请填写申请信息后提交审核",
                f"/wf/a/{result.application_id}/edit")

    return HeldUpdate(keys, (), commit)


def workflows_feature() -> Feature:
    # nav(state) is called once when the app is built; record_actions has no request, so it reads that state.
    holder: dict[str, AppState] = {}

    def nav(state: AppState) -> list[NavItem]:
        holder["state"] = state

        def assignee(principal: Principal) -> bool:
            keys = {r.key for r in principal.roles}
            return any(a.role in keys for w in state.definitions.workflows.values() for s in w.steps for a in s.assignees)

        def starter(principal: Principal) -> bool:
            return bool(_startable(state, principal))

        def count(principal: Principal) -> int:
            return _inbox_count(state, principal)
        return [
            NavItem("wf_todo", "/wf/todo", "待办", "等待我审批的申请", visible=assignee, count=count),
            NavItem("wf_done", "/wf/done", "已办", "我审批过的申请", visible=assignee),
            NavItem("wf_mine", "/wf/mine", "我的申请", "我提交的申请及其进度", visible=starter),
            NavItem("wf_new", "/wf/new", "发起申请", "转学、休学、复学、退学、毕业、信息变更", visible=starter),
        ]

    return Feature(
        name="workflows", routes=(WorkflowController,), nav=nav,
        record_actions=lambda form, principal, record: _record_actions(holder, form, principal, record),
        record_panels=_record_panels, hold_update=_hold_update,
    )
