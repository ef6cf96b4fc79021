"""Grid entry (`grid:`), defined only in this test's YAML: a teacher enters a class's marks for one exam on one page;
one save writes every row or none, each error at its cell; a row saved by someone else meanwhile is not overwritten."""
from __future__ import annotations

from urllib.parse import urlencode

from litestar.testing import TestClient

from engine.records import ListQuery
from tests.engine.helpers import principal_of, sign_in
from tests.related.conftest import page_text
from tests.support import unit_id


def test_a_class_is_entered_on_one_page_all_rows_or_none(world) -> None:  # type: ignore[no-untyped-def]
    app, state, ids = world
    mark, boss = state.definitions.forms["mark"], principal_of(state, "boss")
    class_1 = unit_id(state, "区/一校/一班")
    where = {"unit": class_1, "exam": ids["exam"]}
    with TestClient(app=app, base_url="http://testserver.local") as client:
        csrf = sign_in(client, state, "t1")
        chooser = client.get("/f/mark/grid")
        assert chooser.status_code == 200 and "一班" in chooser.text and "二班" not in chooser.text
        page = client.get("/f/mark/grid?" + urlencode(where))
        assert f'name="c.{ids["P1"]}.a"' in page.text and f'name="c.{ids["P2"]}.b"' in page.text
        assert f'c.{ids["P3"]}.' not in page.text  # another class's pupil is not a row
        # One bad cell: nothing is saved, the message sits at its cell, the typed values stay.
        bad = {"_csrf": csrf, **{k: str(v) for k, v in where.items()},
               f"c.{ids['P1']}.a": "80", f"c.{ids['P1']}.b": "70", f"c.{ids['P2']}.a": "九十", f"c.{ids['P2']}.b": "60"}
        refused = client.post("/f/mark/grid", data=bad)
        assert refused.status_code == 422 and "所有行都没有保存" in refused.text and 'value="九十"' in refused.text
        assert state.records.list(mark, boss, ListQuery()).total == 0
        good = {**bad, f"c.{ids['P2']}.a": "90"}
        saved = client.post("/f/mark/grid", data=good, follow_redirects=False)
        assert saved.status_code == 303
        shown = page_text(client.get(saved.headers["location"]).text)
        assert "已保存 2 行" in shown and "150.0" in shown and "班内名次" in shown
        rows = {r.values["pupil"]: r for r in state.records.list(mark, boss, ListQuery()).records}
        assert (str(rows[ids["P1"]].values["total"]), str(rows[ids["P2"]].values["total"])) == ("150.0", "150.0")
        # Someone changes P1 meanwhile: the grid's stale row is reported, nothing overwritten.
        p1 = rows[ids["P1"]]
        assert state.records.update(mark, boss, p1.id, {"a": "81"}, p1.revision).ok
        stale = {**good, f"c.{ids['P1']}.a": "85", f"r.{ids['P1']}": str(p1.revision), f"r.{ids['P2']}": str(rows[ids["P2"]].revision)}
        conflict = client.post("/f/mark/grid", data=stale)
        assert conflict.status_code == 422 and "已被他人修改" in conflict.text
        assert state.records.get(mark, p1.id, boss).values["a"] == 81
