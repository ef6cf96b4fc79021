"""Projections (engine/storage/projection.py) on SQLite and PostgreSQL: lists, filters, sorts and searches equal a
brute-force scan of the documents after creates, edits, moves, deletes and imports; the table follows the
definition through a rename, a type change, a new required field and a reload; masked fields cannot be probed."""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import inspect, select

from engine.documents import read_values
from engine.permissions import Principal
from engine.records import ListQuery, RecordWrite, StoredRecord
from engine.storage.models import ProjectionState, Record
from engine.storage.projection import projection_of, query_terms, tokens
from engine.validation import clean_record
from tests.engine.helpers import ORG, add_member, principal_of, write_definitions
from tests.support import build, unit_id
from web.state import AppState

FORM = """
key: pupil
title: 学生
unit: {level: class}
list:
  columns: [name, code, grade, score]
  filters: [grade, score, active]
  search: [name, code]
  sort: -score
sections:
  - key: main
    title: 基本信息
    fields:
      - {key: name, label: 姓名, type: text, required: true}
      - {key: code, label: 编号, type: text, unique: true}
      - {key: grade, label: 年级, type: choice, options: [高一, 高二, 高三]}
      - {key: score, label: 成绩, type: decimal}
      - {key: active, label: 在读, type: boolean}
      - {key: born, label: 出生日期, type: date}
"""
ROLE = "key: admin\nname: 管理员\nscope: all\nadmin: true\nforms:\n  '*':\n    actions: [create, read, update, delete]\n"
SCHOOL_ROLE = "key: teacher\nname: 教师\nscope: school\nforms:\n  pupil:\n    actions: [read]\n    masked: [code]\n"
UNITS = ORG + """
demo_units:
  - name: 区
    level: district
    children:
      - name: 甲校
        level: school
        children:
          - {name: 一班, level: class}
          - {name: 二班, level: class}
      - name: 乙校
        level: school
        children:
          - {name: 三班, level: class}
"""
SURNAMES = "张王李赵刘陈𠮷"
GIVEN = "小明华丽强伟芳𪚥一二"


@pytest.fixture
def pupils(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[AppState, Path]]:
    root = write_definitions(tmp_path / "definitions", forms={"pupil": FORM}, roles={"admin": ROLE, "teacher": SCHOOL_ROLE}, org=UNITS)
    _app, state = build(fresh_db_url, definitions=root, tmp=tmp_path)
    add_member(state, "boss", "admin", "区")
    add_member(state, "t1", "teacher", "区/甲校")
    yield state, root / "forms" / "pupil.yaml"
    state.db.dispose()


def _values(rng: random.Random, n: int) -> dict[str, str]:
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
    return {"name": name, "code": f"S{rng.randint(0, 99):02d}{n:04d}", "grade": rng.choice(["高一", "高二", "高三", ""]),
            "score": rng.choice(["", f"{rng.randint(0, 100)}", f"{rng.randint(0, 99)}.{rng.randint(0, 9)}"]),
            "active": rng.choice(["是", "否", ""]), "born": rng.choice(["", "2010-03-05", "2011-12-31"])}


def _all(state: AppState, principal: Principal) -> list[StoredRecord]:
    """Every record the principal may read, straight from the documents (no projection)."""
    form = state.definitions.forms["pupil"]
    query = state.records.read_query(form, principal, "read")
    with state.db.read() as s:
        return state.records.stored_rows(form, s.execute(query))


def _brute(records: list[StoredRecord], filters: dict[str, Any], search: str, sort: str, keys: tuple[str, ...]) -> list[int]:
    """The list as a person would compute it from the documents: equality filters, every search term found in
    one of the searchable fields (汉字 anywhere, letters and digits at the start of a word), sorted, ties by id."""
    def matches(record: StoredRecord) -> bool:
        for key, value in filters.items():
            if record.values.get(key) != value:
                return False
        for term in query_terms(search):
            if not any(_holds(record.values.get(k), term) for k in keys):
                return False
        return True

    found = [r for r in records if matches(r)]
    key = sort.lstrip("-")
    descending = sort.startswith("-")
    present = sorted((r for r in found if r.values.get(key) is not None), key=lambda r: (r.values[key], r.id), reverse=descending)
    missing = sorted((r for r in found if r.values.get(key) is None), key=lambda r: r.id, reverse=descending)
    return [r.id for r in present + missing] if descending else [r.id for r in missing + present]


def _holds(value: Any, term: tuple[str, ...]) -> bool:
    if value is None:
        return False
    if term[0].endswith("*"):
        return any(word.startswith(term[0][:-1]) for word in re.findall(r"[0-9a-z]+", str(value).lower()))
    wanted = term[0] if len(term) == 1 else term[0] + "".join(t[1] for t in term[1:])
    return wanted in str(value)


