"""Import jobs: the stored upload, preview → import, progress per batch, resume, error workbooks, the worker.

A job is created with its upload. The worker runs its preview (a dry run); 确认导入 queues its import.
`all_or_nothing` imports validate the whole file once more and write only if no row is invalid;
`skip_invalid` imports write the valid rows. Every write batch commits the records, the reasons for
the batch's invalid rows and the job's progress (`last_row`) together, so a job interrupted by a
restart continues after its last committed row when it is run again.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import socket
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session as DbSession

from engine.excel.importer import CellError, Context, ImportPass, Interrupted, PassResult, Plan, cell_text
from engine.excel.layout import UNIT_KEY, ColumnsMissing, header_text, key_lookup, read_key_sheet, template_columns
from engine.excel.units import unit_choices
from engine.excel.values import listed, merge_chosen
from engine.excel.limits import FileRejected, Limits
from engine.excel.reader import choose_sheet, data_sheet_candidates, open_table
from engine.excel.rows import filled, find_header
from engine.excel.safety import extension, inspect_upload
from engine.excel.workbooks import TemplateLayout, build_error_workbook
from engine.issues import Issue
from engine.messages import render
from engine.org import build_principal
from engine.permissions import Principal, can, policy
from engine.records import RecordService
from engine.spec import Definitions, FormSpec
from engine.storage.db import Database, gather_statistics
from engine.storage.models import ImportFile, ImportJob, ImportRowError, User, utcnow

log = logging.getLogger("dangan")
ANALYZE_AFTER_ROWS = 5_000  # an import of at least this many rows refreshes the planner statistics
ACTIVE = ("queued", "previewing", "validating", "importing")
# "aborted": an all-or-nothing import that found invalid rows and wrote nothing; its counts are what the check found.
FINAL = ("previewed", "done", "aborted", "rejected", "failed")
REPORTED = ("previewed", "done", "aborted")  # finished with rows read, so with counts and perhaps an error workbook
STATUS_NAMES = {"queued": "排队中", "previewing": "正在预览", "previewed": "预览完成，待确认", "validating": "正在校验",
                "importing": "正在导入", "done": "已完成", "aborted": "未导入：有错误行", "rejected": "文件被拒绝", "failed": "失败"}
UPLOAD, ERRORS = "upload", "errors"
MODE_NAMES = {"insert": "仅新增", "update": "仅更新", "upsert": "新增或更新"}
ERROR_MODE_NAMES = {"all_or_nothing": "全部正确才导入", "skip_invalid": "跳过错误行，导入其余行"}
Progress = Callable[[str, int, int], None]  # (status, rows done, rows in the file)


@dataclass(frozen=True)
class FirstLook:
    kind: str  # "xlsx" or "csv"
    sheet: str = ""  # the sheet to import ("" for CSV)
    others: tuple[str, ...] = ()  # further sheets that carry the form's header and data rows


def first_look(path: Path, filename: str, form: FormSpec, limits: Limits, mapping: dict[str, str] | None = None) -> FirstLook:
    """The checks made before a job is created: the file's size, type and structure (`inspect_upload`), a header,
    and at least one data row under it (reading stops at the first). A workbook's sheets are each looked at: every
    one with the form's header and data is named, so the preview can say which is imported and offer the others.
    Raises FileRejected with the first sheet's reason when no sheet has data."""
    inspection = inspect_upload(path, filename, limits)
    if inspection.kind == "csv":
        _data_under_header(path, inspection, form, limits, "", mapping or {})
        return FirstLook("csv")
    default = choose_sheet(inspection.sheets, form.title).name
    names = [default] + [s.name for s in data_sheet_candidates(inspection.sheets) if s.name != default][:MAX_SHEETS_LOOKED_AT]
    found, first_refusal = [], None
    for name in names:
        try:
            _data_under_header(path, inspection, form, limits, name, mapping or {})
            found.append(name)
        except FileRejected as exc:
            first_refusal = first_refusal or exc
    if not found:
        assert first_refusal is not None
        raise first_refusal
    return FirstLook("xlsx", found[0], tuple(found[1:]))


MAX_SHEETS_LOOKED_AT = 20


