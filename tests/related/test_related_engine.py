"""Links, child forms and figures across records, through the record service, on SQLite and PostgreSQL: every
rank and group figure equals a brute-force computation after creates, imports, edits, deletes and transfers."""
from __future__ import annotations

import io
import random
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Iterator

import pytest
from openpyxl import Workbook

from engine.fields import LinkRef
from engine.records import ListQuery
from engine.records.links import InUse
from tests.engine.helpers import add_member, principal_of, write_definitions
from tests.excel.helpers import import_file
from tests.related.world import FORMS, ROLES, UNITS
from tests.support import build, unit_id
from web.state import AppState


@pytest.fixture
def state(fresh_db_url: str, tmp_path: Path) -> Iterator[AppState]:
    root = write_definitions(tmp_path / "definitions", forms=FORMS, roles=ROLES, org=UNITS)
    _app, state = build(fresh_db_url, definitions=root, tmp=tmp_path)
    add_member(state, "boss", "admin", "区")
    add_member(state, "t1", "teacher", "区/一校/一班")
    add_member(state, "shy", "shy", "区")
    yield state
    state.db.dispose()


def _pupil(state: AppState, code: str, unit: str) -> int:
    form, boss = state.definitions.forms["pupil"], principal_of(state, "boss")
    result = state.records.create(form, boss, unit_id(state, unit), {"code": code, "name": f"学员{code}"})
    assert result.ok, result.issues
    return result.record_id  # type: ignore[return-value]


def _exam(state: AppState, name: str) -> int:
    result = state.records.create(state.definitions.forms["exam"], principal_of(state, "boss"), unit_id(state, "区/一校"), {"name": name})
    assert result.ok, result.issues
    return result.record_id  # type: ignore[return-value]


def test_a_child_record_takes_its_parents_unit_and_names_links_by_unique_values(state: AppState) -> None:
    mark, boss = state.definitions.forms["mark"], principal_of(state, "boss")
    pupil = _pupil(state, "P1", "区/一校/二班")
    _exam(state, "期中")
    # No unit given: the mark sits where its pupil is. Links named by unique values (an Excel cell, no JavaScript).
    created = state.records.create(mark, boss, None, {"pupil": "P1", "exam": "期中", "a": "50", "b": "60.5"})
    assert created.ok, created.issues
    stored = state.records.get(mark, created.record_id, boss)  # type: ignore[arg-type]
    assert stored.unit_id == unit_id(state, "区/一校/二班")
    assert stored.values["pupil"] == pupil and stored.values["total"] == Decimal("110.5")
    titled = state.records.titled(boss, mark, [stored])[0]
    assert str(titled.values["pupil"]) == "学员P1" and titled.values["pupil"].href == f"/f/pupil/{pupil}"
    missing = state.records.create(mark, boss, None, {"pupil": "P404", "exam": "期中"})
    assert [(i.code, i.path) for i in missing.issues] == [("link_missing", "pupil")]


def test_links_reach_only_what_the_user_may_read(state: AppState) -> None:
    mark, teacher = state.definitions.forms["mark"], principal_of(state, "t1")
    mine, theirs = _pupil(state, "A1", "区/一校/一班"), _pupil(state, "B1", "区/一校/二班")
    exam = _exam(state, "期末")
    assert state.records.create(mark, teacher, None, {"pupil": mine, "exam": exam, "a": "1"}).ok
    # Another class's pupil, by id or by code, reads as absent: nothing confirms that it exists.
    for given in (theirs, "B1"):
        refused = state.records.create(mark, teacher, None, {"pupil": given, "exam": exam, "a": "1"})
        assert [(i.code, i.path) for i in refused.issues] == [("link_missing", "pupil")], given


def test_deleting_a_linked_record_is_refused_with_what_links_to_it(state: AppState) -> None:
    mark, pupil_form, boss = state.definitions.forms["mark"], state.definitions.forms["pupil"], principal_of(state, "boss")
    pupil = _pupil(state, "D1", "区/一校/一班")
    exam = _exam(state, "小测")
    made = state.records.create(mark, boss, None, {"pupil": pupil, "exam": exam, "a": "1"})
    with pytest.raises(InUse) as refused:
        state.records.delete(pupil_form, boss, pupil)
    assert "得分（学员）1 条" in refused.value.message
    assert state.records.delete(mark, boss, made.record_id)  # type: ignore[arg-type]
    assert state.records.delete(pupil_form, boss, pupil)


