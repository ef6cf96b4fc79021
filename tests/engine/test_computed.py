"""Computed fields (`compute:`): worked out by the one validator on every save — web, import, workflow effect —,
stored, read-only for everyone, recomputed when a formula changes; circles of references refused at their line."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select

from engine.records import ListQuery, RecordWrite
from engine.storage.models import AuditEntry
from engine.validation import clean_record
from tests.engine.helpers import ORG, add_member, assert_definition, locate, principal_of, write_definitions
from tests.support import build, unit_id
from web.state import AppState

FORM = """
key: score
title: 成绩
list:
  columns: [name, total, average, level]
  filters: [level]
  sort: -total
sections:
  - key: main
    title: 成绩
    fields:
      - {key: name, label: 姓名, type: text, required: true}
      - {key: chinese, label: 语文, type: decimal}
      - {key: math, label: 数学, type: decimal}
      - {key: english, label: 英语, type: decimal}
      - {key: total, label: 总分, type: decimal, compute: "sum(chinese, math, english)"}
      - {key: average, label: 平均分, type: decimal, places: 1, compute: "avg(chinese, math, english)"}
      - {key: level, label: 等级, type: text, compute: "'优秀' if average >= 90 else '合格' if average >= 60 else '不合格'"}
"""
ROLE = "key: admin\nname: 管理员\nscope: all\nadmin: true\nforms:\n  '*':\n    actions: [create, read, update, delete]\n"
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


@pytest.fixture
def scores(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[AppState, Path]]:
    root = write_definitions(tmp_path / "definitions", forms={"score": FORM}, roles={"admin": ROLE}, org=UNITS)
    _app, state = build(fresh_db_url, definitions=root, tmp=tmp_path)
    add_member(state, "boss", "admin", "区")
    yield state, root / "forms" / "score.yaml"
    state.db.dispose()


def test_saved_value_is_the_formulas_and_follows_its_inputs(scores) -> None:  # type: ignore[no-untyped-def]
    state, _yaml = scores
    form, admin, unit = state.definitions.forms["score"], principal_of(state, "boss"), unit_id(state, "区/学校/一班")
    created = state.records.create(form, admin, unit, {"name": "张三", "chinese": "88.5", "math": "93", "english": "96"})
    assert created.ok, created.issues
    record = state.records.get(form, created.record_id, admin)  # type: ignore[arg-type]
    assert (record.values["total"], record.values["average"], record.values["level"]) == (Decimal("277.5"), Decimal("92.5"), "优秀")
    assert record.data["total"] == "277.5"  # stored in the document, as typed values are
    assert state.records.update(form, admin, record.id, {"english": "30"}, record.revision).ok
    again = state.records.get(form, record.id, admin)
    assert (again.values["total"], again.values["average"], again.values["level"]) == (Decimal("211.5"), Decimal("70.5"), "合格")
    # Lists filter and sort by computed values like any other.
    assert [r.id for r in state.records.list(form, admin, ListQuery(filters={"level": "合格"})).records] == [record.id]


def test_a_computed_value_cannot_be_typed(scores) -> None:  # type: ignore[no-untyped-def]
    state, _yaml = scores
    form, admin, unit = state.definitions.forms["score"], principal_of(state, "boss"), unit_id(state, "区/学校/一班")
    result = state.records.create(form, admin, unit, {"name": "李四", "chinese": "60", "total": "999"})
    assert [(i.code, i.path) for i in result.issues] == [("not_writable", "total")]


def test_batch_writes_store_the_same_values(scores) -> None:  # type: ignore[no-untyped-def]
    state, _yaml = scores
    form, admin, unit = state.definitions.forms["score"], principal_of(state, "boss"), unit_id(state, "区/学校/一班")
    raw = {"name": "王五", "chinese": "70", "math": "80"}
    write = RecordWrite(form, clean_record(form, raw), unit_id=unit, submitted=raw)
    with state.db.write() as s:
        assert state.records.write_batch(s, admin, form, [write]) == [write]
        s.commit()
    stored = state.records.get(form, write.record_id, admin)  # type: ignore[arg-type]
    assert (stored.values["total"], stored.values["average"]) == (Decimal("150"), Decimal("75.0"))


def test_formula_change__reload_recomputes_stored_values_with_an_audit_entry(scores) -> None:  # type: ignore[no-untyped-def]
    state, score_yaml = scores
    form, admin, unit = state.definitions.forms["score"], principal_of(state, "boss"), unit_id(state, "区/学校/一班")
    ids = [state.records.create(form, admin, unit, {"name": f"学生{i}", "chinese": str(60 + i), "math": "80"}).record_id for i in range(3)]
    score_yaml.write_text(score_yaml.read_text(encoding="utf-8").replace(
        'compute: "sum(chinese, math, english)"', 'compute: "sum(chinese, math * 2, english)"'), encoding="utf-8")
    outcome = state.reload()
    assert outcome.ok and any("3 条记录" in note for note in outcome.notes), outcome
    form = state.definitions.forms["score"]
    assert [state.records.get(form, i, admin).values["total"] for i in ids] == [Decimal("220"), Decimal("221"), Decimal("222")]
    with state.db.read() as s:
        notes = list(s.scalars(select(AuditEntry.note).where(AuditEntry.record_id == ids[0]).order_by(AuditEntry.id)))
    assert notes[-1] == "计算公式已更改，按新公式重新计算"
    assert [r.id for r in state.records.list(form, admin, ListQuery(sort="-total")).records] == ids[::-1]


def test_circle_of_computed_fields__refused_at_its_line(tmp_path: Path) -> None:
    form = """
key: t
title: 测试
sections:
  - key: main
    title: 主要
    fields:
      - {key: a, label: 甲, type: integer, compute: "b + 1"}
      - {key: b, label: 乙, type: integer, compute: "a + 1"}
      - {key: code, label: 编号, type: generated, pattern: "{code}-{seq:3}"}
"""
    errors = assert_definition(tmp_path, form=form, errors__count=2, errors__contains=["字段之间循环引用：甲 → 乙 → 甲"])
    where = locate(form, '"b + 1"')
    assert any(e.startswith(f"forms/t.yaml:{where}") for e in errors), errors
    assert any("编号 → 编号" in e for e in errors), errors


def test_a_field_named_like_a_function__said_so(tmp_path: Path) -> None:
    form = """
key: t
title: 测试
sections:
  - key: main
    title: 主要
    fields:
      - {key: avg, label: 平均, type: decimal}
      - {key: x, label: 乙, type: decimal, compute: "avg(avg, 1)"}
"""
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=["字段“avg”与函数 avg() 同名"])
