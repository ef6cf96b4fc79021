"""The test-only definitions of tests/related/world.py on a fresh database: an admin, a class-1 teacher, pupils
P1 and P2 in 一班 and P3 in 二班, and the exam 期中."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
from litestar import Litestar

from tests.engine.helpers import add_member, principal_of, write_definitions
from tests.related.world import FORMS, ROLES, UNITS
from tests.support import build, unit_id
from web.state import AppState


@pytest.fixture
def world(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[Litestar, AppState, dict[str, int]]]:
    root = write_definitions(tmp_path / "definitions", forms=FORMS, roles=ROLES, org=UNITS)
    app, state = build(fresh_db_url, definitions=root, tmp=tmp_path)
    add_member(state, "boss", "admin", "区")
    add_member(state, "t1", "teacher", "区/一校/一班")
    boss = principal_of(state, "boss")
    ids: dict[str, int] = {}
    for code, unit in (("P1", "区/一校/一班"), ("P2", "区/一校/一班"), ("P3", "区/一校/二班")):
        made = state.records.create(state.definitions.forms["pupil"], boss, unit_id(state, unit), {"code": code, "name": f"学员{code}"})
        ids[code] = made.record_id  # type: ignore[assignment]
    ids["exam"] = state.records.create(state.definitions.forms["exam"], boss, unit_id(state, "区/一校"), {"name": "期中"}).record_id  # type: ignore[assignment]
    yield app, state, ids
    state.db.dispose()


def page_text(html: str) -> str:
    """A page's text without tags, runs of white space as one space."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
