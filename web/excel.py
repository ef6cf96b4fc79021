"""Excel pages: 下载导入模板, 导出, 导入 (upload → preview → 确认导入 → progress) and 导入记录.

`dangan import` is web/cli_import.py; limits come from Settings; jobs' rules and SQL from engine/excel/jobs.py."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import anyio
from litestar import Controller, Litestar, Request, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect, Response, Template

from engine.excel.jobs import (modes_for, ERROR_MODE_NAMES, FINAL, MODE_NAMES, STATUS_NAMES, ImportWorker, create_job,
                               FirstLook, error_workbook, first_errors, first_look, job_for_sheet, job_with_mapping,
                               job_with_values, remembered_mapping, remembered_values, interrupted, queue_commit,
                               visible_job, visible_jobs)
from engine.excel.layout import export_columns, mapping_choices, template_columns
from engine.excel.limits import FileRejected, Limits
from engine.excel.values import value_kinds
from engine.excel.workbooks import build_csv, build_workbook
from engine.fields.files import MB
from engine.org import Unit
from engine.permissions import Principal, can, is_masked, placeable_units, policy
from engine.records import ListQuery
from engine.storage.models import ImportJob
from engine.spec import FormPolicy, FormSpec
from web.auth import app_state, current_principal
from web.features import Feature
from web.guards import form_guard
from web.pages import page
from web.params import Id
from web.presenter import display_text

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"
WORKER = "excel_worker"
EXPORT_PAGE = 1000
SHOWN_ERRORS = 200


# --- worker lifecycle ---------------------------------------------------------------------------------
def start_worker(app: Litestar) -> None:
    state = app_state_of(app)
    worker = ImportWorker(state.db, lambda: state.definitions, state.records, state.settings.import_limits())
    app.state[WORKER] = worker
    worker.resume_interrupted()


def stop_worker(app: Litestar) -> None:
    worker: ImportWorker | None = app.state.get(WORKER)
    if worker is not None:
        worker.shutdown()


def app_state_of(app: Litestar) -> Any:
    return app.state["dangan"]


def worker_of(request: Request) -> ImportWorker:
    return request.app.state[WORKER]


# --- helpers -----------------------------------------------------------------------------------------
def _form(request: Request) -> FormSpec:
    return app_state(request).definitions.forms[request.path_params["form_key"]]


def _download(data: bytes, filename: str, media_type: str = XLSX) -> Response:
    return Response(data, media_type=media_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
        "Cache-Control": "private, no-store",
    })


def unit_options(request: Request, principal: Principal, form: FormSpec) -> list[Unit]:
    units = app_state(request).units()
    return placeable_units(units, principal, form, "create") or placeable_units(units, principal, form, "update")


def _list_query(request: Request, form: FormSpec) -> ListQuery:
    params = request.query_params
    filters = {k: params.get(k) for k in form.list.filters if params.get(k)}
    return ListQuery(filters=filters, search=params.get("q", ""), sort=params.get("sort", ""),
                     incomplete=params.get("incomplete") == "1", per_page=EXPORT_PAGE)


def export_value(spec: Any, found: FormPolicy, value: Any) -> Any:
    """What the user sees: masked text for masked fields, otherwise the field's own cell value."""
    if value is None:
        return None
    if is_masked(found, spec):
        return display_text(spec, value, True)
    return spec.kind.to_cell(value)


def _job(request: Request, form: FormSpec, principal: Principal, job_id: int) -> ImportJob:
    job = visible_job(app_state(request).db, form, principal, job_id)
    if job is None:
        raise NotFoundException("导入记录不存在")
    return job


