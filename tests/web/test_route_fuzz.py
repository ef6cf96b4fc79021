"""Every route of the app's route table, each path, query and form parameter replaced by hostile values, on both
databases, signed in as an administrator and as a registrar: never a 5xx, never a stack trace (issue 14, item 3).

The routes come from `app.routes`, so a route added later is fuzzed too. Path parameters start from real ids (a
seeded record, application, import job, user, unit, attachment) and are replaced one at a time; query parameters are
those a handler declares plus the ones handlers read by hand (QUERY_NAMES); a POST sends every known form field with
the hostile value, as a form and as multipart with a hostile upload, and once with bytes that are not UTF-8.
"""
from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlencode

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient
from sqlalchemy import select

from engine.fields import UploadedFile
from engine.storage.models import ApplicationTask, Attachment, Handover, OrgUnit, User
from engine.workflows.service import WorkflowService
from tests.engine.helpers import BACKENDS, add_member, database_url, png_bytes, principal_of, sign_in, student_values
from tests.support import CLASS_1, DISTRICT, SCHOOL, build, unit_id
from web.state import AppState

INTS = ["0", "-1", "00", "9223372036854775807", "9223372036854775808", "18446744073709551616", "9" * 40, "1e5", "0x1F",
        "²", "٣", "1_0", " 1"]
TEXTS = ["", "\x00", "a\x00b", "\x07\x1b[31m", "x" * 5000, "张" * 1200, "../../../etc/passwd", "..%2f..%2f",
         "<script>alert(1)</script>", "' OR 1=1 --", "%_\\%", "\u202e\u200b", "{{7*7}}", "null", "[]", "-1", "NaN"]
VALUES = INTS + TEXTS
# In a query every name carries the value at once: long ones are kept just past the bound (web/params.py).
QUERY_VALUES = INTS + ["x" * 1001 if v == "x" * 5000 else "张" * 400 if v == "张" * 1200 else v for v in TEXTS]
# Query parameters handlers read from request.query_params themselves (the typed ones are in their signatures).
QUERY_NAMES = ["q", "page", "sort", "incomplete", "record", "field", "parent", "workflow", "status", "next", "mode",
               "name", "gender", "grade", "status", "unit", "id"]
# Every field a form of the app posts: record forms, application forms, decisions, admin and account pages.
FORM_NAMES = ["_unit", "_revision", "_action", "decision", "task", "comment", "username", "password", "next", "current",
              "new", "confirm", "display_name", "roles", "units", "active", "name", "parent", "level", "mode",
              "error_mode", "reason", "reason_detail", "start_date", "end_date", "transfer_date", "family.0.name",
              "family.999.relation"]
# Their normal request ends what the walk needs (the session, the seeded record, a queued import): path variants only.
PATH_ONLY = {"auth:logout", "records:delete", "admin:delete_unit", "excel:commit", "excel:resume", "admin:reset_password"}
# Each request costs seconds (an Argon2 check, a definitions reload): a sample of the values.
FEW = {"auth:login", "admin:reload", "auth:password", "admin:reset_password", "admin:create_user", "excel:export",
       "excel:template"}
TRACE = re.compile(r"Traceback \(most recent call last\)|File \"/|sqlalchemy\.|psycopg|OverflowError|DataError")


@dataclass
class Fuzzed:
    app: Litestar
    state: AppState
    path_values: dict[str, str]
    wf_attachment: str

    def values_for(self, route: HTTPRoute) -> dict[str, str]:
        # /wf/files/{attachment_id} serves an application's attachment, /files/{attachment_id} a record's.
        return {**self.path_values, "attachment_id": self.wf_attachment} if route.path.startswith("/wf/") else self.path_values


