"""A child form with a link, a computed field and figures, defined only in this test's YAML, end to end through the
web pages, the Excel template, import and export, and the JSON API — on SQLite and PostgreSQL."""
from __future__ import annotations

import io

from litestar.testing import TestClient
from openpyxl import Workbook, load_workbook

from tests.engine.helpers import sign_in
from tests.excel.helpers import wait_job
from tests.related.conftest import page_text

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_a_teacher_adds_marks_from_the_pupils_page_and_sees_totals_and_ranks(world) -> None:  # type: ignore[no-untyped-def]
    app, state, ids = world
    with TestClient(app=app, base_url="http://testserver.local") as client:
        csrf = sign_in(client, state, "t1")
        pupil_page = client.get(f"/f/pupil/{ids['P1']}")
        assert pupil_page.status_code == 200
        assert "得分（0）" in page_text(pupil_page.text) and f"/f/mark/new?pupil={ids['P1']}" in pupil_page.text
        new = client.get(f"/f/mark/new?pupil={ids['P1']}")
        assert new.status_code == 200 and 'name="_unit"' not in new.text  # no unit to choose: it is the pupil's
        assert 'value="学员P1"' in new.text and f'value="{ids["P1"]}"' in new.text
        # Without JavaScript the exam is typed by its unique name; the picked pupil comes as its id.
        for pupil, a, b in (("P1", "80", "70.5"), ("P2", "90", "90")):
            saved = client.post("/f/mark/new", data={"_csrf": csrf, "pupil": str(ids[pupil]), "exam__text": "期中", "a": a, "b": b},
                                follow_redirects=False)
            assert saved.status_code == 303, page_text(saved.text)[:600]
        record_page = page_text(client.get(saved.headers["location"]).text)
        assert "合计 180.0" in record_page and "班内名次 1" in record_page and "班平均 165.3" in record_page
        listing = page_text(client.get("/f/mark/?sort=class_rank").text)
        assert listing.index("学员P2") < listing.index("学员P1") and "班内名次" in listing
        # Another class's pupil reads as absent, at the field.
        refused = client.post("/f/mark/new", data={"_csrf": csrf, "pupil__text": "P3", "exam__text": "期中", "a": "1"})
        assert refused.status_code == 422 and "找不到“P3”对应的学员" in page_text(refused.text)
        # The picker finds pupils of the teacher's class only.
        options = client.get("/f/pupil/pick?pupil__text=学员")
        assert "学员P1" in options.text and "学员P3" not in options.text
        # JSON API: the link's id, the computed total and the figures.
        listed = client.get("/api/f/mark/").json()
        by_pupil = {r["values"]["pupil"]: r for r in listed["records"]}
        assert by_pupil[ids["P2"]]["figures"]["class_rank"] == 1 and by_pupil[ids["P1"]]["values"]["total"] == "150.5"


def test_marks_through_excel_template_import_and_export(world) -> None:  # type: ignore[no-untyped-def]
    app, state, ids = world
    with TestClient(app=app, base_url="http://testserver.local") as client:
        csrf = sign_in(client, state, "t1")
        template = load_workbook(io.BytesIO(client.get("/f/mark/excel/template").content))
        header = [c.value for c in template.worksheets[0][1] if c.value]
        assert [h.rstrip("*") for h in header] == ["学员", "测验", "甲", "乙"]  # no unit column, no computed total
        book = Workbook()
        sheet = book.active
        sheet.append(header)
        sheet.append(["P1", "期中", 60, 70])
        sheet.append(["P2", "期中", 61, 70])
        sheet.append(["P3", "期中", 99, 99])  # another class: refused, nothing about it confirmed
        data = io.BytesIO()
        book.save(data)
        posted = client.post("/f/mark/imports", data={"_csrf": csrf, "mode": "insert", "error_mode": "skip_invalid"},
                             files={"file": ("得分.xlsx", data.getvalue(), XLSX)}, follow_redirects=False)
        assert posted.status_code == 303, page_text(posted.text)[:600]
        location = posted.headers["location"]
        job_id = int(location.rstrip("/").rsplit("/", 1)[1])
        wait_job(state, job_id)
        preview = page_text(client.get(location).text)
        assert "找不到“P3”对应的学员" in preview
        assert "已自动规范" not in preview  # a link found by 编号 is not a respelled value ("P1" → "#3")
        assert client.post(location + "/commit", data={"_csrf": csrf}, follow_redirects=False).status_code == 303
        assert wait_job(state, job_id, ("done",)).count_new == 2
        listed = client.get("/api/f/mark/").json()
        assert sorted((r["values"]["pupil"], r["values"]["total"], r["figures"]["class_rank"]) for r in listed["records"]) == [
            (ids["P1"], "130.0", 2), (ids["P2"], "131.0", 1)]
        exported = load_workbook(io.BytesIO(client.get("/f/mark/excel/export").content)).worksheets[0]
        rows = [[c.value for c in row] for row in exported.iter_rows(min_row=2) if any(c.value for c in row)]
        assert sorted(r[1] for r in rows) == ["学员P1", "学员P2"]  # links shown by their titles