def _job_context(request: Request, form: FormSpec, job: ImportJob) -> dict[str, Any]:
    stopped = interrupted(job) and not worker_of(request).is_active(job.id)
    found = policy(current_principal(request), form)
    return {"form": form, "job": job, "mapping_choices": mapping_choices(form, found) if found else {},
            "value_options": {key: [(o.value, o.label) for o in kind.options] for key, kind in value_kinds(form).items()},
            "status_names": STATUS_NAMES, "mode_names": MODE_NAMES,
            "error_mode_names": ERROR_MODE_NAMES, "finished": job.status in FINAL, "interrupted": stopped,
            "percent": int(100 * job.done / job.total) if job.total else (100 if job.status in FINAL else 0)}


def _previewing(request: Request, form: FormSpec, job_id: int) -> Redirect:
    """A new job (an upload, or the same upload with another sheet, mapping or values) handed to the worker; its
    page shows the preview as it comes."""
    worker_of(request).submit(job_id)
    return Redirect(f"/f/{form.key}/imports/{job_id}", status_code=303)


def _export_rows(request: Request) -> tuple[FormSpec, list[Any], list[Unit], Iterator[list[Any]]]:
    state, form, principal = app_state(request), _form(request), current_principal(request)
    found = policy(principal, form)
    assert found is not None
    query = _list_query(request, form)
    limit = state.settings.import_limits().max_rows
    ids = state.records.matching_ids(form, principal, query, limit)  # one ordered query; records read in chunks
    if len(ids) > limit:
        raise HTTPException(status_code=422, detail=f"要导出的记录超过上限 {limit} 条，请先筛选")
    units = unit_options(request, principal, form)
    columns = export_columns(form, found, unit_required=len(units) != 1)
    names = {u.id: u.full_name for u in state.units()}
    rows = ([names.get(r.unit_id, r.unit_name)] + [export_value(c.spec, found, r.values.get(c.key)) for c in columns[1:]]
            for r in state.records.stream(form, ids, principal))  # links as their targets' titles, as on the page
    return form, columns, units, rows


