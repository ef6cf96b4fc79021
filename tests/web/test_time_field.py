"""A `time` field in a form defined only in this test's YAML works end to end: web form, inline limits, list
order, Excel template, import of a real .xlsx, export, JSON API — on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import openpyxl
import pytest
from litestar.testing import TestClient

from engine.issues import Issue
from engine.messages import render
from tests.engine.helpers import BACKENDS, ORG, add_member, database_url, sign_in, write_definitions
from tests.excel.helpers import errors_of, import_file, preview
from tests.support import build, unit_id
from web.state import AppState

DUTY = """
key: duty
title: 值日登记
unit: {level: class}
natural_key: [pupil]
list:
  columns: [pupil, arrive]
  sort: arrive
sections:
  - key: main
    title: 值日
    fields:
      - {key: pupil, label: 学生, type: text, required: true}
      - key: arrive
        label: 到校时间
        type: time
        required: true
        min: "06:30"
        max: 9:00
"""
ROLE = "key: teacher\nname: 教师\nscope: all\nforms:\n  duty:\n    actions: [create, read, update, import, export]\n"
ADMIN = "key: admin\nname: 管理员\nscope: all\nadmin: true\n"
UNITS = ORG + "demo_units:\n  - name: 区\n    level: district\n    children:\n      - name: 学校\n        level: school\n" \
              "        children:\n          - {name: 一班, level: class}\n"
CLASS = "区/学校/一班"


@dataclass
class World:
    state: AppState
    client: TestClient
    csrf: str


@pytest.fixture(scope="module", params=BACKENDS, ids=["sqlite", "pg"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("time")
    root = write_definitions(tmp / "definitions", forms={"duty": DUTY}, roles={"teacher": ROLE, "admin": ADMIN}, org=UNITS)
    with database_url(request.param, tmp) as url:
        app, state = build(url, definitions=root, tmp=tmp)
        add_member(state, "t", "teacher", CLASS)
        with TestClient(app=app, base_url="http://testserver.local") as client:
            yield World(state, client, sign_in(client, state, "t"))
        state.db.dispose()


def post(world: World, **values: str):
    data = {"_csrf": world.csrf, "_unit": str(unit_id(world.state, CLASS)), **values}
    return world.client.post("/f/duty/new", data=data, follow_redirects=False)


def test_form__time_input(world: World) -> None:
    page = world.client.get("/f/duty/new").text
    assert re.search(r'<input type="time" id="in-arrive" name="arrive" value=""', page)


def test_form__saved_and_shown(world: World) -> None:
    response = post(world, pupil="甲", arrive="07:45")
    assert response.status_code == 303, response.text[:2000]
    page = world.client.get(response.headers["location"]).text
    assert re.search(r'id="v-arrive">.*?07:45', page, re.S)
    edit = world.client.get(response.headers["location"] + "/edit").text
    assert 'name="arrive" value="07:45"' in edit


@pytest.mark.parametrize(("typed", "code", "limit"), [("06:00", "min_value", "06:30"), ("9:15", "max_value", "09:00")])
def test_form__limits_from_yaml(world: World, typed: str, code: str, limit: str) -> None:
    response = post(world, pupil="乙", arrive=typed)
    assert response.status_code == 422
    assert render(Issue(code, {"limit": limit}), "到校时间") in response.text


def test_form__not_a_time(world: World) -> None:
    response = post(world, pupil="丙", arrive="早上")
    assert response.status_code == 422 and render(Issue("time"), "到校时间") in response.text


def test_inline_check__same_validator(world: World) -> None:
    response = world.client.post("/f/duty/check?field=arrive", data={"arrive": "5:00"},
                                 headers={"HX-Request": "true", "X-CSRF-Token": world.csrf})
    assert render(Issue("min_value", {"limit": "06:30"}), "到校时间") in response.text


def test_excel__template_formats_and_explains_the_column(world: World) -> None:
    book = openpyxl.load_workbook(io.BytesIO(world.client.get("/f/duty/excel/template").content))
    sheet = book["值日登记"]
    letter = next(c.column_letter for c in sheet[1] if c.value == "到校时间*")
    assert sheet.column_dimensions[letter].number_format == "hh:mm"
    notes = {row[0]: row for row in book["填写说明"].iter_rows(values_only=True) if row and row[0]}
    assert notes["到校时间*"][2:5] == ("时间", "时间，24小时制，如 07:30，也可写 7:30、7点30分", "08:00")


def test_excel__import_time_cells_fractions_and_text(world: World) -> None:
    book = openpyxl.load_workbook(io.BytesIO(world.client.get("/f/duty/excel/template").content))
    sheet = book["值日登记"]
    sheet.append(["一班", "丁", dt.time(7, 10)])
    sheet.append(["一班", "戊", 0.3125])  # 07:30 as a fraction of a day, in a General cell
    sheet.append(["一班", "己", "8点"])
    sheet.append(["一班", "庚", "25:00"])
    sheet.append(["一班", "辛", dt.time(6, 0)])
    buffer = io.BytesIO()
    book.save(buffer)
    job = preview(world.state, "t", buffer.getvalue(), form="duty", filename="值日.xlsx")
    assert (job.count_new, job.count_invalid) == (3, 2)
    assert errors_of(world.state, job) == {5: [render(Issue("time"), "到校时间")],
                                           6: [render(Issue("min_value", {"limit": "06:30"}), "到校时间")]}
    done = import_file(world.state, "t", buffer.getvalue(), form="duty", filename="值日.xlsx")
    assert done.count_new == 3
    api = world.client.get("/api/f/duty/").json()
    arrivals = {r["values"]["pupil"]: r["values"]["arrive"] for r in api["records"]}
    assert {k: arrivals[k] for k in ("丁", "戊", "己")} == {"丁": "07:10", "戊": "07:30", "己": "08:00"}


def test_list__sorted_by_time(world: World) -> None:
    for pupil, arrive in (("早", "6:45"), ("晚", "8:55")):
        assert post(world, pupil=pupil, arrive=arrive).status_code == 303
    page = world.client.get("/f/duty/?sort=arrive").text
    shown = re.findall(r"<td[^>]*>\s*(\d\d:\d\d)\s*</td>", page)
    assert shown == sorted(shown) and shown[0] == "06:45" and shown[-1] == "08:55"


def test_excel__export_writes_times_as_times(world: World) -> None:
    assert post(world, pupil="壬", arrive="07:05").status_code == 303
    book = openpyxl.load_workbook(io.BytesIO(world.client.get("/f/duty/excel/export").content))
    sheet = book["值日登记"]
    cell = next(row[2] for row in sheet.iter_rows(min_row=2) if row[1].value == "壬")
    assert (cell.value, cell.number_format) == (dt.time(7, 5), "hh:mm")


def test_api__time_as_hh_mm(world: World) -> None:
    response = post(world, pupil="癸", arrive="07:20")
    record_id = response.headers["location"].rsplit("/", 1)[1]
    assert world.client.get(f"/api/f/duty/{record_id}").json()["values"]["arrive"] == "07:20"