def _data_under_header(path: Path, inspection: Any, form: FormSpec, limits: Limits, sheet: str,
                       mapping: dict[str, str]) -> None:
    with open_table(path, inspection, form.title, limits, sheet) as table:
        keys = read_key_sheet(table.keys)
        keys.headers.update({header_text(h): k for h, k in mapping.items() if k and header_text(h)})
        (header_row, _header), scanned = find_header(form, table.rows, keys, limits.header_scan_rows)
        if not any(filled(cells) for _n, cells in scanned) and not any(filled(cells) for _n, cells in table.rows):
            raise FileRejected("import_no_data_rows", row=header_row)


def create_job(db: Database, form: FormSpec, principal: Principal, filename: str, data: bytes, kind: str,
               mode: str, error_mode: str, sheet: str = "", other_sheets: tuple[str, ...] = (),
               mapping: dict[str, str] | None = None, values: dict[str, dict[str, str]] | None = None) -> int:
    """A job for the upload; `sheet` is the workbook's sheet it imports, `other_sheets` those it could import instead."""
    with db.write() as s:
        job_id = s.execute(insert(ImportJob).values(
            form_key=form.key, user_id=principal.user_id, username=principal.username, filename=filename[-255:],
            file_kind=kind, mode=mode, error_mode=error_mode, phase="preview", status="queued", total=0, done=0,
            count_new=0, count_updated=0, count_unchanged=0, count_invalid=0, last_row=0, runner="", message="",
            details=_sheet_details(sheet, other_sheets, mapping, values), upload_sha256=hashlib.sha256(data).hexdigest(), def_version=form.version,
            created_at=utcnow(), updated_at=utcnow(),
        ).returning(ImportJob.id)).scalar_one()
        s.execute(insert(ImportFile).values(job_id=job_id, name=UPLOAD, data=data))
        s.commit()
    return job_id


def _sheet_details(sheet: str, others: tuple[str, ...] | list[str], mapping: dict[str, str] | None = None,
                   values: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"sheet": sheet, "other_sheets": list(others)} if sheet else {}
    return found | ({"mapping": mapping} if mapping else {}) | ({"values": values} if values else {})


def remembered_mapping(db: Database, form: FormSpec, principal: Principal) -> dict[str, str]:
    """The column mapping this user last chose for this form: the next file from the same school usually has the
    same headers."""
    return dict(_remembered(db, form, principal, "mapping"))


def remembered_values(db: Database, form: FormSpec, principal: Principal) -> dict[str, dict[str, str]]:
    """The value mapping (field key → {file text: option value}) this user last chose for this form."""
    return {k: dict(v) for k, v in _remembered(db, form, principal, "values").items() if isinstance(v, dict)}


def _remembered(db: Database, form: FormSpec, principal: Principal, what: str) -> dict[str, Any]:
    query = (select(ImportJob.details).where(ImportJob.form_key == form.key, ImportJob.user_id == principal.user_id)
             .order_by(ImportJob.id.desc()).limit(20))
    with db.read() as s:
        for details in s.scalars(query):
            if details and details.get(what):
                return dict(details[what])
    return {}


def job_for_sheet(db: Database, job: ImportJob, principal: Principal, sheet: str) -> int | None:
    """A new job over the same upload that imports another of its data sheets (named by the first look); None if the
    sheet is not one of them."""
    details = job.details or {}
    sheets = [details.get("sheet", "")] + list(details.get("other_sheets", []))
    if sheet not in sheets[1:]:
        return None
    return _again(db, job, principal, _sheet_details(sheet, [n for n in sheets if n != sheet], details.get("mapping"),
                                                     details.get("values")))


def job_with_mapping(db: Database, job: ImportJob, principal: Principal, form: FormSpec, chosen: dict[str, str]) -> int:
    """A new job over the same upload with the mapping step's choices (header → field key, "" to ignore); kept in the
    job, so the user's next upload of this form starts from them (`remembered_mapping`)."""
    details = job.details or {}
    allowed = {k for k in chosen.values() if k in form.fields or k == UNIT_KEY}
    mapping = dict(details.get("mapping") or {}) | {h: (k if k in allowed else "") for h, k in chosen.items() if h}
    return _again(db, job, principal, _sheet_details(details.get("sheet", ""), details.get("other_sheets", []), mapping,
                                                     details.get("values")))