# --- pages -------------------------------------------------------------------------------------------
class ExcelController(Controller):
    path = "/f/{form_key:str}"
    guards = [form_guard]

    @get("/excel/template", opt={"action": "import"}, name="excel:template", sync_to_thread=True)
    def template(self, request: Request) -> Response:
        form, principal = _form(request), current_principal(request)
        units = unit_options(request, principal, form)
        columns = template_columns(form, policy(principal, form), unit_required=len(units) != 1)  # type: ignore[arg-type]
        data = build_workbook(form, columns, [u.full_name for u in units])
        return _download(data, f"{form.title}导入模板.xlsx")

    @get("/excel/export", opt={"action": "export"}, name="excel:export", sync_to_thread=True)
    def export(self, request: Request) -> Response:
        """The list as filtered on the page, in the template's layout, masked as this user sees it."""
        form, columns, units, rows = _export_rows(request)
        data = build_workbook(form, columns, [u.full_name for u in units], rows)
        return _download(data, f"{form.title}导出.xlsx")

    @get("/excel/export.csv", opt={"action": "export"}, name="excel:export_csv", sync_to_thread=True)
    def export_csv(self, request: Request) -> Response:
        """The same rows as CSV; text that would run as a formula is made inert."""
        form, columns, _units, rows = _export_rows(request)
        return _download(build_csv(columns, rows), f"{form.title}导出.csv", CSV)

    @get("/imports", opt={"action": "import"}, name="excel:jobs")
    async def jobs(self, request: Request) -> Template:
        form, principal = _form(request), current_principal(request)
        jobs = visible_jobs(app_state(request).db, form, principal)
        return page(request, "excel/jobs.html", form=form, jobs=jobs, status_names=STATUS_NAMES, mode_names=MODE_NAMES,
                    title=f"{form.title} - 导入记录")

    @get("/imports/new", opt={"action": "import"}, name="excel:new")
    async def new_import(self, request: Request) -> Template:
        return self._upload_page(request)

    def _upload_page(self, request: Request, error: str = "", status: int = 200, mode: str = "",
                     error_mode: str = "all_or_nothing") -> Template:
        form, principal = _form(request), current_principal(request)
        modes = modes_for(principal, form)
        limits = app_state(request).settings.import_limits()
        template = page(request, "excel/upload.html", form=form, modes=modes, mode_names=MODE_NAMES,
                        error_mode_names=ERROR_MODE_NAMES, chosen_mode=mode or (modes[-1] if modes else ""),
                        chosen_error_mode=error_mode, error=error, max_size=limits.max_file_bytes // MB,
                        max_rows=limits.max_rows, title=f"{form.title} - Excel 导入")
        template.status_code = status
        return template

    @post("/imports", opt={"action": "import"}, name="excel:upload")
    async def upload(self, request: Request) -> Response:
        state, form, principal = app_state(request), _form(request), current_principal(request)
        data = await request.form()
        mode, error_mode = str(data.get("mode", "")), str(data.get("error_mode", ""))
        upload = data.get("file")
        again = lambda message: self._upload_page(request, message, 422, mode, error_mode or "all_or_nothing")  # noqa: E731
        if mode not in modes_for(principal, form):
            return again("请选择导入方式")
        if error_mode not in ERROR_MODE_NAMES:
            return again("请选择出错时的处理方式")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return again("请选择要导入的文件")
        content = await upload.read()
        try:
            mapping = remembered_mapping(state.db, form, principal)
            values = remembered_values(state.db, form, principal)
            look = await anyio.to_thread.run_sync(_first_look, content, upload.filename, form, state.settings.import_limits(),
                                                  mapping)
        except FileRejected as exc:
            return again(exc.message)
        job_id = await state.writes.in_thread(create_job, state.db, form, principal, upload.filename, content, look.kind,
                                              mode, error_mode, look.sheet, look.others, mapping, values)
        return _previewing(request, form, job_id)

    @get("/imports/{job_id:int}", opt={"action": "import"}, name="excel:job")
    async def job_page(self, request: Request, job_id: Id) -> Template:
        form, principal = _form(request), current_principal(request)
        job = _job(request, form, principal, job_id)
        return page(request, "excel/job.html", errors=first_errors(app_state(request).db, job, SHOWN_ERRORS) if job.count_invalid else [],
                    shown_limit=SHOWN_ERRORS, title=f"{form.title} - 导入 #{job.id}", **_job_context(request, form, job))

    @get("/imports/{job_id:int}/progress", opt={"action": "import"}, name="excel:progress")
    async def progress(self, request: Request, job_id: Id) -> Template:
        """htmx polls this every second; a finished job reloads the page to show its result."""
        form, principal = _form(request), current_principal(request)
        job = _job(request, form, principal, job_id)
        context = _job_context(request, form, job)
        headers = {"HX-Refresh": "true"} if context["finished"] else {}
        return Template(template_name="excel/_progress.html", context=context, headers=headers)

    @post("/imports/{job_id:int}/commit", opt={"action": "import"}, name="excel:commit")
    async def commit(self, request: Request, job_id: Id) -> Redirect:
        form, principal = _form(request), current_principal(request)
        job = _job(request, form, principal, job_id)
        data = await request.form()
        error_mode = str(data.get("error_mode", job.error_mode))
        if error_mode in ERROR_MODE_NAMES and await app_state(request).writes.in_thread(queue_commit, app_state(request).db, job.id, error_mode):
            worker_of(request).submit(job.id)
        return Redirect(f"/f/{form.key}/imports/{job.id}", status_code=303)

    @post("/imports/{job_id:int}/sheet", opt={"action": "import"}, name="excel:sheet")
    async def other_sheet(self, request: Request, job_id: Id) -> Redirect:
        """另一个工作表: a new preview of the same upload, of another sheet that carries the form's header."""
        state, form, principal = app_state(request), _form(request), current_principal(request)
        job = _job(request, form, principal, job_id)
        data = await request.form()
        new_id = await state.writes.in_thread(job_for_sheet, state.db, job, principal, str(data.get("sheet", "")))
        if new_id is None:
            raise NotFoundException("文件中没有这个可导入的工作表")
        return _previewing(request, form, new_id)

    @post("/imports/{job_id:int}/mapping", opt={"action": "import"}, name="excel:mapping")
    async def mapping(self, request: Request, job_id: Id) -> Redirect:
        """The mapping step: each unknown header given a field (or ignored); a new preview of the same upload."""
        state, form, principal = app_state(request), _form(request), current_principal(request)
        job = _job(request, form, principal, job_id)
        data = await request.form()
        headers, fields = data.getall("header", []), data.getall("field", [])
        chosen = {str(h): str(f) for h, f in zip(headers, fields)}
        new_id = await state.writes.in_thread(job_with_mapping, state.db, job, principal, form, chosen)
        return _previewing(request, form, new_id)

    @post("/imports/{job_id:int}/values", opt={"action": "import"}, name="excel:values")
    async def values(self, request: Request, job_id: Id) -> Redirect:
        """The value step: each value that is no option given one (or left an error); a new preview of the same upload."""
        state, form, principal = app_state(request), _form(request), current_principal(request)
        job = _job(request, form, principal, job_id)
        data = await request.form()
        keys, texts, chosen = data.getall("value_field", []), data.getall("value_text", []), data.getall("value_choice", [])
        new_id = await state.writes.in_thread(job_with_values, state.db, job, principal, form,
                                              [(str(k), str(t), str(v)) for k, t, v in zip(keys, texts, chosen)])
        return _previewing(request, form, new_id)

    @post("/imports/{job_id:int}/resume", opt={"action": "import"}, name="excel:resume")
    async def resume(self, request: Request, job_id: Id) -> Redirect:
        form, principal = _form(request), current_principal(request)
        job = _job(request, form, principal, job_id)
        if interrupted(job):
            worker_of(request).submit(job.id)
        return Redirect(f"/f/{form.key}/imports/{job.id}", status_code=303)

    @get("/imports/{job_id:int}/errors.xlsx", opt={"action": "import"}, name="excel:errors", sync_to_thread=True)
    def errors(self, request: Request, job_id: Id) -> Response:
        state, form, principal = app_state(request), _form(request), current_principal(request)
        job = _job(request, form, principal, job_id)
        data = error_workbook(state.db, state.definitions, job.id, state.settings.import_limits())
        if data is None:
            raise NotFoundException("这次导入没有错误行")
        stem = job.filename.rsplit(".", 1)[0]
        return _download(data, f"{stem}-错误报告.xlsx")


