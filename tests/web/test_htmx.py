"""htmx requests (litestar-htmx's `request.htmx`) are answered with HX-Redirect where a page would redirect."""
from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from tests.support import build


def test_signed_out__htmx_gets_hx_redirect_and_a_page_gets_303(sqlite_url: str, tmp_path: Path) -> None:
    app, state = build(sqlite_url, tmp=tmp_path)
    with TestClient(app=app, base_url="http://testserver.local") as client:
        page = client.get("/f/student/new", follow_redirects=False)
        htmx = client.post("/f/student/check?field=name", headers={"HX-Request": "true"}, follow_redirects=False)
        not_htmx = client.get("/f/student/new", headers={"HX-Request": "false"}, follow_redirects=False)
    state.db.dispose()
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/f/student/new"
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"] == "/login?next=/f/student/check"
    assert not_htmx.status_code == 303