def job_with_values(db: Database, job: ImportJob, principal: Principal, form: FormSpec,
                    chosen: list[tuple[str, str, str]]) -> int:
    """A new job over the same upload with the value step's choices ((field key, file text, option value); value ""
    leaves the text an error); kept in the job, so the user's next upload of this form starts from them."""
    details = job.details or {}
    values = merge_chosen(details.get("values") or {}, chosen, form)
    return _again(db, job, principal, _sheet_details(details.get("sheet", ""), details.get("other_sheets", []),
                                                     details.get("mapping"), values))


def _again(db: Database, job: ImportJob, principal: Principal, details: dict[str, Any]) -> int:
    with db.read() as s:
        data = s.scalar(select(ImportFile.data).where(ImportFile.job_id == job.id, ImportFile.name == UPLOAD)) or b""
    with db.write() as s:
        new_id = s.execute(insert(ImportJob).values(
            form_key=job.form_key, user_id=principal.user_id, username=principal.username, filename=job.filename,
            file_kind=job.file_kind, mode=job.mode, error_mode=job.error_mode, phase="preview", status="queued", total=0,
            done=0, count_new=0, count_updated=0, count_unchanged=0, count_invalid=0, last_row=0, runner="", message="",
            details=details, upload_sha256=job.upload_sha256,
            def_version=job.def_version, created_at=utcnow(), updated_at=utcnow(),
        ).returning(ImportJob.id)).scalar_one()
        s.execute(insert(ImportFile).values(job_id=new_id, name=UPLOAD, data=data))
        s.commit()
    return new_id


def load_job(db: Database, job_id: int) -> ImportJob | None:
    with db.read() as s:
        return s.get(ImportJob, job_id)


def may_see(principal: Principal, job: ImportJob) -> bool:
    """A job is its uploader's; administrators see every job."""
    return job.user_id == principal.user_id or principal.is_admin


def visible_job(db: Database, form: FormSpec, principal: Principal, job_id: int) -> ImportJob | None:
    """The job of this form if the principal may see it; None otherwise (as if it did not exist)."""
    job = load_job(db, job_id)
    return job if job is not None and job.form_key == form.key and may_see(principal, job) else None


def visible_jobs(db: Database, form: FormSpec, principal: Principal, limit: int = 100) -> list[ImportJob]:
    """The latest jobs of this form the principal may see, newest first."""
    query = select(ImportJob).where(ImportJob.form_key == form.key).order_by(ImportJob.id.desc()).limit(limit)
    if not principal.is_admin:
        query = query.where(ImportJob.user_id == principal.user_id)
    with db.read() as s:
        return list(s.scalars(query))


def first_errors(db: Database, job: ImportJob, limit: int) -> list[dict[str, Any]]:
    """The first invalid rows' reasons for the job's current phase, one entry per cell, for the job page."""
    phase = "commit" if job.phase == "commit" else "preview"
    with db.read() as s:
        rows = s.execute(select(ImportRowError.row_no, ImportRowError.errors)
                         .where(ImportRowError.job_id == job.id, ImportRowError.phase == phase)
                         .order_by(ImportRowError.row_no).limit(limit)).all()
    return [{"row": number, "label": label, "value": value, "message": message}
            for number, errors in rows for _column, label, value, message in errors]


def modes_for(principal: Principal, form: FormSpec) -> list[str]:
    """The import modes the principal may use: insert needs create, update needs update, upsert both; a form without
    a natural key can only add records."""
    create, change = can(principal, "create", form), can(principal, "update", form)
    if not form.natural_key:
        return ["insert"] if create else []
    return [m for m, ok in (("insert", create), ("update", change), ("upsert", create and change)) if ok]