def _seed(app: Litestar, state: AppState) -> Fuzzed:
    add_member(state, "root", "sysadmin", DISTRICT)
    add_member(state, "reg", "registrar", SCHOOL)
    admin = principal_of(state, "root")
    student, award = state.definitions.forms["student"], state.definitions.forms["award"]
    record = state.records.create(student, admin, unit_id(state, CLASS_1),
                                  student_values(11, photo=UploadedFile("照片.png", "image/png", png_bytes())))
    assert record.ok, record.issues
    level = next(o.value for o in award.fields["level"].kind.options)
    created = state.records.create(award, admin, None, {
        "student": record.record_id, "kind": "奖励", "level": level, "title": "三好学生", "date": "2024-06-01",
        "attachment": UploadedFile("证书.pdf", "application/pdf", b"%PDF-1.4\n%%EOF\n")})
    assert created.ok, created.issues
    with TestClient(app=app, base_url="http://testserver.local") as client:
        csrf = sign_in(client, state, "reg")
        started = client.post(f"/wf/new/suspend/start?record={record.record_id}", follow_redirects=False, data={
            "_csrf": csrf, "reason": "因病", "reason_detail": "住院", "start_date": "2026-03-01", "end_date": "2026-09-01"},
            files={"proof": ("证明.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")})
        assert started.status_code == 303, started.text[:2000]
        uploaded = client.post("/f/student/imports", follow_redirects=False, data={"_csrf": csrf, "mode": "upsert",
                                                                                   "error_mode": "all_or_nothing"},
                               files={"file": ("学生.csv", "姓名,性别\n李四,男\n".encode(), "text/csv")})
        assert uploaded.status_code == 303, uploaded.text[:2000]
    handover = _handover(state)
    with state.db.read() as s:
        attachment = s.scalar(select(Attachment.id).where(Attachment.form_key == "student"))
        wf_attachment = s.scalar(select(Attachment.id).where(Attachment.form_key.startswith("wf:")))
        root = s.scalar(select(User.id).where(User.username == "root"))
        district = s.scalar(select(OrgUnit.id).where(OrgUnit.parent_id.is_(None)))
    return Fuzzed(app, state, {
        "form_key": "student", "record_id": str(record.record_id), "key": "suspend",
        "application_id": re.search(r"/wf/a/(\d+)", started.headers["location"])[1],  # type: ignore[index]
        "job_id": re.search(r"/imports/(\d+)", uploaded.headers["location"])[1],  # type: ignore[index]
        # The admin's own account and a unit with members: the walk must not lock itself out or delete its tree.
        "user_id": str(root), "unit_id": str(district), "file_path": "app.css",
        "attachment_id": attachment, "certificate_id": "1", "handover_id": str(handover), "key_id": "0" * 16,
    }, wf_attachment)


def _handover(state: AppState) -> int:
    """A pending 升学衔接 (a 初三 graduate sent on to 滨江中学), so that its routes are walked with a real id."""
    add_member(state, "bureau", "bureau", DISTRICT)
    definitions, reg = state.definitions, principal_of(state, "reg")
    made = state.records.create(definitions.forms["student"], reg, unit_id(state, CLASS_1), student_values(12, grade="初三"))
    assert made.ok, made.issues
    levels = {k: "A" for k in ("moral", "academic", "health", "art", "practice")}
    evaluation = state.records.create(definitions.forms["evaluation"], reg, None, {
        "student": made.record_id, "term": "2025-2026学年第二学期", "grade": "初三", **levels})
    assert evaluation.ok, evaluation.issues
    workflows = WorkflowService(state.db, state.records)
    started = workflows.start(definitions, definitions.workflows["graduate"], reg, made.record_id, {
        "graduation_date": "2026-06-30", "destination": "升学", "school_name": "滨江中学"},
        chosen_unit_id=unit_id(state, "滨江区教育局/滨江中学"))
    assert started.ok, started.issues
    with state.db.read() as s:
        task = s.scalar(select(ApplicationTask.id).where(ApplicationTask.application_id == started.application_id))
    workflows.decide(definitions, principal_of(state, "bureau"), started.application_id, task, "approve")
    with state.db.read() as s:
        handover = s.scalar(select(Handover.id).where(Handover.record_id == made.record_id, Handover.status == "pending"))
    assert handover is not None
    return handover


@pytest.fixture(scope="module", params=BACKENDS, ids=["sqlite", "pg"])
def fuzzed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with database_url(request.param, tmp) as url:
        app, state = build(url, tmp=tmp)
        try:
            yield _seed(app, state)
        finally:
            state.db.dispose()


