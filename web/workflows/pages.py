"""Page builders of the workflow screens: lists, the application page, the application form and its inline check."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.response import Template

from engine.issues import Issue
from engine.messages import render
from engine.permissions import Principal, policy
from engine.records import StoredRecord
from engine.spec import FormSpec
from engine.storage.models import Application
from engine.validation import clean_record
from engine.workflows import routing
from engine.workflows.compiler import CHANGES_SECTION
from engine.workflows.errors import ExclusiveOpen, StartNotAllowed, VersionBroken
from engine.workflows.routing import Actor
from engine.workflows.service import Bundle, WorkflowService, unit_options
from engine.workflows.spec import ACTION_LABELS, OPEN_STATUSES, RECORD, STATUS_LABELS, WITH_APPLICANT, WorkflowSpec
from web.auth import app_state, current_principal
from web.controllers.records import check_context
from web.pages import page
from web.presenter import field_view, issue_text, issues_by_field
from web.workflows.badge import inbox_count, service
from web.workflows.views import (
    application_policy, check_url, current_values, diff_rows, file_link, masked_all, parse_unit, progress_rows,
    is_assignee, move_row, moving_workflows, reader_of, returned_note, row_unit, startable, unit_column, snapshot_values, starter_of, submission, timeline_rows, unit_full_name,
)

LISTS = {"todo": "待办", "done": "已办", "mine": "我的申请"}


def list_page(request: Request, kind: str, page_no: int) -> Template:
    state, principal = app_state(request), current_principal(request)
    params = request.query_params
    workflow, status = params.get("workflow", ""), params.get("status", "")
    level, units = unit_column(state, principal)
    chosen = next((u for u in units if str(u.id) == params.get("unit", "")), None)
    within = chosen.path if chosen is not None else ""
    workflows = service(request)
    if kind == "todo":
        total = None if workflow or status or within else inbox_count(state, principal)
        listing = workflows.inbox(principal, workflow, status, page_no, total, within=within)
    else:
        listing = getattr(workflows, kind)(principal, workflow, status, page_no, within=within)
    titles = {k: w.title for k, w in state.definitions.workflows.items()}
    kinds = {k: label for k, label in LISTS.items()
             if k == kind or (k == "mine" and startable(state, principal)) or (k != "mine" and is_assignee(state, principal))}
    unit = str(chosen.id) if chosen is not None else ""
    return page(request, "workflows/list.html", kind=kind, kinds=kinds, listing=listing, titles=titles,
                workflow=workflow, status=status, statuses=STATUS_LABELS, title=LISTS[kind],
                level=level, units=units, unit=unit, unit_of=lambda row: row_unit(row, level),
                page_query=lambda number: urlencode({"workflow": workflow, "status": status, "unit": unit, "page": number}))


def moves_page(request: Request, page_no: int) -> Template:
    """学籍异动: approved changes of records in or out of the user's units, each read from the user's side."""
    state, principal = app_state(request), current_principal(request)
    params = request.query_params
    workflow, side = params.get("workflow", ""), params.get("side", "")
    side = side if side in ("out", "in") else ""
    listing = service(request).moves(state.definitions, principal, workflow, side, page_no)
    rows = [move_row(state, principal, row) for row in listing.rows]
    kinds = {k: w.title for k, w in state.definitions.workflows.items() if k in moving_workflows(state)}
    return page(request, "workflows/moves.html", listing=listing, rows=rows, kinds=kinds, workflow=workflow, side=side,
                title="学籍异动",
                page_query=lambda number: urlencode({"workflow": workflow, "side": side, "page": number}))


def application_page(request: Request, bundle: Bundle | None, error: str = "", status: int = 200,
                      comment: str = "") -> Template:
    if bundle is None:
        raise NotFoundException("申请不存在")
    state, principal = app_state(request), current_principal(request)
    app = bundle.application
    spec = spec_of_application(request, app)
    form = state.definitions.forms[spec.form]
    # The record as it is now only for a viewer whose read scope reaches it; anyone else (an approver of another
    # school, the sending school after a transfer) sees it as submitted and decided, kept with the application.
    record = state.records.get(form, app.record_id, principal, "read")
    found = policy(principal, form) or masked_all(form)
    if record is not None:
        shown, record_unit = record.values, unit_full_name(state, record.unit_id)
    else:
        shown, record_unit = snapshot_values(form, app), (app.record_snapshot or {}).get("unit", "")
    summary = [field_view(form, form.fields[k], found, shown.get(k)) for k in spec.summary
               if k in form.fields and k not in found.hidden and (record is not None or app.record_snapshot)]
    app_found = application_policy(spec, form, found)
    values = WorkflowService.values(spec, app)
    # Which application fields show may depend on the record (`record.<field>`): read for that only.
    current = record or state.records.get(form, app.record_id, reader_of(principal, form), "read")
    cleaned = clean_record(spec.application, values, context={RECORD: current.values if current else {}})
    sections = [(section, [file_link(field_view(spec.application, spec.application.fields[k], app_found, values.get(k)))
                           for k in section.fields if k not in cleaned.hidden])
                for section in spec.application.sections if section.key != CHANGES_SECTION]
    actor, state_ = Actor.of(principal), bundle.state()
    mine = routing.actionable(spec, state_, actor, app.applicant_id)
    # While it is in flight, the checks as the record now stands (they are checked again at final approval).
    checks = service(request).check_results(
        state.definitions, spec, app.record_id, current.values, values) if current and app.status in OPEN_STATUSES else []
    template = page(
        request, "workflows/application.html", app=app, spec=spec, form=form, record=record, summary=summary,
        snapshot=record is None and bool(app.record_snapshot), returned=returned_note(bundle),
        sections=sections, diff=diff_rows(form, found, app), timeline=timeline_rows(bundle), steps=progress_rows(spec, bundle),
        chosen=unit_full_name(state, app.chosen_unit_id), record_unit=record_unit,
        tasks=[(t, routing.actions_for(spec, t), spec.step(t.step)) for t in mine],
        action_labels=ACTION_LABELS, status_labels=STATUS_LABELS, error=error, comment=comment,
        can_withdraw=routing.can_withdraw(state_, actor, app.applicant_id),
        can_edit=app.applicant_id == principal.user_id and app.status in WITH_APPLICANT, checks=checks,
        title=f"{spec.title}申请 #{app.id}",
    )
    template.status_code = status
    return template


def form_page(request: Request, spec: WorkflowSpec, form: FormSpec, principal: Principal, target: StoredRecord,
               values: dict[str, Any], raw: dict[str, Any] | None = None, issues: list[Issue] | None = None,
               chosen: int | None = None, bundle: Bundle | None = None, errors: list[str] | None = None,
               status: int = 200) -> Template:
    state = app_state(request)
    raw, issues = raw or {}, issues or []
    found = policy(principal, form) or masked_all(form)
    app_found = application_policy(spec, form, found)
    merged = {**values, **{k: v for k, v in raw.items() if k in spec.application.fields}}
    cleaned = clean_record(spec.application, merged, context={RECORD: target.values})
    by_field = issues_by_field(issues)
    sections = []
    for section in spec.application.sections:
        views = []
        for key in section.fields:
            if key in app_found.hidden:
                continue
            typed = raw.get(key) if key in raw else None
            views.append(file_link(field_view(spec.application, spec.application.fields[key], app_found,
                                          value=values.get(key) if typed is None else None, raw=typed,
                                          issues=by_field.get(key, []), visible=key not in cleaned.hidden,
                                          required=key in cleaned.required)))
        sections.append((section, views))
    current = current_values(spec, form, found, target)
    summary = [field_view(form, form.fields[k], found, target.values.get(k)) for k in spec.summary
               if k in form.fields and k not in found.hidden]
    options = unit_options(spec, target.unit_path, state.units(), target.values) if spec.unit_choice else []
    action = f"/wf/a/{bundle.application.id}/edit" if bundle else f"/wf/new/{spec.key}/start?record={target.id}"
    checks = service(request).check_results(state.definitions, spec, target.id, target.values, merged)
    template = page(request, "workflows/form.html", spec=spec, form=form, target=target, summary=summary, sections=sections,
                    target_unit=unit_full_name(state, target.unit_id) or target.unit_name,
                    current=current, check_url=check_url(spec, target, bundle), options=options,
                    chosen=str(chosen or ""),
                    unit_error=next((issue_text(spec.application, i) for i in issues if i.path == "_unit"), ""),
                    summary_errors=(errors or []) + [issue_text(spec.application, i) for i in issues],
                    action=action, bundle=bundle, checks=checks, title=spec.title)
    template.status_code = status
    return template


async def check_field(request: Request, spec: WorkflowSpec, form: FormSpec, principal: Principal, target: StoredRecord,
                 values: dict[str, Any], key: str, bundle: Bundle | None = None) -> Template:
    """The record form's inline check (`check_context`) on the application form: what is typed so far, on top of
    the values the application starts from, through the same validation as submitting (`WorkflowService.validate`:
    the one validator on the application, proposed values also under the target form's rules)."""
    if key not in spec.application.fields:
        raise NotFoundException("没有这个字段")
    state = app_state(request)
    found = policy(principal, form) or masked_all(form)
    data = await request.form()
    submitted = await submission(spec, form, principal, data)
    chosen = parse_unit(data.get("_unit"))
    cleaned, issues, _ = service(request).validate(spec, form, target, {**values, **submitted}, chosen, state.units())
    context = check_context(spec.application, application_policy(spec, form, found), key, submitted, cleaned, issues)
    context["dependents"] = [file_link(view) for view in context["dependents"]]
    return Template(template_name="workflows/check.html",
                    context={**context, "current": current_values(spec, form, found, target),
                             "check_url": check_url(spec, target, bundle)})


def not_editable(request: Request, bundle: Bundle) -> Template:
    app = bundle.application
    message = render(Issue("wf_not_in_progress", {"status": STATUS_LABELS.get(app.status, app.status)}))
    return application_page(request, service(request).load(app.id), error=message, status=409)


def edit_context(request: Request, bundle: Bundle) -> tuple[WorkflowSpec, FormSpec, StoredRecord]:
    """The spec (of the application's version), target form and record for the applicant's edit page."""
    state, principal = app_state(request), current_principal(request)
    app = bundle.application
    spec = spec_of_application(request, app)
    form = state.definitions.forms[spec.form]
    target = state.records.get(form, app.record_id, reader_of(principal, form), "read")
    if target is None:
        raise NotFoundException("申请所针对的记录已不存在")
    return spec, form, target


def spec_of_application(request: Request, app: Application) -> WorkflowSpec:
    """The workflow version the application runs on; one that no longer compiles is a 409 with the reason."""
    try:
        return service(request).spec_of(app_state(request).definitions, app)
    except VersionBroken as exc:
        raise HTTPException(status_code=409, detail=exc.message) from exc


def starting(request: Request, key: str, record_id: int) -> tuple[WorkflowSpec, FormSpec, Principal, StoredRecord]:
    """The workflow, its form, the user and the record a new application would be about (404/403 otherwise)."""
    principal = current_principal(request)
    spec = app_state(request).definitions.workflows[key]
    form = app_state(request).definitions.forms[spec.form]
    return spec, form, principal, start_record(request, spec, form, principal, record_id)


def start_record(request: Request, spec: WorkflowSpec, form: FormSpec, principal: Principal, record_id: int) -> StoredRecord:
    state = app_state(request)
    if state.records.get(form, record_id, starter_of(principal, spec), "read") is None:
        raise NotFoundException("记录不存在或不在您的权限范围内")
    record = service(request).startable_record(None, spec, form, principal, record_id, state.units())
    if record is None:
        raise PermissionDeniedException(StartNotAllowed(workflow=spec.title).message)
    try:
        service(request).refuse_exclusive(None, state.definitions, spec, record_id)
    except ExclusiveOpen as exc:
        raise HTTPException(status_code=exc.status, detail=exc.message) from exc
    return record