def queue_commit(db: Database, job_id: int, error_mode: str, checked_now: bool = False) -> bool:
    """确认导入: only a previewed job moves on, once (a double click queues nothing twice).

    All-or-nothing checks every row again before it writes the first: the web's confirmation may come minutes after
    the preview, and the records may have changed meanwhile. `checked_now`: the caller commits straight after its
    own preview (`dangan import`), so a preview that found no invalid row is that check, and it is not run twice."""
    with db.write() as s:
        job = s.get(ImportJob, job_id)
        extra: dict[str, Any] = {}
        if checked_now and job is not None and job.count_invalid == 0 and error_mode == "all_or_nothing":
            extra["details"] = dict(job.details or {}) | {"validated": True}
        moved = s.execute(update(ImportJob).where(ImportJob.id == job_id, ImportJob.status == "previewed").values(
            phase="commit", status="queued", error_mode=error_mode, updated_at=utcnow(), **extra))
        s.execute(delete(ImportFile).where(ImportFile.job_id == job_id, ImportFile.name == ERRORS))
        s.commit()
    return moved.rowcount == 1


@contextmanager
def upload_file(db: Database, job: ImportJob) -> Iterator[Path]:
    """The stored upload as a private temporary file (readers want a path)."""
    with db.read() as s:
        data = s.scalar(select(ImportFile.data).where(ImportFile.job_id == job.id, ImportFile.name == UPLOAD)) or b""
    handle, name = tempfile.mkstemp(prefix="dangan-import-", suffix=extension(job.filename) or ".bin")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        del data
        yield Path(name)
    finally:
        os.unlink(name)


class JobSink:
    """Writes one batch's outcome into the job, in the batch's own transaction."""

    def __init__(self, job: ImportJob, phase: str, write: bool, status: str, total: int, progress: Progress | None) -> None:
        self.job_id, self.phase, self.write, self.progress = job.id, phase, write, progress
        self.status, self.total = status, total
        self.base = {k: getattr(job, f"count_{k}") for k in ("new", "updated", "unchanged", "invalid")}
        self.base_done = job.done

    def counts(self, result: PassResult) -> dict[str, Any]:
        values: dict[str, Any] = {f"count_{k}": self.base[k] + v for k, v in result.counts.items()}
        values["done"] = self.base_done + result.processed
        return values

    def batch(self, s: DbSession, plans: list[Plan], errors: dict[int, list[CellError]], result: PassResult) -> None:
        if errors:
            s.execute(insert(ImportRowError), [
                {"job_id": self.job_id, "phase": self.phase, "row_no": number, "errors": [_error_json(e) for e in found]}
                for number, found in errors.items()
            ])
        values = self.counts(result) | {"updated_at": utcnow()}
        if self.write:
            values["last_row"] = result.last_row
        s.execute(update(ImportJob).where(ImportJob.id == self.job_id).values(**values))
        if self.progress is not None:
            self.progress(self.status, values["done"], self.total)


def _error_json(error: CellError) -> list[Any]:
    return [error.column, error.label, error.value, error.message]


def _set(db: Database, job_id: int, **values: Any) -> None:
    with db.write() as s:
        s.execute(update(ImportJob).where(ImportJob.id == job_id).values(updated_at=utcnow(), **values))
        s.commit()


def _clear_errors(db: Database, job_id: int, phase: str) -> None:
    with db.write() as s:
        s.execute(delete(ImportRowError).where(ImportRowError.job_id == job_id, ImportRowError.phase == phase))
        s.commit()


def _principal(db: Database, definitions: Definitions, job: ImportJob, form: FormSpec) -> Principal | None:
    """Rights as they are now, not when the file was uploaded."""
    with db.read() as s:
        user = s.get(User, job.user_id) if job.user_id is not None else None
        if user is None or not user.is_active:
            return None
        principal = build_principal(s, user, definitions)
    return principal if can(principal, "import", form) else None


