"""Fixture files made in the tests (xlsx with openpyxl, CSV by hand) and shortcuts to run an import."""
from __future__ import annotations

import datetime as dt
import io
import itertools
import re
import time
import zipfile
from typing import Any, Iterable

from openpyxl import Workbook
from sqlalchemy import select

from engine.excel.jobs import create_job, load_job, queue_commit, run_job
from engine.excel.limits import Limits
from engine.org import build_principal
from engine.permissions import Principal
from engine.storage.projection import projection_of
from engine.storage.models import ImportJob, ImportRowError, Record, User
from web.state import AppState

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CLASS_1_NAME = "高一(1)班"
HEADER = ["所属班级", "姓名", "性别", "出生日期", "民族", "身份证号", "入学年份", "年级", "家长姓名", "家长联系电话"]


def id_number(born: dt.date, seq: int, region: str = "110105") -> str:
    """A valid 18-digit ID (GB 11643 check digit); an odd `seq` is male."""
    first = f"{region}{born:%Y%m%d}{seq:03d}"
    return first + "10X98765432"[sum(int(c) * w for c, w in zip(first, WEIGHTS)) % 11]


def student(seq: int, born: dt.date = dt.date(2008, 5, 12), region: str = "110105", **changes: Any) -> dict[str, Any]:
    """One valid row, by header label."""
    row = {"所属班级": CLASS_1_NAME, "姓名": "张三", "性别": "男" if seq % 2 else "女", "出生日期": born,
           "民族": "汉族", "身份证号": id_number(born, seq, region), "入学年份": 2023, "年级": "高一",
           "家长姓名": "张父", "家长联系电话": "13812345678"}
    row.update(changes)
    return row


_serial = itertools.count()


def new_student(born: dt.date | None = None, male: bool = True, **changes: Any) -> dict[str, Any]:
    """A valid row whose ID number no other call has used (module-scoped databases are shared)."""
    k = next(_serial)
    seq = 101 + 2 * (k % 440) + (0 if male else 1)
    # A given birth date uses another region code, so it never meets a generated date's numbers.
    region = "310104" if born else "110105"
    born = born or dt.date(2007, 1, 1) + dt.timedelta(days=k % 1200)
    return student(seq, born, region, 性别="男" if male else "女", **changes)


def xlsx(rows: Iterable[dict[str, Any] | list[Any]], header: list[str] | None = None, *, above: Iterable[list[Any]] = (),
         title: str = "学生档案", keys: list[list[str]] | None = None, merge: str = "", after: Any = None) -> bytes:
    """A workbook: optional title rows, a header, then rows (dicts by label, or lists as they are)."""
    header = header or HEADER
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = title
    for line in above:
        sheet.append(line)
    sheet.append(header)
    for row in rows:
        sheet.append([row.get(label) for label in header] if isinstance(row, dict) else row)
    if merge:
        sheet.merge_cells(merge)
    if keys is not None:
        key_sheet = workbook.create_sheet("_keys")
        key_sheet.sheet_state = "veryHidden"
        for line in keys:
            key_sheet.append(line)
    if after is not None:
        after(workbook)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def csv_bytes(rows: Iterable[dict[str, Any]], encoding: str = "utf-8", header: list[str] | None = None) -> bytes:
    header = header or HEADER
    lines = [",".join(header)] + [",".join(_csv_text(row.get(label)) for label in header) for row in rows]
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def with_cached_formulas(data: bytes, values: dict[str, str]) -> bytes:
    """openpyxl writes formulas without results; Excel stores the last result in <v>. Add it, per cell."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                text = content.decode()
                for ref, value in values.items():
                    text = re.sub(rf'(<c r="{ref}"[^>]*?)(?: t="\w+")?>(<f>.*?</f>)<v\s*/?>(?:</v>)?',
                                  rf'\1 t="str">\2<v>{value}</v>', text)
                content = text.encode()
            target.writestr(info, content)
    return out.getvalue()


def replace_part(data: bytes, name: str, content: bytes, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as target:
        for info in source.infolist():
            target.writestr(info.filename, content if info.filename == name else source.read(info.filename))
    return out.getvalue()


def principal_of(state: AppState, username: str) -> Principal:
    with state.db.read() as s:
        user = s.scalar(select(User).where(User.username == username))
        return build_principal(s, user, state.definitions)


def preview(state: AppState, username: str, data: bytes, *, mode: str = "upsert", error_mode: str = "skip_invalid",
            filename: str = "学生.xlsx", form: str = "student", limits: Limits | None = None) -> ImportJob:
    spec = state.definitions.forms[form]
    kind = "csv" if filename.endswith(".csv") else "xlsx"
    job_id = create_job(state.db, spec, principal_of(state, username), filename, data, kind, mode, error_mode)
    job = run_job(state.db, state.definitions, job_id, limits or Limits(), state.records)
    assert job is not None
    return job


def commit(state: AppState, job: ImportJob, error_mode: str | None = None, limits: Limits | None = None, **kwargs: Any) -> ImportJob:
    assert queue_commit(state.db, job.id, error_mode or job.error_mode), job.status
    done = run_job(state.db, state.definitions, job.id, limits or Limits(), state.records, **kwargs)
    assert done is not None
    return done


def import_file(state: AppState, username: str, data: bytes, **kwargs: Any) -> ImportJob:
    error_mode = kwargs.pop("error_mode", "skip_invalid")
    job = preview(state, username, data, error_mode=error_mode, **kwargs)
    assert job.status == "previewed", job.message
    return commit(state, job)


def errors_of(state: AppState, job: ImportJob) -> dict[int, list[str]]:
    """Row number → messages, for the job's current phase."""
    phase = "commit" if job.phase == "commit" else "preview"
    found: dict[int, list[str]] = {}
    with state.db.read() as s:
        for number, errors in s.execute(select(ImportRowError.row_no, ImportRowError.errors)
                                        .where(ImportRowError.job_id == job.id, ImportRowError.phase == phase)):
            found.setdefault(number, []).extend(e[3] for e in errors)
    return found


def record_by_id_card(state: AppState, number: str) -> Record | None:
    form = state.definitions.forms["student"]
    projection = projection_of(form, state.db.dialect)
    with state.db.read() as s:
        found = select(projection.table.c.record_id).where(projection.column("id_card") == number)
        return s.scalar(select(Record).where(Record.id.in_(found)))


def wait_job(state: AppState, job_id: int, statuses: tuple[str, ...] = ("previewed", "done", "aborted", "rejected", "failed"),
             timeout: float = 30.0) -> ImportJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = load_job(state.db, job_id)
        if job is not None and job.status in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {statuses}: {load_job(state.db, job_id).status}")  # type: ignore[union-attr]
