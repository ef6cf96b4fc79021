"""Excel pages: 下载导入模板, 导出, 导入 (upload → preview → 确认导入 → progress) and 导入记录."""
from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from litestar import Controller, Litestar, Request, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect, Response, Template
from sqlalchemy import select

from engine.excel.jobs import (ERROR_MODE_NAMES, FINAL, MODE_NAMES, STATUS_NAMES, ImportWorker, create_job,
                               error_workbook, interrupted, load_job, queue_commit, run_job)
from engine.excel.layout import export_columns, template_columns
from engine.excel.limits import FileRejected, Limits
from engine.excel.safety import inspect_upload
from engine.permissions import placeable_units
from engine.excel.workbooks import build_workbook
from engine.errors import DefinitionErrors
from engine.fields.files import MB
from engine.loader import load_definitions
from engine.org import Unit, build_principal
from engine.permissions import Principal, can, is_masked, policy
from engine.records import ListQuery, RecordService, StoredRecord
from engine.spec import FormPolicy, FormSpec
from engine.storage.db import Database
from engine.storage.models import ImportJob, ImportRowError, User
from web.auth import app_state, current_principal
from web.features import Feature
from web.guards import form_guard
from web.pages import page
from web.params import Id
from web.presenter import display_text
from web.settings import Settings

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
WORKER = "excel_worker"
EXPORT_PAGE = 1000
SHOWN_ERRORS = 200
CLI_MAX_MB = 200


def limits_for(settings: Settings) -> Limits:
    """DANGAN_IMPORT_MAX_MB and DANGAN_IMPORT_MAX_ROWS; the file limit never exceeds the request limit."""
    file_mb = os.environ.get("DANGAN_IMPORT_MAX_MB")
    rows = os.environ.get("DANGAN_IMPORT_MAX_ROWS")
    return replace(Limits(),
                   max_file_bytes=min(int(file_mb) * MB if file_mb else settings.max_upload_bytes, settings.max_upload_bytes),
                   max_rows=int(rows) if rows else Limits.max_rows)


# --- worker lifecycle ---------------------------------------------------------------------------------
def start_worker(app: Litestar) -> None:
    state = app_state_of(app)
    worker = ImportWorker(state.db, lambda: state.definitions, state.records, limits_for(state.settings))
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


def _download(data: bytes, filename: str) -> Response:
    return Response(data, media_type=XLSX, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
        "Cache-Control": "private, no-store",
    })


def unit_options(request: Request, principal: Principal, form: FormSpec) -> list[Unit]:
    units = app_state(request).units()
    return placeable_units(units, principal, form, "create") or placeable_units(units, principal, form, "update")


def modes_for(principal: Principal, form: FormSpec) -> list[str]:
    create, change = can(principal, "create", form), can(principal, "update", form)
    if not form.natural_key:
        return ["insert"] if create else []
    return [m for m, ok in (("insert", create), ("update", change), ("upsert", create and change)) if ok]


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
    job = load_job(app_state(request).db, job_id)
    if job is None or job.form_key != form.key or not (job.user_id == principal.user_id or principal.is_admin):
        raise NotFoundException("导入记录不存在")
    return job


def _shown_errors(request: Request, job: ImportJob) -> list[dict[str, Any]]:
    phase = "commit" if job.phase == "commit" else "preview"
    with app_state(request).db.read() as s:
        rows = s.execute(select(ImportRowError.row_no, ImportRowError.errors)
                         .where(ImportRowError.job_id == job.id, ImportRowError.phase == phase)
                         .order_by(ImportRowError.row_no).limit(SHOWN_ERRORS)).all()
    return [{"row": number, "label": label, "value": value, "message": message}
            for number, errors in rows for _column, label, value, message in errors]