def run_job(db: Database, definitions: Definitions, job_id: int, limits: Limits, records: RecordService | None = None,
            should_stop: Callable[[], bool] = lambda: False, progress: Progress | None = None) -> ImportJob | None:
    """Run the job's next step (preview or import) to its end, or until `should_stop` says so."""
    job = load_job(db, job_id)
    if job is None or job.status not in ACTIVE:
        return job
    form = definitions.forms.get(job.form_key)
    principal = _principal(db, definitions, job, form) if form is not None else None
    if form is None or principal is None:
        _set(db, job_id, status="failed", message=render(Issue("import_user_gone")), finished_at=utcnow())
        return load_job(db, job_id)
    if not _claim(db, job):
        return job  # another live process is running it
    resuming = job.status != "queued"
    try:
        with upload_file(db, job) as path:
            inspection = inspect_upload(path, job.filename, limits)
            protected = frozenset(k for w in definitions.workflows.values() if w.form == form.key for k in w.changes)
            ctx = Context(db, records or RecordService(db, lambda: definitions.forms), form, principal, job.mode, limits,
                          note=f"Excel 导入 #{job.id}（{job.filename}）", protected=protected,
                          mapping=dict((job.details or {}).get("mapping") or {}), org_levels=definitions.org_levels,
                          values=dict((job.details or {}).get("values") or {}))
            sheet = (job.details or {}).get("sheet", "")
            opener = lambda: open_table(path, inspection, form.title, limits, sheet)  # noqa: E731
            if job.phase == "preview":
                _preview(db, job, ctx, opener, should_stop, progress)
            else:
                _commit(db, job, ctx, opener, resuming, should_stop, progress)
    except Interrupted:
        log.info("import job %s interrupted at row %s", job_id, load_job(db, job_id).last_row)  # type: ignore[union-attr]
    except ColumnsMissing as exc:  # the mapping step can still fix it: keep what it needs
        details = dict((load_job(db, job_id) or job).details or {}) | {"unmapped": exc.unknown, "missing": exc.missing}
        _set(db, job_id, status="rejected", message=exc.message, finished_at=utcnow(), details=details)
    except FileRejected as exc:
        _set(db, job_id, status="rejected", message=exc.message, finished_at=utcnow())
    except Exception:  # noqa: BLE001 — the job records the failure; the worker thread carries on
        log.exception("import job %s failed", job_id)
        _set(db, job_id, status="failed", message=render(Issue("import_failed")), finished_at=utcnow())
    finally:
        _release(db, job_id)
    return load_job(db, job_id)


