"""List sorting follows the field type's SQL type (FieldType.sql_type), on SQLite and PostgreSQL."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from engine.records import ListQuery
from engine.spec import FormSpec
from tests.engine.helpers import ORG, principal_of, write_definitions
from tests.support import build, unit_id
from web.state import AppState

SCORES = """
key: score
title: 成绩
unit: {level: class}
list:
  columns: [name, points, rank, taken]
sections:
  - key: main
    title: 成绩
    fields:
      - {key: name, label: 姓名, type: text, required: true}
      - {key: points, label: 分数, type: decimal, places: 2}
      - {key: rank, label: 名次, type: integer}
      - {key: taken, label: 考试日期, type: date}
"""
ADMIN = "key: admin\nname: 管理员\nscope: all\nadmin: true\nforms:\n  '*':\n    actions: [create, read, update]\n"
UNITS = ORG + """
demo_units:
  - name: 区
    level: district
    children:
      - name: 学校
        level: school
        children:
          - {name: 一班, level: class}
"""
# As staff saw them listed by 分数: sorted as text, 100 came last.
POINTS = ["93.5", "90", "9", "87.34", "100", "-1.5", "10.05"]


@pytest.fixture
def scores(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[AppState, FormSpec]]:
    root = write_definitions(tmp_path / "definitions", forms={"score": SCORES}, roles={"admin": ADMIN}, org=UNITS)
    _app, state = build(fresh_db_url, definitions=root, tmp=tmp_path)
    form = state.definitions.forms["score"]
    admin = principal_of(state, "admin")
    for number, points in enumerate(POINTS):
        values = {"name": f"学生{number}", "points": points, "rank": str(len(POINTS) - number) + "0",
                  "taken": f"2024-{number + 3}-{number * 4 + 1}"}
        assert state.records.create(form, admin, unit_id(state, "区/学校/一班"), values).ok
    yield state, form
    state.db.dispose()


def listed(state: AppState, form: FormSpec, sort: str, key: str) -> list[str]:
    page = state.records.list(form, principal_of(state, "admin"), ListQuery(sort=sort))
    return [form.fields[key].kind.to_text(record.values[key]) for record in page.records]


def test_sort_decimal__by_value_not_text(scores: tuple[AppState, FormSpec]) -> None:
    assert listed(*scores, "points", "points") == ["-1.5", "9", "10.05", "87.34", "90", "93.5", "100"]


def test_sort_decimal__descending(scores: tuple[AppState, FormSpec]) -> None:
    assert listed(*scores, "-points", "points") == ["100", "93.5", "90", "87.34", "10.05", "9", "-1.5"]


def test_sort_integer__by_value(scores: tuple[AppState, FormSpec]) -> None:
    assert listed(*scores, "rank", "rank") == ["10", "20", "30", "40", "50", "60", "70"]


def test_sort_date__by_calendar(scores: tuple[AppState, FormSpec]) -> None:
    taken = listed(*scores, "taken", "taken")
    assert taken == sorted(taken) and taken[0] == "2024-03-01" and taken[-1] == "2024-09-25"