def _job_context(request: Request, form: FormSpec, job: ImportJob) -> dict[str, Any]:
    stopped = interrupted(job) and not worker_of(request).is_active(job.id)
    return {"form": form, "job": job, "status_names": STATUS_NAMES, "mode_names": MODE_NAMES,
            "error_mode_names": ERROR_MODE_NAMES, "finished": job.status in FINAL, "interrupted": stopped,
            "percent": int(100 * job.done / job.total) if job.total else (100 if job.status in FINAL else 0)}


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
        state, form, principal = app_state(request), _form(request), current_principal(request)
        found = policy(principal, form)
        assert found is not None
        query = _list_query(request, form)
        first = state.records.list(form, principal, query)
        limit = limits_for(state.settings).max_rows
        if first.total > limit:
            raise HTTPException(status_code=422, detail=f"要导出的记录有 {first.total} 条，超过上限 {limit} 条，请先筛选")
        units = unit_options(request, principal, form)
        columns = export_columns(form, found, unit_required=len(units) != 1)
        names = {u.id: u.full_name for u in state.units()}

        def records() -> Iterator[StoredRecord]:  # links as their targets' titles, as on the page
            yield from state.records.titled(principal, form, first.records)
            for number in range(2, first.pages + 1):
                yield from state.records.titled(principal, form, state.records.list(form, principal, replace(query, page=number)).records)

        rows = ([names.get(r.unit_id, r.unit_name)] + [export_value(c.spec, found, r.values.get(c.key)) for c in columns[1:]]
                for r in records())
        data = build_workbook(form, columns, [u.full_name for u in units], rows)
        return _download(data, f"{form.title}导出.xlsx")

    @get("/imports", opt={"action": "import"}, name="excel:jobs")
    async def jobs(self, request: Request) -> Template:
        form, principal = _form(request), current_principal(request)
        query = select(ImportJob).where(ImportJob.form_key == form.key).order_by(ImportJob.id.desc()).limit(100)
        if not principal.is_admin:
            query = query.where(ImportJob.user_id == principal.user_id)
        with app_state(request).db.read() as s:
            jobs = list(s.scalars(query))
        return page(request, "excel/jobs.html", form=form, jobs=jobs, status_names=STATUS_NAMES, mode_names=MODE_NAMES,
                    title=f"{form.title} - 导入记录")

    @get("/imports/new", opt={"action": "import"}, name="excel:new")
    async def new_import(self, request: Request) -> Template:
        return self._upload_page(request)

    def _upload_page(self, request: Request, error: str = "", status: int = 200, mode: str = "",
                     error_mode: str = "all_or_nothing") -> Template:
        form, principal = _form(request), current_principal(request)
        modes = modes_for(principal, form)
        limits = limits_for(app_state(request).settings)
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
            kind = _inspect(content, upload.filename, limits_for(state.settings))
        except FileRejected as exc:
            return again(exc.message)
        job_id = create_job(state.db, form, principal, upload.filename, content, kind, mode, error_mode)
        worker_of(request).submit(job_id)
        return Redirect(f"/f/{form.key}/imports/{job_id}", status_code=303)

    @get("/imports/{job_id:int}", opt={"action": "import"}, name="excel:job")
    async def job_page(self, request: Request, job_id: Id) -> Template:
        form, principal = _form(request), current_principal(request)
        job = _job(request, form, principal, job_id)
        return page(request, "excel/job.html", errors=_shown_errors(request, job) if job.count_invalid else [],
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
        if error_mode in ERROR_MODE_NAMES and queue_commit(app_state(request).db, job.id, error_mode):
            worker_of(request).submit(job.id)
        return Redirect(f"/f/{form.key}/imports/{job.id}", status_code=303)

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
        data = error_workbook(state.db, state.definitions, job.id, limits_for(state.settings))
        if data is None:
            raise NotFoundException("这次导入没有错误行")
        stem = job.filename.rsplit(".", 1)[0]
        return _download(data, f"{stem}-错误报告.xlsx")


def _inspect(content: bytes, filename: str, limits: Limits) -> str:
    """The cheap checks (size, real type, zip structure, DTDs) before a job is even created."""
    handle, name = tempfile.mkstemp(prefix="dangan-upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        return inspect_upload(Path(name), filename, limits).kind
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
    return actions


def excel_feature() -> Feature:
    return Feature(name="excel", routes=(ExcelController,), list_actions=_list_actions,
                   on_startup=(start_worker,), on_shutdown=(stop_worker,))



# --- the command line: `dangan import` -------------------------------------------------------------------
class ProgressBar:
    """The import's progress on stderr, one bar per phase (预检, 导入), drawn by rich."""

    def __init__(self, stream: Any) -> None:
        # Imported here, as the PDF libraries are (web/certificates.py): rich would add to every server worker's start.
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 MofNCompleteColumn(), TextColumn("行"), console=Console(file=stream))
        self.tasks: dict[str, Any] = {}

    def __call__(self, status: str, done: int, total: int) -> None:
        if status not in self.tasks:
            self.progress.start()
            self.tasks[status] = self.progress.add_task(STATUS_NAMES.get(status, status), total=total)
        self.progress.update(self.tasks[status], completed=done, total=total)

    def end(self) -> None:
        self.progress.stop()
        for task in self.tasks.values():  # a second run (the import after its preview) draws only its own bar
            self.progress.remove_task(task)
        self.tasks.clear()


def command_import(args: Any, out: Any, err: Any) -> int:
    """`dangan import FORM FILE --user NAME [--mode] [--dry-run] [--skip-invalid]`: preview, then import."""
    settings = Settings()
    try:
        definitions = load_definitions(settings.definitions)
    except DefinitionErrors as exc:
        print(exc, file=err)
        return 1
    form = definitions.forms.get(args.form)
    if form is None:
        print(f"没有表单“{args.form}”；可用：{'、'.join(definitions.forms)}", file=err)
        return 1
    db = Database(settings.database_url, timeouts=settings.database_timeouts())
    db.upgrade()
    with db.read() as s:
        user = s.scalar(select(User).where(User.username == args.user))
        principal = build_principal(s, user, definitions) if user is not None and user.is_active else None
    if principal is None or not can(principal, "import", form):
        print(f"用户“{args.user}”不存在、已停用或没有导入“{form.title}”的权限", file=err)
        return 1
    if args.mode not in modes_for(principal, form):
        print(f"用户“{args.user}”不能以“{MODE_NAMES[args.mode]}”方式导入；可用：{'、'.join(MODE_NAMES[m] for m in modes_for(principal, form))}", file=err)
        return 1
    # No HTTP request here, so no request size limit: DANGAN_IMPORT_MAX_MB or 200 MB, or none at all.
    file_mb = int(os.environ.get("DANGAN_IMPORT_MAX_MB") or CLI_MAX_MB)
    path, limits = Path(args.file), replace(limits_for(settings), max_file_bytes=10**13 if args.no_size_limit else file_mb * MB)
    try:
        kind = inspect_upload(path, path.name, limits).kind
    except FileRejected as exc:
        print(f"文件被拒绝：{exc.message}", file=err)
        return 1
    except OSError as exc:
        print(f"无法读取文件：{exc}", file=err)
        return 1
    error_mode = "skip_invalid" if args.skip_invalid else "all_or_nothing"
    job_id = create_job(db, form, principal, path.name, path.read_bytes(), kind, args.mode, error_mode)
    bar, records = ProgressBar(err), RecordService(db, lambda: definitions.forms)
    job = run_job(db, definitions, job_id, limits, records, progress=bar)
    bar.end()
    assert job is not None
    _report(job, "预览", out)
    if job.status != "previewed":
        print(job.message, file=err)
        return 1
    if not args.dry_run:
        queue_commit(db, job_id, error_mode)
        job = run_job(db, definitions, job_id, limits, records, progress=bar)
        bar.end()
        assert job is not None
        _report(job, "导入", out)
        if job.message:
            print(job.message, file=err)
    if job.count_invalid:
        data = error_workbook(db, definitions, job_id, limits)
        if data is not None:
            target = Path.cwd() / f"{path.stem}-错误报告.xlsx"
            target.write_bytes(data)
            print(f"错误报告已保存到 {target}", file=out)
    db.dispose()
    if job.status in ("rejected", "failed"):
        return 1
    return 2 if job.count_invalid else 0


def _report(job: ImportJob, what: str, out: Any) -> None:
    print(f"{what}（任务 #{job.id}，{STATUS_NAMES[job.status]}）：新增 {job.count_new}，更新 {job.count_updated}，"
          f"未变 {job.count_unchanged}，错误 {job.count_invalid}", file=out)
    for warning in (job.details or {}).get("warnings", []):
        print(f"  提示：{warning}", file=out)