# --- who runs a job ---------------------------------------------------------------------------------
def runner_name() -> str:
    """This process as a job's runner. Computed per call: worker processes forked from one server each have
    their own pid, and a name fixed at import time would be the parent's in every one of them."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}"
STALE = dt.timedelta(seconds=120)


def runner_alive(job: ImportJob) -> bool:
    """Whether the process named in `runner` still runs the job (same host: is the pid alive)."""
    if not job.runner:
        return False
    host, _, pid = job.runner.rpartition(":")
    if host == runner_name().rpartition(":")[0] and pid.isdigit():
        if int(pid) == os.getpid():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return job.updated_at is not None and utcnow() - job.updated_at < STALE


def interrupted(job: ImportJob) -> bool:
    return job.status in ACTIVE and job.status != "queued" and not runner_alive(job)


def _claim(db: Database, job: ImportJob) -> bool:
    """Take the job unless a live process has it; compare-and-set, so two starters cannot both win."""
    me = runner_name()
    if job.runner and job.runner != me and runner_alive(job):
        return False
    with db.write() as s:
        taken = s.execute(update(ImportJob).where(ImportJob.id == job.id, ImportJob.runner == job.runner)
                          .values(runner=me, updated_at=utcnow()))
        s.commit()
    return taken.rowcount == 1


def _release(db: Database, job_id: int) -> None:
    with db.write() as s:
        s.execute(update(ImportJob).where(ImportJob.id == job_id, ImportJob.runner == runner_name()).values(runner=""))
        s.commit()


def _run_pass(db: Database, job: ImportJob, ctx: Context, opener: Callable[[], Any], *, phase: str, write: bool,
              status: str, known: dict | None, start_after: int, should_stop: Callable[[], bool],
              progress: Progress | None) -> PassResult:
    fresh = load_job(db, job.id)
    assert fresh is not None
    with opener() as table:
        total = max(table.last_row - 1, 0)
        _set(db, job.id, status=status, total=total)
        sink = JobSink(fresh, phase, write, status, total, progress)
        pass_ = ImportPass(ctx, write=write, sink=sink, known_duplicates=known, start_after=start_after, should_stop=should_stop)
        result = pass_.run(table)
    if result.late_errors:
        with db.write() as s:
            s.execute(insert(ImportRowError), [
                {"job_id": job.id, "phase": phase, "row_no": n, "errors": [_error_json(e) for e in errors]}
                for n, errors in result.late_errors.items()
            ])
            s.execute(update(ImportJob).where(ImportJob.id == job.id).values(**sink.counts(result)))
            s.commit()
    return result


def _reset(db: Database, job_id: int, **extra: Any) -> None:
    _set(db, job_id, done=0, count_new=0, count_updated=0, count_unchanged=0, count_invalid=0, **extra)
    with db.write() as s:
        s.execute(delete(ImportFile).where(ImportFile.job_id == job_id, ImportFile.name == ERRORS))
        s.commit()


def _preview(db: Database, job: ImportJob, ctx: Context, opener: Callable[[], Any], should_stop: Callable[[], bool],
             progress: Progress | None) -> None:
    _clear_errors(db, job.id, "preview")
    _reset(db, job.id, message="")
    result = _run_pass(db, job, ctx, opener, phase="preview", write=False, status="previewing", known=None,
                       start_after=0, should_stop=should_stop, progress=progress)
    sheets = {k: v for k, v in (job.details or {}).items() if k in ("sheet", "other_sheets", "mapping", "values")}
    details = sheets | {"unmapped": result.unknown, "unknown_values": listed(ctx.form, result.unknown_values), "header_row": result.header_row, "warnings": [render(w) for w in result.warnings],
                        "duplicates": result.duplicates}
    _set(db, job.id, status="previewed", details=details, total=result.processed, finished_at=utcnow())


def _commit(db: Database, job: ImportJob, ctx: Context, opener: Callable[[], Any], resuming: bool,
            should_stop: Callable[[], bool], progress: Progress | None) -> None:
    details = dict(job.details or {})
    known = details.get("duplicates") or {}
    if job.error_mode == "all_or_nothing" and not details.get("validated"):
        _clear_errors(db, job.id, "commit")
        _reset(db, job.id, last_row=0)
        checked = _run_pass(db, job, ctx, opener, phase="commit", write=False, status="validating", known=known,
                            start_after=0, should_stop=should_stop, progress=progress)
        invalid = checked.counts["invalid"]
        if invalid:
            _set(db, job.id, status="aborted", total=checked.processed, finished_at=utcnow(),
                 message=render(Issue("import_aborted", {"count": invalid})))
            return
        details["validated"] = True
        _clear_errors(db, job.id, "commit")
        _reset(db, job.id, last_row=0, details=details)
        resuming = False
    elif not resuming:
        _clear_errors(db, job.id, "commit")
        _reset(db, job.id, last_row=0)
    start_after = (load_job(db, job.id) or job).last_row if resuming else 0
    result = _run_pass(db, job, ctx, opener, phase="commit", write=True, status="importing", known=known,
                       start_after=start_after, should_stop=should_stop, progress=progress)
    done = (load_job(db, job.id) or job).done
    if result.processed >= ANALYZE_AFTER_ROWS:  # the planner's statistics follow a bulk load (not autovacuum)
        gather_statistics(db, stale_only=True)
    _set(db, job.id, status="done", total=max(done, result.processed), finished_at=utcnow())


# --- error workbooks --------------------------------------------------------------------------------
def error_rows(db: Database, job: ImportJob) -> dict[int, list[list[Any]]]:
    phase = "commit" if job.phase == "commit" else "preview"
    found: dict[int, list[list[Any]]] = {}
    with db.read() as s:
        for number, errors in s.execute(select(ImportRowError.row_no, ImportRowError.errors)
                                        .where(ImportRowError.job_id == job.id, ImportRowError.phase == phase)
                                        .order_by(ImportRowError.row_no)):
            found.setdefault(number, []).extend(errors)
    return found


def error_workbook(db: Database, definitions: Definitions, job_id: int, limits: Limits) -> bytes | None:
    """The upload's rows with each invalid cell red and commented, and 错误原因; built once, then kept."""
    job = load_job(db, job_id)
    if job is None or job.status not in REPORTED or not job.count_invalid:
        return None
    with db.read() as s:
        cached = s.scalar(select(ImportFile.data).where(ImportFile.job_id == job_id, ImportFile.name == ERRORS))
    if cached:
        return cached
    form = definitions.forms.get(job.form_key)
    errors = error_rows(db, job)
    if form is None or not errors:
        return None
    include_all = job.error_mode == "all_or_nothing"
    with upload_file(db, job) as path:
        inspection = inspect_upload(path, job.filename, limits)
        with open_table(path, inspection, form.title, limits, (job.details or {}).get("sheet", "")) as table:
            header_row = (job.details or {}).get("header_row") or 1
            rest = iter(table.rows)
            header = next((cells for number, cells in rest if number == header_row), [])

            def rows() -> Iterator[tuple[int, list[Any], dict[int, list[str]], list[str]]]:
                for number, cells in rest:
                    if number not in errors and not (include_all and any(cell_text(c).strip() for c in cells)):
                        continue
                    by_column: dict[int, list[str]] = {}
                    other: list[str] = []
                    for column, _label, _value, message in errors.get(number, []):
                        (by_column.setdefault(column, []) if column is not None else other).append(message)
                    yield number, cells, by_column, other

            layout = _template_layout(db, definitions, job, form, header, table.keys)
            data = build_error_workbook(table.sheet or form.title, header, rows(), table.keys, layout)
    with db.write() as s:
        s.execute(delete(ImportFile).where(ImportFile.job_id == job_id, ImportFile.name == ERRORS))
        s.execute(insert(ImportFile).values(job_id=job_id, name=ERRORS, data=data))
        s.commit()
    return data


