"""The 综合素质评价报告: an evaluation record printed as a PDF with its student's particulars (engine/printouts.py),
read back with pypdf; what the reader may not see is not printed."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.storage.models import Record
from tests.archives.support import SENDER_PEOPLE
from tests.archives.test_archives import _upload
from tests.certificates.support import pdf_text
from tests.engine.helpers import png_bytes
from tests.workflows.support import World, make_world

PEOPLE = {**SENDER_PEOPLE, "reg_far": ("registrar", "滨江区教育局/滨江中学")}


@pytest.fixture
def world(fresh_db_url: str, tmp_path: Path) -> Iterator[World]:
    made = make_world(fresh_db_url, tmp_path, PEOPLE)
    yield made
    made.state.db.dispose()


def evaluation(w: World) -> int:
    student = w.student(photo=None)
    registrar = w.principal("reg")
    form = w.state.definitions.forms["student"]
    current = w.state.records.get(form, student, registrar, "update")
    assert w.state.records.update(form, registrar, student, {"photo": _upload("p.png", "image/png", png_bytes(30, 40))},
                                  current.revision).ok
    values = {"student": student, "term": "2024-2025学年第一学期", "moral": "A", "academic": "B", "health": "A",
              "art": "C", "practice": "B", "conduct": "尊敬师长，团结同学"}
    made = w.state.records.create(w.state.definitions.forms["evaluation"], registrar, None, values)
    assert made.ok, made.issues
    return made.record_id  # type: ignore[return-value]


def test_report__title_student_and_evaluation(world: World) -> None:
    record = evaluation(world)
    response = world.login("reg").get(f"/f/evaluation/{record}/print")
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    text = pdf_text(response.content)
    for expected in ("综合素质评价报告", "示范区第一中学", "姓名：张三", "学籍号：G110105200805120018", "学期",
                     "2024-2025学年第一学期", "思想品德", "尊敬师长，团结同学", "打印日期"):
        assert expected in text, expected
    page = world.login("reg").get(f"/f/evaluation/{record}")
    assert f'href="/f/evaluation/{record}/print"' in page.text and "打印综合素质评价报告" in page.text


def test_report__masked_for_a_reader_who_sees_masked_values(world: World) -> None:
    record = evaluation(world)
    text = pdf_text(world.login("teacher").get(f"/f/evaluation/{record}/print").content)
    assert "姓名：张三" in text and "G110105200805120018" not in text and "学籍号：" in text


def test_report__out_of_scope_is_not_found(world: World) -> None:
    record = evaluation(world)
    assert world.login("reg_far").get(f"/f/evaluation/{record}/print").status_code == 404
    with world.state.db.read() as s:
        assert s.scalar(select(Record.id).where(Record.id == record)) == record