def _listed(state: AppState, principal: Principal, **query: Any) -> list[int]:
    form = state.definitions.forms["pupil"]
    page = state.records.list(form, principal, ListQuery(per_page=1000, **query))
    return [r.id for r in page.records]


def test_lists_equal_brute_force_after_random_writes(pupils) -> None:  # type: ignore[no-untyped-def]
    state, _yaml = pupils
    form = state.definitions.forms["pupil"]
    admin, teacher = principal_of(state, "boss"), principal_of(state, "t1")
    classes = [unit_id(state, "区/甲校/一班"), unit_id(state, "区/甲校/二班"), unit_id(state, "区/乙校/三班")]
    rng = random.Random(20261203)
    ids: list[int] = []
    for n in range(60):
        result = state.records.create(form, admin, rng.choice(classes), {k: v for k, v in _values(rng, n).items() if v})
        assert result.ok, result.issues
        ids.append(result.record_id)  # type: ignore[arg-type]
    for n in range(40):  # edits, moves and deletes
        record_id = rng.choice(ids)
        current = state.records.get(form, record_id, admin)
        if current is None:
            continue
        if n % 7 == 0:
            assert state.records.delete(form, admin, record_id)
            continue
        changes = {k: v for k, v in _values(rng, 1000 + n).items() if k != "code"}
        moved = rng.choice(classes) if n % 3 == 0 else None
        assert state.records.update(form, admin, record_id, changes, current.revision, unit_id=moved).ok

    everything, school = _all(state, admin), _all(state, teacher)
    assert len(school) < len(everything)
    checks = [({}, "", "-score"), ({}, "", "score"), ({"grade": "高二"}, "", "name"), ({"active": True}, "", "-born"),
              ({}, "小", "name"), ({}, "王小", "-score"), ({"grade": "高一"}, "张", "code"), ({}, "s1", "code"),
              ({}, "𠮷", "name"), ({}, "明 s", "-name")]
    for filters, search, sort in checks:
        typed = {k: "是" if v is True else str(v) for k, v in filters.items()}
        expected = _brute(everything, filters, search, sort, ("name", "code"))
        assert _listed(state, admin, filters=typed, search=search, sort=sort) == expected, (filters, search, sort)
    # A masked field is not searchable for the role that sees it masked; its rows stay in the school's scope.
    expected = _brute(school, {}, "小", "name", ("name",))
    assert _listed(state, teacher, search="小", sort="name") == expected
    assert _listed(state, teacher, search="s1") == []
    assert _listed(state, admin, search="s1")


def test_rows_follow_import_and_delete(pupils) -> None:  # type: ignore[no-untyped-def]
    state, _yaml = pupils
    form = state.definitions.forms["pupil"]
    admin = principal_of(state, "boss")
    writes = [RecordWrite(form, clean_record(form, {"name": f"导入{i}", "code": f"I{i}"}), unit_id=unit_id(state, "区/甲校/一班"),
                          submitted={"name": f"导入{i}", "code": f"I{i}"}) for i in range(5)]
    with state.db.write() as s:
        written = state.records.write_batch(s, admin, form, writes)
        s.commit()
    assert len(written) == 5
    assert sorted(_listed(state, admin, search="导入")) == sorted(w.record_id for w in writes)
    assert state.records.delete(form, admin, writes[0].record_id)  # type: ignore[arg-type]
    assert writes[0].record_id not in _listed(state, admin, search="导入")
    projection = projection_of(form, state.db.dialect)
    with state.db.read() as s:
        assert s.scalar(select(projection.table.c.record_id).where(projection.table.c.record_id == writes[0].record_id)) is None


def test_definition_changes__rename_type_change_new_required_field(pupils) -> None:  # type: ignore[no-untyped-def]
    state, pupil_yaml = pupils
    form = state.definitions.forms["pupil"]
    admin = principal_of(state, "boss")
    first = state.records.create(form, admin, unit_id(state, "区/甲校/一班"), {"name": "张三", "code": "A1", "score": "88"}).record_id
    assert not _listed(state, admin, incomplete=True)

    text = pupil_yaml.read_text(encoding="utf-8")
    text = (text.replace("{key: code, label: 编号, type: text, unique: true}", "{key: number, label: 编号, type: text, unique: true, renamed_from: code}")
                .replace("search: [name, code]", "search: [name, number]").replace("columns: [name, code, grade, score]", "columns: [name, number, grade, score]")
                .replace("{key: score, label: 成绩, type: decimal}", "{key: score, label: 成绩, type: integer}")
                .replace("{key: born, label: 出生日期, type: date}", "{key: born, label: 出生日期, type: date, required: true}"))
    pupil_yaml.write_text(text, encoding="utf-8")
    role_yaml = pupil_yaml.parent.parent / "roles" / "teacher.yaml"
    role_yaml.write_text(role_yaml.read_text(encoding="utf-8").replace("masked: [code]", "masked: [number]"), encoding="utf-8")
    assert state.reload().ok
    form = state.definitions.forms["pupil"]
    projection = projection_of(form, state.db.dialect)
    with state.db.engine.connect() as connection:
        columns = {c["name"]: c for c in inspect(connection).get_columns(projection.name)}
        state_row = connection.execute(select(ProjectionState.__table__).where(ProjectionState.form_key == "pupil")).one()
    assert "f_number" in columns and "f_code" not in columns and "t_number" in columns
    assert state_row.stale == 0 and state_row.rows_version == projection.rows_version
    assert _listed(state, admin, search="a1") == [first]  # the renamed column kept its search words
    assert _listed(state, admin, filters={"score": "88"}) == [first]  # rebuilt as an integer column
    assert _listed(state, admin, incomplete=True) == [first]  # the new required field is empty
    duplicate = state.records.create(form, admin, unit_id(state, "区/甲校/一班"), {"name": "李四", "number": "A1", "born": "2010-01-01"})
    assert [i.code for i in duplicate.issues] == ["unique"]