def _xlsx(header: list[str], rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _brute_force(state: AppState) -> dict[int, dict[str, object]]:
    """Every mark's figures, from the stored documents and units alone."""
    mark, boss = state.definitions.forms["mark"], principal_of(state, "boss")
    rows = state.records.list(mark, boss, ListQuery(per_page=10_000)).records
    class_of = {r.id: r.unit_path for r in rows}
    school_of = {r.id: r.unit_path.rsplit("/", 2)[0] for r in rows}
    expected: dict[int, dict[str, object]] = {}
    for r in rows:
        exam, total = r.values["exam"], r.values["total"]
        same_class = [o for o in rows if o.values["exam"] == exam and class_of[o.id] == class_of[r.id]]
        same_school = [o for o in rows if o.values["exam"] == exam and school_of[o.id] == school_of[r.id]]
        totals = [o.values["total"] for o in same_class if o.values["total"] is not None]
        figures: dict[str, object] = {
            "class_rank": None if total is None else 1 + sum(1 for t in totals if t > total),
            "school_rank": None if total is None else 1 + sum(1 for o in same_school if o.values["total"] is not None and o.values["total"] > total),
            "class_avg": (sum(totals) / len(totals)).quantize(Decimal("0.1"), ROUND_HALF_UP) if totals else None,
            "class_best": max(totals) if totals else None,
            "pass_rate": (Decimal(100 * sum(1 for t in totals if t >= 120)) / len(totals)).quantize(Decimal("0.1"), ROUND_HALF_UP) if totals else None,
        }
        expected[r.id] = figures
    return expected


def _figures(state: AppState) -> dict[int, dict[str, object]]:
    mark, boss = state.definitions.forms["mark"], principal_of(state, "boss")
    rows = state.records.list(mark, boss, ListQuery(per_page=10_000)).records
    state.records.figured(boss, mark, rows)
    return {r.id: {k: v for k, v in r.figures.items()} for r in rows}


def test_figures_equal_brute_force_after_random_creates_imports_edits_deletes_and_transfers(state: AppState) -> None:
    rng = random.Random(16)
    mark, pupil_form, boss = state.definitions.forms["mark"], state.definitions.forms["pupil"], principal_of(state, "boss")
    classes = ["区/一校/一班", "区/一校/二班", "区/二校/甲班"]
    pupils = [_pupil(state, f"R{i}", classes[i % 3]) for i in range(12)]
    exams = [_exam(state, "一测"), _exam(state, "二测")]
    marks: list[int] = []
    imported = 0
    for step in range(60):
        action = rng.random()
        if 0.4 <= action < 0.5:  # an import of a few marks, pupils and exams named as a school's file names them
            rows = [[f"R{pupils.index(rng.choice(pupils))}", rng.choice(["一测", "二测"]), rng.choice([None, 45, 61.5, 75]),
                     rng.choice([50, 60, 88])] for _ in range(rng.randint(1, 4))]
            before = {r.id for r in state.records.list(mark, boss, ListQuery(per_page=10_000)).records}
            job = import_file(state, "boss", _xlsx(["学员", "测验", "甲", "乙"], rows), form="mark", filename="成绩.xlsx",
                              mode="insert", error_mode="all_or_nothing")
            assert job.status == "done" and job.count_new == len(rows), (job.status, job.message)
            after = {r.id for r in state.records.list(mark, boss, ListQuery(per_page=10_000)).records}
            assert len(after - before) == len(rows)
            marks += sorted(after - before)
            imported += 1
        elif action < 0.5 or not marks:
            values = {"pupil": rng.choice(pupils), "exam": rng.choice(exams), "a": str(rng.choice([None, 40, 55.5, 60, 70, 70])),
                      "b": str(rng.choice([50, 60, 64.5, 80]))}
            values = {k: v for k, v in values.items() if v != "None"}
            result = state.records.create(mark, boss, None, values)
            assert result.ok, result.issues
            marks.append(result.record_id)  # type: ignore[arg-type]
        elif action < 0.75:
            target = state.records.get(mark, rng.choice(marks), boss)
            assert state.records.update(mark, boss, target.id, {"a": str(rng.choice([10, 60, 90]))}, target.revision).ok
        elif action < 0.9:
            gone = marks.pop(rng.randrange(len(marks)))
            assert state.records.delete(mark, boss, gone)
        else:  # a pupil changes class; their marks follow
            moved = state.records.get(pupil_form, rng.choice(pupils), boss)
            assert state.records.update(pupil_form, boss, moved.id, {}, moved.revision, unit_id=unit_id(state, rng.choice(classes))).ok
        if step % 10 == 9:
            assert _figures(state) == _brute_force(state), step
    assert _figures(state) == _brute_force(state) and imported >= 3
    # Sorting by a rank is sorting by its number.
    exam = exams[0]
    by_rank = state.records.list(mark, boss, ListQuery(filters={"exam": str(exam)}, sort="school_rank", per_page=500)).records
    totals = [r.values["total"] for r in by_rank if r.values["total"] is not None]
    assert totals == sorted(totals, reverse=True)


def test_a_figure_is_not_shown_to_a_role_that_may_not_see_its_number(state: AppState) -> None:
    mark, boss, shy = state.definitions.forms["mark"], principal_of(state, "boss"), principal_of(state, "shy")
    _pupil(state, "S1", "区/一校/一班")
    _exam(state, "隐")
    made = state.records.create(mark, boss, None, {"pupil": "S1", "exam": "隐", "a": "99"})
    seen = state.records.figured(shy, mark, [state.records.get(mark, made.record_id, shy)])[0]  # type: ignore[arg-type]
    assert seen.figures == {}
    seen = state.records.figured(boss, mark, [state.records.get(mark, made.record_id, boss)])[0]  # type: ignore[arg-type]
    assert seen.figures["class_rank"] == 1 and seen.figures["class_avg"] == Decimal("99.0")