def _template_layout(db: Database, definitions: Definitions, job: ImportJob, form: FormSpec, header: list[Any],
                     key_rows: list[list[Any]]) -> TemplateLayout | None:
    """The template's columns as this job's user gets them, matched to the uploaded header as the import did."""
    principal = _principal(db, definitions, job, form)
    found = policy(principal, form) if principal is not None else None
    if principal is None or found is None:
        return None
    with db.read() as s:
        units = unit_choices(s, principal, form, "create").units or unit_choices(s, principal, form, "update").units
    columns = template_columns(form, found, unit_required=len(units) != 1)
    by_key = {c.key: c for c in columns}
    keys = read_key_sheet(key_rows)
    keys.headers.update({header_text(h): k for h, k in ((job.details or {}).get("mapping") or {}).items() if k})
    names = key_lookup(form)
    by_index = {}
    for index, cell in enumerate(header):
        text = header_text(cell)
        key = keys.headers.get(text) or names.get(text)
        if key in by_key:
            by_index[index] = by_key[key]
    return TemplateLayout(form, columns, by_index, [u.full_name for u in units])


# --- the worker in the app process --------------------------------------------------------------------
class ImportWorker:
    """One background thread runs jobs one at a time; a stop leaves the running job resumable."""

    def __init__(self, db: Database, definitions: Callable[[], Definitions], records: RecordService, limits: Limits) -> None:
        self.db, self.definitions, self.records, self.limits = db, definitions, records, limits
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dangan-import")
        self.stopping = threading.Event()
        self._active: set[int] = set()
        self._lock = threading.Lock()

    def submit(self, job_id: int) -> None:
        with self._lock:
            if job_id in self._active or self.stopping.is_set():
                return
            self._active.add(job_id)
        self.executor.submit(self._run, job_id)

    def _run(self, job_id: int) -> None:
        try:
            run_job(self.db, self.definitions(), job_id, self.limits, self.records, should_stop=self.stopping.is_set)
        finally:
            with self._lock:
                self._active.discard(job_id)

    def is_active(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._active

    def resume_interrupted(self) -> list[int]:
        """Jobs a stopped server left queued or half done continue (an import after its last committed row)."""
        with self.db.read() as s:
            ids = list(s.scalars(select(ImportJob.id).where(ImportJob.status.in_(ACTIVE)).order_by(ImportJob.id)))
        for job_id in ids:
            self.submit(job_id)
        return ids

    def shutdown(self) -> None:
        self.stopping.set()
        self.executor.shutdown(wait=True, cancel_futures=True)
