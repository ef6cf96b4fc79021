"""Malformed input gets a clear 4xx or is made a clean value, never a 500 (issue 14, item 3): ids and page numbers
beyond 64 bits, a 60 KB search, bytes that are not UTF-8, NUL characters, over-long upload names and types."""
from __future__ import annotations

from contextlib import ExitStack

import pytest
from sqlalchemy import select

from engine.storage.models import Attachment, Record
from tests.conftest import pg_schema_url
from tests.support import CLASS_1, DISTRICT, add_user, build, client_for, login, unit_id, valid_id_number, valid_student
from web.params import MAX_FILENAME, MAX_PAGE, clean_content_type, clean_filename, page_number, parse_id

BEYOND = str(2**64)
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"], ids=["sqlite", "pg"])
def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One app per database for the module: the cases only read, or write records of their own."""
    tmp = tmp_path_factory.mktemp("malformed")
    with ExitStack() as stack:
        url = f"sqlite:///{tmp / 'dangan.db'}" if request.param == "sqlite" else stack.enter_context(pg_schema_url())
        app, state = build(url, tmp=tmp)
        stack.callback(state.db.dispose)
        add_user(state, "root", "sysadmin", DISTRICT)
        for client in client_for(app):
            csrf = login(client, "root")
            # One record, so that searches have rows to compare.
            created = client.post("/f/student/new", data={"_csrf": csrf, **valid_student(), "_unit": str(unit_id(state, CLASS_1))},
                                  follow_redirects=False)
            assert created.status_code == 303, created.text
            yield client, state, csrf


@pytest.mark.parametrize("path", [
    f"/f/student/{BEYOND}", f"/f/student/{BEYOND}/history", f"/f/student/{BEYOND}/edit", f"/api/f/student/{BEYOND}",
    f"/wf/a/{BEYOND}", f"/admin/users/{BEYOND}", f"/admin/users/{2**40}", f"/admin/units/{BEYOND}",
    f"/f/student/imports/{BEYOND}", f"/f/student/imports/{BEYOND}/progress",
])
def test_id_beyond_64_bits__404(web, path: str) -> None:  # type: ignore[no-untyped-def]
    client, _state, _csrf = web
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 404, response.text[:300]


@pytest.mark.parametrize("path", [
    f"/f/student/?page={BEYOND}", f"/f/student/?page={2**62}", f"/api/f/student/?page={BEYOND}", f"/wf/todo?page={BEYOND}",
    f"/wf/mine?page={2**62}", "/wf/done?page=" + "9" * 900,
])
def test_page_beyond_bounds__an_empty_page(web, path: str) -> None:  # type: ignore[no-untyped-def]
    client, _state, _csrf = web
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 200, response.text[:300]
    assert "张三" not in response.text


@pytest.mark.parametrize("raw, page", [(None, 1), ("3", 3), ("abc", 1), ("-1", 1), ("0", 1), ("²", 1), ("٣", 1),
                                       (BEYOND, MAX_PAGE), ("9" * 900, MAX_PAGE)])
def test_page_number(raw: str | None, page: int) -> None:
    assert page_number(raw) == page


def test_query_id_beyond_bounds__4xx(web) -> None:  # type: ignore[no-untyped-def]
    client, _state, _csrf = web
    response = client.get(f"/wf/new/suspend/start?record={BEYOND}", follow_redirects=False)
    assert 400 <= response.status_code < 500, response.text[:300]


def test_posted_unit_id_beyond_bounds__asks_for_a_unit(web) -> None:  # type: ignore[no-untyped-def]
    client, _state, csrf = web
    response = client.post("/f/student/new", data={"_csrf": csrf, **valid_student(id_card=valid_id_number("11010520080512002")),
                                                   "_unit": BEYOND}, follow_redirects=False)
    assert response.status_code in (303, 422)  # the admin reaches every class: asked to choose, or placed in the only one


@pytest.mark.parametrize("path", ["/admin/units/levels?parent=" + BEYOND, "/admin/units/levels?parent=²",
                                  f"/wf/new/transfer/start?record={BEYOND}", "/f/student/?q=" + "%25" * 20000])
def test_odd_query_values__not_500(web, path: str) -> None:  # type: ignore[no-untyped-def]
    client, _state, _csrf = web
    assert client.get(path).status_code < 500


def test_search_of_60_kb__400_with_reason(web) -> None:  # type: ignore[no-untyped-def]
    client, _state, _csrf = web
    for term in ("张" * 1001, "%" * 20000, "a" * 60000):
        response = client.get("/f/student/", params={"q": term})
        assert response.status_code == 400
        assert "查询内容过长" in response.text
    assert client.get("/f/student/", params={"q": "张"}).status_code == 200


def test_search_of_percent_signs__matches_them_literally_in_admin(web) -> None:  # type: ignore[no-untyped-def]
    client, _state, _csrf = web
    assert "root" in client.get("/admin/users", params={"q": "roo"}).text
    assert "没有" in client.get("/admin/users", params={"q": "r%t"}).text or "root</" not in client.get("/admin/users", params={"q": "r%t"}).text


def test_multipart_field_not_utf8__400(web) -> None:  # type: ignore[no-untyped-def]
    client, _state, csrf = web
    body = (b'--XX\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n' + csrf.encode()
            + b'\r\n--XX\r\nContent-Disposition: form-data; name="name"\r\n\r\n\xff\xfe\xfa\r\n--XX--\r\n')
    response = client.post("/f/student/new", content=body, headers={"content-type": "multipart/form-data; boundary=XX"})
    assert response.status_code == 400
    assert "不是有效的 UTF-8" in response.text


def test_multipart_field_with_unknown_charset__400(web) -> None:  # type: ignore[no-untyped-def]
    client, _state, csrf = web
    body = (b'--XX\r\nContent-Disposition: form-data; name="name"\r\nContent-Type: text/plain; charset=nonsense\r\n\r\n'
            b'abc\r\n--XX--\r\n')
    response = client.post("/f/student/new", content=body,
                           headers={"content-type": "multipart/form-data; boundary=XX", "x-csrf-token": csrf})
    assert response.status_code == 400


def test_nul_and_control_characters__removed_from_what_is_saved(web) -> None:  # type: ignore[no-untyped-def]
    client, state, csrf = web
    number = valid_id_number("11010520080512003")
    response = client.post("/f/student/new", data={"_csrf": csrf, **valid_student(name="张\x00三\x07", id_card=number),
                                                   "_unit": str(unit_id(state, CLASS_1))}, follow_redirects=False)
    assert response.status_code == 303, response.text
    with state.db.read() as s:
        names = {r.data["name"] for r in s.scalars(select(Record).where(Record.form_key == "student"))}
    assert "张三" in names


def test_upload_name_of_300_characters_and_long_type__stored_cleanly(web) -> None:  # type: ignore[no-untyped-def]
    client, state, csrf = web
    number = valid_id_number("11010520080512005")
    response = client.post("/f/student/new", data={"_csrf": csrf, **valid_student(id_card=number), "_unit": str(unit_id(state, CLASS_1))},
                           files={"photo": ("照" * 300 + ".png", PNG, "image/png" + "x" * 200)}, follow_redirects=False)
    assert response.status_code == 303, response.text
    with state.db.read() as s:
        attachment = s.scalar(select(Attachment))
    assert attachment is not None
    assert len(attachment.filename) == MAX_FILENAME and attachment.filename.endswith(".png")
    assert len(attachment.content_type) <= 120


def test_clean_filename__path_controls_and_length() -> None:
    assert clean_filename("C:\\Users\\张三\\照片.jpg") == "照片.jpg"
    assert clean_filename("../../etc/passwd") == "passwd"
    assert clean_filename("a\x00b.pdf") == "ab.pdf"
    assert clean_filename("") == "file"
    long = clean_filename("x" * 400 + ".jpeg")
    assert len(long) == MAX_FILENAME and long.endswith(".jpeg")


def test_clean_content_type__claimed_type_or_octet_stream() -> None:
    assert clean_content_type("image/PNG; charset=binary") == "image/png"
    assert clean_content_type("image/" + "x" * 200) == "application/octet-stream"
    assert clean_content_type("text/html\r\nX-Evil: 1") == "application/octet-stream"
    assert clean_content_type(None) == "application/octet-stream"


def test_parse_id__ascii_digits_within_64_bits() -> None:
    assert parse_id("42") == 42
    assert [parse_id(v) for v in ("0", "-1", "²", "٣", "1_000", " 7", BEYOND, "", None, 7)] == [None] * 10
    assert parse_id(str(2**63 - 1)) == 2**63 - 1