def _routes(app: Litestar) -> list[tuple[HTTPRoute, Any, str]]:
    found = [(route, handler, method) for route in app.routes if isinstance(route, HTTPRoute)
             for handler in route.route_handlers for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"})]
    # What ends something the walk needs goes last.
    return sorted(found, key=lambda item: (item[1].name in PATH_ONLY, item[1].name == "auth:logout", item[0].path, item[2]))


def _url(route: HTTPRoute, values: dict[str, str]) -> str:
    return re.sub(r"{(\w+):\w+}", lambda m: quote(values[m[1]], safe="/" if m[1] == "file_path" else ""), route.path)


def _declared_query(route: HTTPRoute, handler: Any) -> list[str]:
    return [name for name in handler.parsed_fn_signature.parameters
            if name not in route.path_parameters and name not in ("request", "self", "scope", "data")]


def _requests(fuzzed: Fuzzed, route: HTTPRoute, handler: Any, method: str, csrf: str) -> Iterator[dict[str, Any]]:
    base = fuzzed.values_for(route)
    few = handler.name in FEW
    for name, kind in re.findall(r"{(\w+):(\w+)}", route.path):
        # A text in an int parameter matches no route at all: each kind gets the values that reach a handler.
        for value in (INTS if kind == "int" else TEXTS)[:5 if few else None]:
            yield {"method": method, "url": _url(route, {**base, name: value}), "data": {"_csrf": csrf}}
    if method == "GET":
        declared = _declared_query(route, handler)
        names = {*QUERY_NAMES, *declared}
        typed = {"page", "record", *declared}
        for value in QUERY_VALUES[:: 6 if few else 1]:
            # A text in a typed parameter is refused (400) before the handler reads the others: leave those out.
            shown = names if value in INTS else names - typed
            yield {"method": method, "url": _url(route, base) + "?" + urlencode({name: value for name in sorted(shown)})}
    elif handler.name not in PATH_ONLY:
        url = _url(route, base)
        for value in VALUES[:: 6 if few else 1]:
            form = {"_csrf": csrf, **{name: value for name in FORM_NAMES}}
            yield {"method": method, "url": url + "?" + urlencode({n: value for n in ("record", "field")}), "data": form,
                   "files": {"photo": (value or "x", png_bytes(), value), "proof": (value + ".pdf", b"%PDF-1.4", value),
                             "file": (value + ".csv", value.encode(), "text/csv")}}
        broken = (b'--XX\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n' + csrf.encode()
                  + b'\r\n--XX\r\nContent-Disposition: form-data; name="name"; filename="\xff\xfe.png"\r\n'
                  + b'Content-Type: image/png\xff\r\n\r\n\xff\xfe\r\n--XX\r\nContent-Disposition: form-data; name="comment"\r\n\r\n'
                  + b'\xc3\x28\xa0\xa1\r\n--XX--\r\n')
        yield {"method": method, "url": url, "content": broken, "headers": {"content-type": "multipart/form-data; boundary=XX"}}


def _walk(fuzzed: Fuzzed, username: str) -> list[str]:
    failures = []
    with TestClient(app=fuzzed.app, base_url="http://testserver.local", raise_server_exceptions=False) as client:
        csrf = sign_in(client, fuzzed.state, username)
        for route, handler, method in _routes(fuzzed.app):
            for request in _requests(fuzzed, route, handler, method, csrf):
                kwargs = {k: v for k, v in request.items() if k not in ("method", "url")}
                response = client.request(request["method"], request["url"], follow_redirects=False, **kwargs)
                body = response.content.decode("utf-8", "replace")
                if response.status_code >= 500 or TRACE.search(body):
                    failures.append(f"{response.status_code} {request['method']} {request['url'][:160]!r} "
                                    f"[{handler.name}] {body[:200]!r}")
                if handler.name == "auth:logout" and response.status_code == 303:
                    csrf = sign_in(client, fuzzed.state, username)
    return failures


@pytest.mark.parametrize("username", ["root", "reg"])
def test_every_route_with_hostile_values__no_5xx_no_trace(fuzzed: Fuzzed, username: str) -> None:
    failures = _walk(fuzzed, username)
    assert not failures, f"{len(failures)} answers were a 5xx or showed a trace:\n" + "\n".join(failures[:40])


def test_the_walk_reaches_every_route(fuzzed: Fuzzed) -> None:
    """A route with a path parameter the walk has no real value for would only ever be fuzzed with misses."""
    for route, _handler, _method in _routes(fuzzed.app):
        missing = set(route.path_parameters) - set(fuzzed.path_values)
        assert not missing, f"{route.path}: add a real value for {missing} to path_values"