def test_startup_builds_missing_rows_from_documents(pupils) -> None:  # type: ignore[no-untyped-def]
    """Records written before their form had a projection (an upgrade) get rows at the next start."""
    state, _yaml = pupils
    form = state.definitions.forms["pupil"]
    admin = principal_of(state, "boss")
    made = [state.records.create(form, admin, unit_id(state, "区/乙校/三班"), {"name": f"旧{i}", "code": f"O{i}"}).record_id for i in range(3)]
    projection = projection_of(form, state.db.dialect)
    with state.db.write() as s:
        s.execute(projection.table.delete())
        s.commit()
    assert _listed(state, admin) == []
    assert state.reload().ok
    assert sorted(_listed(state, admin)) == sorted(made)
    with state.db.read() as s:
        documents = {row.id: read_values(form, row.data) for row in s.execute(select(Record.id, Record.data))}
    assert {documents[i]["name"] for i in made} == {"旧0", "旧1", "旧2"}


def test_tokens__cjk_bigrams_and_words() -> None:
    assert tokens("王小明 G2025") == ["王", "小", "明", "王小", "小明", "g2025"]
    assert query_terms("小明 2025") == [("小明",), ("2025*",)]
    assert query_terms("王小明") == [("王小", "小明")]
    assert query_terms("𠮷") == [("𠮷",)]


def test_a_field_made_searchable__its_existing_records_found(pupils) -> None:  # type: ignore[no-untyped-def]
    """Adding a field to `list.search` gives it a search column; the rows already there are computed again, so that
    records saved before the change are found by it too (not only those saved after)."""
    state, pupil_yaml = pupils
    form = state.definitions.forms["pupil"]
    admin = principal_of(state, "boss")
    before = state.records.create(form, admin, unit_id(state, "区/甲校/一班"), {"name": "赵六", "code": "Z9"}).record_id
    assert _listed(state, admin, search="搜索词") == []
    text = pupil_yaml.read_text(encoding="utf-8").replace("search: [name, code]", "search: [name, code, grade]")
    pupil_yaml.write_text(text.replace("{key: grade, label: 年级, type: choice, options: [高一, 高二, 高三]}",
                                       "{key: grade, label: 年级, type: text}"), encoding="utf-8")
    assert state.reload().ok
    form = state.definitions.forms["pupil"]
    state.records.update(form, admin, before, {"grade": "高一"}, base_revision=1)
    after = state.records.create(form, admin, unit_id(state, "区/甲校/一班"), {"name": "钱七", "grade": "高一"}).record_id
    assert sorted(_listed(state, admin, search="高一")) == sorted([before, after])
    # …and a field made searchable without any other change to it
    text = pupil_yaml.read_text(encoding="utf-8").replace("search: [name, code, grade]", "search: [grade]")
    pupil_yaml.write_text(text, encoding="utf-8")
    assert state.reload().ok
    text = pupil_yaml.read_text(encoding="utf-8").replace("search: [grade]", "search: [grade, name]")
    pupil_yaml.write_text(text, encoding="utf-8")
    assert state.reload().ok
    assert _listed(state, admin, search="赵六") == [before]


def test_rows_digest_is_the_same_in_every_process() -> None:
    """The digest a projection row carries must not depend on the process: one that differs makes every start and
    every command recompute the form's rows (a `max: 今天` date limit once put a function's address in it)."""
    import os
    import subprocess
    import sys

    from tests.support import DEFINITIONS, REPO

    script = ("from engine.loader import load_definitions; from engine.storage.projection import projection_of; "
              f"d = load_definitions({str(DEFINITIONS)!r}); "
              "print(sorted((k, projection_of(f, 'sqlite').rows_version) for k, f in d.forms.items()))")
    runs = {subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(runs) == 1, runs