def _first_look(content: bytes, filename: str, form: FormSpec, limits: Limits, mapping: dict[str, str]) -> FirstLook:
    """The checks before a job is even created (engine/excel/jobs.py:first_look); readers want a path."""
    handle, name = tempfile.mkstemp(prefix="dangan-upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        return first_look(Path(name), filename, form, limits, mapping)
    finally:
        os.unlink(name)


# --- the feature ---------------------------------------------------------------------------------------
def _list_actions(form: FormSpec, principal: Principal) -> list[dict[str, str]]:
    actions = []
    if can(principal, "import", form) and modes_for(principal, form):
        actions += [{"href": f"/f/{form.key}/imports/new", "label": "Excel 导入"},
                    {"href": f"/f/{form.key}/excel/template", "label": "下载导入模板"},
                    {"href": f"/f/{form.key}/imports", "label": "导入记录"}]
    if can(principal, "export", form):
        # keep_query: the list page appends its current filters, so the export matches what is shown.
        actions.append({"href": f"/f/{form.key}/excel/export", "label": "导出 Excel", "keep_query": "1"})
        actions.append({"href": f"/f/{form.key}/excel/export.csv", "label": "导出 CSV", "keep_query": "1"})
    return actions


def excel_feature() -> Feature:
    return Feature(name="excel", routes=(ExcelController,), list_actions=_list_actions,
                   on_startup=(start_worker,), on_shutdown=(stop_worker,))
