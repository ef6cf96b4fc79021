"""The workflow routes under /wf: lists, starting, the application page, decisions, withdrawal, resubmission."""
from __future__ import annotations

from functools import partial
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from engine.attachments import AttachmentService
from engine.issues import Issue
from engine.messages import render
from engine.permissions import policy
from engine.records import ListQuery
from engine.workflows.errors import ApplicationNotFound, NoAssigneeGroup, WorkflowError
from engine.workflows.service import Bundle, WorkflowService
from engine.workflows.spec import STATUS_LABELS, WITH_APPLICANT
from web.auth import app_state, current_principal
from web.downloads import file_response
from web.formdata import table_action
from web.pages import flash, page
from web.params import Id, PageNo
from web.presenter import field_view
from web.workflows.badge import counts, service
from web.workflows.guard import workflow_guard
from web.workflows.pages import (
    application_page, check_field, edit_context, form_page, list_page, moves_page, not_editable, starting,
)
from web.workflows.views import (
    may_start, parse_unit, read_upload, startable, starter_of, step_lines, submission, submitted_message,
)

DONE_MESSAGES = {"approve": "已同意", "reject": "已驳回", "return": "已退回申请人修改"}


class WorkflowController(Controller):
    path = "/wf"
    guards = [workflow_guard]

    @get("/todo", opt={"workflow": "inbox"}, name="wf:todo")
    async def todo(self, request: Request, page_no: PageNo) -> Template:
        return list_page(request, "todo", page_no)

    @get("/done", opt={"workflow": "inbox"}, name="wf:done")
    async def done(self, request: Request, page_no: PageNo) -> Template:
        return list_page(request, "done", page_no)

    @get("/mine", opt={"workflow": "inbox"}, name="wf:mine")
    async def mine(self, request: Request, page_no: PageNo) -> Template:
        return list_page(request, "mine", page_no)

    @get("/moves", opt={"workflow": "inbox"}, name="wf:moves")
    async def moves(self, request: Request, page_no: PageNo) -> Template:
        return moves_page(request, page_no)

    @get("/new", opt={"workflow": "inbox"}, name="wf:index")
    async def index(self, request: Request) -> Template:
        principal = current_principal(request)
        return page(request, "workflows/index.html", workflows=startable(app_state(request), principal), title="发起申请")

    @get("/new/{key:str}", opt={"workflow": "start"}, name="wf:workflow")
    async def workflow(self, request: Request, key: FromPath[str], page_no: PageNo) -> Template:
        state, principal = app_state(request), current_principal(request)
        spec = state.definitions.workflows[key]
        form = state.definitions.forms[spec.form]
        starter = starter_of(principal, spec)
        params = request.query_params
        result = state.records.list(form, starter, ListQuery(search=params.get("q", ""), page=page_no))
        found = policy(starter, form)
        columns = [form.fields[k] for k in spec.summary if found is not None and k not in found.hidden][:5]
        units = state.units()
        rows = [(r, [field_view(form, c, found, r.values.get(c.key)) for c in columns], may_start(spec, principal, r, units))
                for r in result.records]
        return page(request, "workflows/workflow.html", spec=spec, form=form, columns=columns, rows=rows, result=result,
                    q=params.get("q", ""), steps=step_lines(state, spec), title=spec.title,
                    page_query=lambda number: urlencode({"q": params.get("q", ""), "page": number}))

    @get("/new/{key:str}/start", opt={"workflow": "start"}, name="wf:new")
    async def new(self, request: Request, key: FromPath[str], record: Id) -> Template:
        spec, form, principal, target = starting(request, key, record)
        return form_page(request, spec, form, principal, target, values=WorkflowService.start_values(spec, target))

    @post("/new/{key:str}/check", opt={"workflow": "start"}, name="wf:check")
    async def check_new(self, request: Request, key: FromPath[str], record: Id,
                        field: FromQuery[str]) -> Template:
        """htmx: one field of a new application, checked as it is typed (see `check_field`)."""
        spec, form, principal, target = starting(request, key, record)
        return await check_field(request, spec, form, principal, target, WorkflowService.start_values(spec, target), field)

    @post("/new/{key:str}/start", opt={"workflow": "start"}, name="wf:start")
    async def start(self, request: Request, key: FromPath[str], record: Id) -> Response:
        state = app_state(request)
        spec, form, principal, target = starting(request, key, record)
        data = await request.form()
        submitted = await submission(spec, form, principal, data)
        chosen = parse_unit(data.get("_unit"))
        values = WorkflowService.start_values(spec, target)
        if table_action(data, submitted):
            return form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen)
        try:
            result = await state.writes.in_thread(service(request).start, state.definitions, spec, principal, record,
                                                  {**values, **submitted}, chosen)
        except WorkflowError as exc:
            return form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen,
                              errors=[exc.message], status=exc.status)
        if not result.ok:
            return form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen,
                              issues=result.issues, status=422)
        counts.changed()
        flash(request, submitted_message(result.outcome, spec))
        return Redirect(f"/wf/a/{result.application_id}", status_code=303)

    @get("/a/{application_id:int}", opt={"workflow": "view"}, name="wf:application")
    async def application(self, request: Request, application_id: Id) -> Template:
        return application_page(request, request.state.wf_bundle)

    @post("/a/{application_id:int}/decide", opt={"workflow": "decide"}, name="wf:decide")
    async def decide(self, request: Request, application_id: Id) -> Response:
        state, principal = app_state(request), current_principal(request)
        data = await request.form()
        decision = data.get("decision") if isinstance(data.get("decision"), str) else ""
        task = parse_unit(data.get("task"))
        comment = data.get("comment") if isinstance(data.get("comment"), str) else ""
        upload = await read_upload(data.get("attachment"))
        try:
            await state.writes.run(service(request).decision(state.definitions, principal, application_id, task or 0,
                                                             decision, comment, upload))
            flash(request, DONE_MESSAGES.get(decision, "已处理"))
        except ApplicationNotFound as exc:
            raise NotFoundException("申请不存在") from exc
        except NoAssigneeGroup as exc:
            raise PermissionDeniedException(exc.message) from exc
        except WorkflowError as exc:
            return application_page(request, service(request).load(application_id), error=exc.message, status=exc.status,
                                     comment=comment)
        counts.changed()
        return Redirect(f"/wf/a/{application_id}", status_code=303)

    @post("/a/{application_id:int}/withdraw", opt={"workflow": "applicant"}, name="wf:withdraw")
    async def withdraw(self, request: Request, application_id: Id) -> Response:
        state, principal = app_state(request), current_principal(request)
        try:
            await state.writes.run(partial(service(request).withdraw, state.definitions, principal, application_id))
            flash(request, "申请已撤回")
        except WorkflowError as exc:
            return application_page(request, service(request).load(application_id), error=exc.message, status=exc.status)
        counts.changed()
        return Redirect(f"/wf/a/{application_id}", status_code=303)

    @get("/a/{application_id:int}/edit", opt={"workflow": "applicant"}, name="wf:edit")
    async def edit(self, request: Request, application_id: Id) -> Response:
        bundle: Bundle = request.state.wf_bundle
        if bundle.application.status not in WITH_APPLICANT:
            return not_editable(request, bundle)
        spec, form, target = edit_context(request, bundle)
        values = WorkflowService.values(spec, bundle.application)
        return form_page(request, spec, form, current_principal(request), target, values=values, bundle=bundle,
                          chosen=bundle.application.chosen_unit_id)

    @post("/a/{application_id:int}/check", opt={"workflow": "applicant"}, name="wf:check_edit")
    async def check_edit(self, request: Request, application_id: Id, field: FromQuery[str]) -> Template:
        """htmx: one field of the applicant's edit page (after 退回修改, or a draft), checked as it is typed."""
        bundle: Bundle = request.state.wf_bundle
        status = bundle.application.status
        if status not in WITH_APPLICANT:
            issue = Issue("wf_not_in_progress", {"status": STATUS_LABELS.get(status, status)})
            raise HTTPException(status_code=409, detail=render(issue))
        spec, form, target = edit_context(request, bundle)
        values = WorkflowService.values(spec, bundle.application)
        return await check_field(request, spec, form, current_principal(request), target, values, field, bundle)

    @post("/a/{application_id:int}/edit", opt={"workflow": "applicant"}, name="wf:resubmit")
    async def resubmit(self, request: Request, application_id: Id) -> Response:
        state, principal = app_state(request), current_principal(request)
        bundle: Bundle = request.state.wf_bundle
        if bundle.application.status not in WITH_APPLICANT:
            return not_editable(request, bundle)
        spec, form, target = edit_context(request, bundle)
        data = await request.form()
        submitted = await submission(spec, form, principal, data)
        chosen = parse_unit(data.get("_unit"))
        values = WorkflowService.values(spec, bundle.application)
        if table_action(data, submitted):
            return form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen, bundle=bundle)
        try:
            result = await state.writes.in_thread(service(request).resubmit, state.definitions, principal,
                                                  application_id, submitted, chosen)
        except WorkflowError as exc:
            return form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen,
                              bundle=bundle, errors=[exc.message], status=exc.status)
        if not result.ok:
            return form_page(request, spec, form, principal, target, values=values, raw=submitted, chosen=chosen,
                              bundle=bundle, issues=result.issues, status=422)
        counts.changed()
        flash(request, submitted_message(result.outcome, spec))
        return Redirect(f"/wf/a/{application_id}", status_code=303)

    @get("/files/{attachment_id:str}", opt={"workflow": "file"}, name="wf:file")
    async def file(self, request: Request, attachment_id: FromPath[str]) -> Response:
        state = app_state(request)
        served = AttachmentService(state.db, state.records).application_file(state.definitions, current_principal(request),
                                                                              attachment_id)
        return file_response(served)
