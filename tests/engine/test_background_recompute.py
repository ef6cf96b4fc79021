"""A formula changed on a large form: start-up and reload leave its stored rows to the background (more than
`Settings.recompute_inline_rows`), say so, show progress on the admin page and the form's list, and the background
recomputes them with the new definitions only (a process still on older ones leaves them alone)."""
from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from engine.records import ListQuery
from engine.storage.models import AuditEntry
from engine.storage.projection import pending_refreshes, refresh_pending
from engine.storage.refresher import ProjectionRefresher
from tests.engine.helpers import add_member, principal_of, write_definitions
from tests.engine.test_computed import FORM, ROLE, UNITS
from tests.support import add_user, build, login, unit_id
from web.state import AppState

OLD, NEW = 'compute: "sum(chinese, math, english)"', 'compute: "sum(chinese, math * 2, english)"'
COUNT = 7


@pytest.fixture
def changed(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[AppState, object, list[int]]]:
    """Seven scores, then the 总分 formula changed and reloaded with at most 2 rows recomputed at once."""
    root = write_definitions(tmp_path / "definitions", forms={"score": FORM}, roles={"admin": ROLE}, org=UNITS)
    app, state = build(fresh_db_url, definitions=root, tmp=tmp_path)
    state.settings = replace(state.settings, recompute_inline_rows=2)
    add_member(state, "boss", "admin", "区")
    form, admin, unit = state.definitions.forms["score"], principal_of(state, "boss"), unit_id(state, "区/学校/一班")
    ids = [state.records.create(form, admin, unit, {"name": f"学生{i}", "chinese": str(60 + i), "math": "80"}).record_id
           for i in range(COUNT)]
    old = state.definitions
    yaml = root / "forms" / "score.yaml"
    yaml.write_text(yaml.read_text(encoding="utf-8").replace(OLD, NEW), encoding="utf-8")
    outcome = state.reload()
    assert outcome.ok, outcome
    assert any(f"{COUNT} 条记录将在后台按新定义重新计算" in note for note in outcome.notes), outcome.notes
    yield state, (app, old), ids
    state.db.dispose()


def _totals(state: AppState, ids: list[int]) -> list[Decimal]:
    form, admin = state.definitions.forms["score"], principal_of(state, "boss")
    return [state.records.get(form, i, admin).values["total"] for i in ids]  # type: ignore[union-attr]


def test_reload_leaves_a_large_form_to_the_background__then_it_is_recomputed(changed) -> None:  # type: ignore[no-untyped-def]
    state, _app, ids = changed
    form = state.definitions.forms["score"]
    # Until the background has run: the old values, and the form says how many are left.
    assert _totals(state, ids) == [Decimal(140 + i) for i in range(COUNT)]
    assert state.records.recomputing(form) == COUNT and pending_refreshes(state.db) == {"score": COUNT}
    assert refresh_pending(state.db, state.definitions, batch=3) == {"score": COUNT}
    assert _totals(state, ids) == [Decimal(220 + i) for i in range(COUNT)]
    assert state.records.recomputing(form) == 0 and pending_refreshes(state.db) == {}
    admin = principal_of(state, "boss")
    assert [r.id for r in state.records.list(form, admin, ListQuery(sort="-total")).records] == ids[::-1]
    with state.db.read() as s:
        notes = list(s.scalars(select(AuditEntry.note).where(AuditEntry.record_id == ids[0]).order_by(AuditEntry.id)))
    assert notes[-1] == "计算公式已更改，按新公式重新计算"
    assert refresh_pending(state.db, state.definitions) == {}  # nothing left: a second round does nothing


def test_a_process_on_the_old_definitions_leaves_the_rows_alone(changed) -> None:  # type: ignore[no-untyped-def]
    state, (_app, old), ids = changed
    assert refresh_pending(state.db, old) == {}  # it would write rows by the old formula over the new definition's
    assert state.records.recomputing(state.definitions.forms["score"]) == COUNT
    # A record saved meanwhile is written by the new definition; the background then does the rest.
    form, admin = state.definitions.forms["score"], principal_of(state, "boss")
    record = state.records.get(form, ids[0], admin)
    assert state.records.update(form, admin, ids[0], {"english": "1"}, record.revision).ok  # type: ignore[union-attr]
    assert refresh_pending(state.db, state.definitions) == {"score": COUNT - 1}
    assert _totals(state, ids) == [Decimal(221)] + [Decimal(220 + i) for i in range(1, COUNT)]
    assert pending_refreshes(state.db) == {}  # the counter ends at 0 although the save did not count it down


def test_the_refresher_thread_does_it_while_the_app_serves(changed) -> None:  # type: ignore[no-untyped-def]
    state, _app, ids = changed
    refresher = ProjectionRefresher(state.db, lambda: state.definitions, every_seconds=0.05).start()
    try:
        deadline = time.monotonic() + 60
        while pending_refreshes(state.db) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        refresher.stop()
    assert _totals(state, ids) == [Decimal(220 + i) for i in range(COUNT)]


def test_admin_page_and_the_forms_list_show_the_progress(changed) -> None:  # type: ignore[no-untyped-def]
    state, (app, _old), _ids = changed
    add_user(state, "root", "admin", "区")
    with TestClient(app=app, base_url="http://testserver.local") as client:
        login(client, "root")
        overview = client.get("/admin/").text
        assert 'id="recomputing"' in overview and f"表单“成绩”：剩余 {COUNT} 条" in overview
        listing = client.get("/f/score/").text
        assert 'id="recomputing"' in listing and f"剩余 {COUNT} 条" in listing
        refresh_pending(state.db, state.definitions)
        assert 'id="recomputing"' not in client.get("/admin/").text
        assert 'id="recomputing"' not in client.get("/f/score/").text
