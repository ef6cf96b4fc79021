"""RecordService refuses by itself: each use case called directly, as a principal who may not, is refused
(no controller in between), on SQLite and PostgreSQL."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from engine.records import RecordWrite
from engine.refusals import NotFound, NotPermitted, UnitNotAllowed
from engine.validation import clean_record
from tests.engine.helpers import BACKENDS, add_member, database_url, principal_of
from tests.support import CLASS_1, OTHER_DISTRICT_CLASS, SCHOOL, build, unit_id, valid_id_number, valid_student
from web.state import AppState

OTHER_SCHOOL = "滨江区教育局/滨江中学"


@pytest.fixture(scope="module", params=BACKENDS, ids=["sqlite", "pg"])
def state(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppState]:
    with database_url(request.param, tmp_path_factory.mktemp("refusals")) as url:
        _app, state = build(url, tmp=tmp_path_factory.mktemp("defs"))
        add_member(state, "reg", "registrar", SCHOOL)
        add_member(state, "reg_other", "registrar", OTHER_SCHOOL)
        add_member(state, "teacher", "teacher", SCHOOL)
        yield state
        state.db.dispose()


def _student(state: AppState, id_seq: int) -> int:
    values = valid_student(id_card=_id(id_seq))
    result = state.records.create(state.definitions.forms["student"], principal_of(state, "reg"), unit_id(state, CLASS_1), values)
    assert result.ok, result.issues
    assert result.record_id is not None
    return result.record_id


def _id(seq: int) -> str:
    return valid_id_number(f"11010520080512{seq:02d}1")


def test_create__role_without_create_refused(state: AppState) -> None:
    form = state.definitions.forms["student"]
    with pytest.raises(NotPermitted):
        state.records.create(form, principal_of(state, "teacher"), unit_id(state, CLASS_1), valid_student(id_card=_id(1)))


def test_create__unit_outside_scope_refused(state: AppState) -> None:
    form = state.definitions.forms["student"]
    with pytest.raises(UnitNotAllowed):
        state.records.create(form, principal_of(state, "reg"), unit_id(state, OTHER_DISTRICT_CLASS), valid_student(id_card=_id(2)))


def test_create__unit_of_another_level_refused(state: AppState) -> None:
    form = state.definitions.forms["student"]
    with pytest.raises(UnitNotAllowed):
        state.records.create(form, principal_of(state, "reg"), unit_id(state, SCHOOL), valid_student(id_card=_id(3)))


def test_update__record_outside_scope_reads_as_absent(state: AppState) -> None:
    form = state.definitions.forms["student"]
    record_id = _student(state, 4)
    with pytest.raises(NotFound):
        state.records.update(form, principal_of(state, "reg_other"), record_id, {"name": "改名"}, 1)


def test_update__move_to_unit_outside_scope_refused(state: AppState) -> None:
    form = state.definitions.forms["student"]
    record_id = _student(state, 5)
    with pytest.raises(UnitNotAllowed):
        state.records.update(form, principal_of(state, "reg"), record_id, {}, 1, unit_id=unit_id(state, OTHER_DISTRICT_CLASS))


def test_prepare_update__role_without_update_refused(state: AppState) -> None:
    form = state.definitions.forms["student"]
    record_id = _student(state, 6)
    current = state.records.get(form, record_id, principal_of(state, "reg"))
    assert current is not None
    with state.db.write() as s, pytest.raises(NotPermitted):
        state.records.prepare_update(s, form, principal_of(state, "teacher"), current, {"name": "改名"}, current.revision)


def test_delete__role_without_delete_refused(state: AppState) -> None:
    form = state.definitions.forms["student"]
    record_id = _student(state, 7)
    with pytest.raises(NotPermitted):
        state.records.delete(form, principal_of(state, "teacher"), record_id)
    assert state.records.get(form, record_id, principal_of(state, "reg")) is not None


def test_write_batch__role_without_create_refused_nothing_written(state: AppState) -> None:
    form = state.definitions.forms["student"]
    write = RecordWrite(form, clean_record(form, valid_student(id_card=_id(8))), unit_id=unit_id(state, CLASS_1))
    with state.db.write() as s, pytest.raises(NotPermitted):
        state.records.write_batch(s, principal_of(state, "teacher"), form, [write])


def test_write_batch__unit_outside_scope_fails_that_write_only(state: AppState) -> None:
    form = state.definitions.forms["student"]
    inside = RecordWrite(form, clean_record(form, valid_student(id_card=_id(9))), unit_id=unit_id(state, CLASS_1))
    outside = RecordWrite(form, clean_record(form, valid_student(id_card=_id(10))), unit_id=unit_id(state, OTHER_DISTRICT_CLASS))
    with state.db.write() as s:
        written = state.records.write_batch(s, principal_of(state, "reg"), form, [inside, outside])
        s.commit()
    assert written == [inside]
    assert [i.code for i in outside.issues] == ["unit_not_allowed"] and outside.record_id is None
    assert inside.record_id is not None and state.records.get(form, inside.record_id, principal_of(state, "reg")) is not None


def test_write_batch__record_outside_update_scope_fails_that_write(state: AppState) -> None:
    form = state.definitions.forms["student"]
    record_id = _student(state, 11)
    current = state.records.get(form, record_id, principal_of(state, "reg"))
    assert current is not None
    cleaned = clean_record(form, dict(current.values, name="别校改名"))
    write = RecordWrite(form, cleaned, current=current, base_revision=current.revision, submitted={"name": "别校改名"})
    with state.db.write() as s:
        assert state.records.write_batch(s, principal_of(state, "reg_other"), form, [write]) == []
        s.commit()
    assert [i.code for i in write.issues] == ["not_found"]
    stored = state.records.get(form, record_id, principal_of(state, "reg"))
    assert stored is not None and stored.values["name"] != "别校改名"
