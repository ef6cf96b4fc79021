"""A natural key with link fields (one mark per pupil and exam, `natural_key: [pupil, exam]`), defined only in this
test's YAML: a file names pupils and exams as a school's file does (编号, 名称); importing it again updates the marks
instead of adding copies; a name that finds nothing in the importer's scope is that row's error."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import pytest
from openpyxl import Workbook

from engine.records import ListQuery
from tests.engine.helpers import add_member, principal_of, write_definitions
from tests.excel.helpers import errors_of, import_file
from tests.related.world import FORMS, ROLES, UNITS
from tests.support import build, unit_id
from web.state import AppState


@pytest.fixture
def state(fresh_db_url: str, tmp_path: Path) -> Iterator[AppState]:
    forms = {**FORMS, "mark": FORMS["mark"].replace("\nsections:", "\nnatural_key: [pupil, exam]\nsections:", 1)}
    assert "natural_key: [pupil, exam]" in forms["mark"]
    root = write_definitions(tmp_path / "definitions", forms=forms, roles=ROLES, org=UNITS)
    _app, built = build(fresh_db_url, definitions=root, tmp=tmp_path)
    add_member(built, "boss", "admin", "区")
    add_member(built, "t1", "teacher", "区/一校/一班")
    boss = principal_of(built, "boss")
    for code, unit in (("P1", "区/一校/一班"), ("P2", "区/一校/一班"), ("P3", "区/一校/二班")):
        assert built.records.create(built.definitions.forms["pupil"], boss, unit_id(built, unit), {"code": code, "name": f"学员{code}"}).ok
    for name in ("期中", "期末"):
        assert built.records.create(built.definitions.forms["exam"], boss, unit_id(built, "区/一校"), {"name": name}).ok
    yield built
    built.db.dispose()


def _xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(["学员", "测验", "甲", "乙"])
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _marks(state: AppState) -> dict[tuple[str, str], tuple[object, object]]:
    boss = principal_of(state, "boss")
    mark = state.definitions.forms["mark"]
    pupils = {r.id: r.values["code"] for r in state.records.list(state.definitions.forms["pupil"], boss, ListQuery()).records}
    exams = {r.id: r.values["name"] for r in state.records.list(state.definitions.forms["exam"], boss, ListQuery()).records}
    return {(pupils[r.values["pupil"]], exams[r.values["exam"]]): (str(r.values["a"]), str(r.values["b"]))
            for r in state.records.list(mark, boss, ListQuery(per_page=100)).records}


def test_reimport__updates_the_marks_it_names_instead_of_adding_copies(state: AppState) -> None:
    first = import_file(state, "boss", _xlsx([["P1", "期中", 80, 70], ["P2", "期中", 60, 65], ["P1", "期末", 90, 91]]),
                        form="mark", filename="成绩.xlsx")
    assert (first.status, first.count_new) == ("done", 3)
    again = import_file(state, "boss", _xlsx([["P1", "期中", 85, 70], ["P2", "期中", 60, 65], ["P3", "期中", 50, 50]]),
                        form="mark", filename="成绩.xlsx")
    assert (again.count_new, again.count_updated, again.count_unchanged, again.count_invalid) == (1, 1, 1, 0)
    assert _marks(state) == {("P1", "期中"): ("85", "70"), ("P2", "期中"): ("60", "65"),
                             ("P1", "期末"): ("90", "91"), ("P3", "期中"): ("50", "50")}


def test_a_name_outside_the_importers_scope__is_that_rows_error(state: AppState) -> None:
    assert import_file(state, "boss", _xlsx([["P1", "期中", 80, 70]]), form="mark", filename="成绩.xlsx").count_new == 1
    # The class-1 teacher names P3 (class 2) and P9 (nobody): not found, worded alike; P1's row updates.
    job = import_file(state, "t1", _xlsx([["P1", "期中", 81, 70], ["P3", "期中", 50, 50], ["P9", "期中", 40, 40]]),
                      form="mark", filename="成绩.xlsx")
    assert (job.count_updated, job.count_invalid) == (1, 2)
    errors = errors_of(state, job)
    assert set(errors) == {3, 4} and all("找不到" in " ".join(errors[n]) for n in (3, 4)), errors
    assert _marks(state) == {("P1", "期中"): ("81", "70")}
