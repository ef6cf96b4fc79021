"""What large databases need (issue 17), checked on small ones, SQLite and PostgreSQL: counts exact below the limit
and estimated (never below what is known) above it, exports streamed in the list's order, masked fields not
searchable, numbers that run out refused, the org tree read again only after it changed, statistics gathered."""
from __future__ import annotations

from typing import Iterator

import pytest
from sqlalchemy import text

import engine.org as org
import engine.records.service as records_service
from engine.bootstrap import bootstrap
from engine.messages import render
from engine.org import OrgTree
from engine.org_units import OrgUnitService
from engine.records import ListQuery
from engine.storage.db import gather_statistics
from engine.storage.models import Sequence
from tests.engine.helpers import BACKENDS, add_member, database_url, principal_of, student_values
from tests.engine.test_records import World, make_world, saved
from tests.support import DISTRICT, SCHOOL


@pytest.fixture(scope="module", params=BACKENDS, ids=["sqlite", "pg"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """40 students in one class (half 男, half 女), a bureau user of their district."""
    tmp = tmp_path_factory.mktemp("scale")
    with database_url(request.param, tmp) as url:
        made = make_world(url, tmp)
        add_member(made.state, "bureau_a", "bureau", DISTRICT)
        add_member(made.state, "admin_a", "sysadmin", DISTRICT)
        for serial in range(1, 41):
            saved(made.create(student_values(500 + serial)))
        yield made
        made.state.db.dispose()


def _all(world: World, query: ListQuery) -> list[int]:
    """Every id of a list, page by page (the brute force the other ways are checked against)."""
    ids, page = [], 1
    while True:
        found = world.service.list(world.form, world.registrar, ListQuery(**{**query.__dict__, "page": page, "per_page": 7}))
        ids += [r.id for r in found.records]
        if not found.records:
            return ids
        page += 1


def test_count__exact_below_the_limit(world: World) -> None:
    exact = world.service.list(world.form, world.registrar, ListQuery())
    counted = world.service.list(world.form, world.registrar, ListQuery(count_limit=10_000))
    assert (counted.total, counted.capped, counted.estimated) == (exact.total, False, False)
    assert exact.total == len(_all(world, ListQuery())) >= 40


def test_count__estimated_above_the_limit_never_below_it(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records_service, "ESTIMATE_SAMPLE", 12)
    monkeypatch.setattr(records_service, "ESTIMATE_HITS", 3)
    for query in (ListQuery(), ListQuery(filters={"gender": "女"})):
        exact = len(_all(world, query))
        page = world.service.list(world.form, world.registrar, ListQuery(**{**query.__dict__, "count_limit": 5}))
        assert page.capped and len(page.records) == min(20, exact)
        if page.estimated:
            assert page.total > 5 and exact / 3 <= page.total <= exact * 3, (page.total, exact)
        else:  # a sample too thin to say more: "超过 5 条"
            assert page.total == 5
        again = world.service.list(world.form, world.registrar, ListQuery(**{**query.__dict__, "count_limit": 5, "page": 2}))
        assert (again.total, again.estimated) == (page.total, page.estimated)  # the same figure on every page


def test_count__a_range_no_wider_than_the_sample_is_counted_exactly(world: World) -> None:
    exact = len(_all(world, ListQuery(filters={"gender": "男"})))
    page = world.service.list(world.form, world.registrar, ListQuery(filters={"gender": "男"}, count_limit=3))
    assert (page.total, page.capped, page.estimated) == (exact, False, False)


@pytest.mark.parametrize("sort", ["", "name", "-name", "gender", "-enrol_year"])
def test_export_ids_and_stream__the_list_in_its_order(world: World, sort: str) -> None:
    query = ListQuery(sort=sort)
    listed = _all(world, query)
    ids = world.service.matching_ids(world.form, world.registrar, query, limit=10_000)
    assert ids == listed
    streamed = list(world.service.stream(world.form, ids, chunk=7))
    assert [r.id for r in streamed] == listed
    assert all(r.values["name"] for r in streamed)
    assert world.service.matching_ids(world.form, world.registrar, query, limit=5) == listed[:6]  # one more: too many


def test_masked_fields__not_searchable_by_a_role_that_sees_them_masked(world: World) -> None:
    record = world.service.list(world.form, world.registrar, ListQuery(per_page=1)).records[0]
    student_no = record.values["student_no"]  # 学籍号: sensitive; the bureau sees it masked
    bureau = principal_of(world.state, "bureau_a")
    assert [r.id for r in world.service.list(world.form, world.registrar, ListQuery(search=student_no)).records] == [record.id]
    assert world.service.list(world.form, bureau, ListQuery(search=student_no)).records == []
    assert world.service.list(world.form, bureau, ListQuery(search=student_no[1:9])).records == []
    # …while what it may see stays searchable for it
    assert record.id in [r.id for r in world.service.list(world.form, bureau, ListQuery(search=record.values["school_no"])).records]
    # and a filter or sort on the masked field is ignored, not answered
    filtered = world.service.list(world.form, bureau, ListQuery(filters={"id_card": record.values["id_card"]}))
    assert filtered.total == world.service.list(world.form, bureau, ListQuery()).total


def test_numbers_that_run_out__refused_at_save_never_longer(world: World) -> None:
    with world.state.db.write() as s:  # 99,999 学号 of 2031 already given: {enrol_year}{seq:5} has no more
        s.add(Sequence(scope="student:school_no:2031", last_value=99_999))
        s.commit()
    result = world.create(student_values(599, enrol_year="2031"))
    assert not result.ok and [i.code for i in result.issues] == ["sequence_exhausted"]
    message = render(result.issues[0], world.form.fields["school_no"].label)
    assert "学号" in message and "2031" in message and "99,999" in message, message
    other = world.create(student_values(598, enrol_year="2032"))  # another year still has numbers
    record = world.service.get(world.form, saved(other), world.registrar)
    assert record is not None and record.values["school_no"] == "203200001"


def test_org_tree__read_again_only_after_a_change(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OrgTree, "CHECK_SECONDS", 0.0)
    reads = []
    real = org.all_units
    monkeypatch.setattr(org, "all_units", lambda s: reads.append(1) or real(s))
    here, elsewhere = OrgTree(world.state.db), OrgTree(world.state.db)  # two processes
    first = here.units()
    assert here.units() is first and elsewhere.units() == first and len(reads) == 2
    admin = principal_of(world.state, "admin_a")
    school = next(u for u in first if u.full_name == SCHOOL)
    grade = OrgUnitService(world.state.db).create(admin, world.state.definitions, school.id, "初一", "grade")
    changed = here.units()
    assert len(reads) == 3 and next(u for u in changed if u.id == grade).full_name == f"{SCHOOL}/初一"
    OrgUnitService(world.state.db).rename(admin, grade, "初一年级")
    assert next(u for u in elsewhere.units() if u.id == grade).full_name == f"{SCHOOL}/初一年级"
    OrgUnitService(world.state.db).delete(admin, grade)
    assert grade not in {u.id for u in here.units()}
    assert here.units() is here.units()  # no change since: the tree kept


def test_bootstrap__demo_units_not_read_on_a_database_with_units(world: World) -> None:
    def unread() -> list[object]:
        raise AssertionError("org.yaml read again")

    assert bootstrap(world.state.db, world.state.definitions, unread) is None


def test_gather_statistics(world: World) -> None:
    gather_statistics(world.state.db)
    with world.state.db.read() as s:
        if world.state.db.dialect == "sqlite":
            assert s.execute(text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'p_student'")).scalar_one() > 0
        else:
            analysed = s.execute(text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'p_student' "
                                      "AND schemaname = current_schema()")).scalar()
            assert analysed is not None
    assert isinstance(gather_statistics(world.state.db, stale_only=True), list)



@pytest.mark.parametrize("sort", ["", "name", "-name", "gender", "-gender", "enrol_year", "-school_no"])
def test_pages_walking_the_sort_index__the_same_records(world: World, sort: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite walks the sort column's index past a number of matches (RecordService._walk_sort_index); the pages
    are the same as when the matches are sorted."""
    filters = [{}, {"gender": "女"}, {"gender": "男", "grade": "高一"}]
    expected = {i: _all(world, ListQuery(sort=sort, filters=f)) for i, f in enumerate(filters)}
    monkeypatch.setattr(records_service, "SORT_BUDGET", 10)
    for i, f in enumerate(filters):
        assert _all(world, ListQuery(sort=sort, filters=f)) == expected[i]
        bureau = principal_of(world.state, "bureau_a")
        assert [r.id for r in world.service.list(world.form, bureau, ListQuery(sort=sort, filters=f, per_page=50)).records] \
            == expected[i][:50]
