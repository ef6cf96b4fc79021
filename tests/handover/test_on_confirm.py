"""What the receiving school gets when it confirms a handover (`hand_over.on_confirm.create`): its own 学籍异动记录
升学转入, written through RecordService in the confirming transaction, at the receiving school and linked to the
student; nothing when it declines, and nothing at all when the record is refused."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from sqlalchemy import select

from engine.records import ListQuery
from engine.storage.models import AuditEntry, Record
from tests.handover.support import RECEIVING_CLASS, RECEIVING_SCHOOL, graduate_with_children, handovers, send_on, unit_id
from tests.support import DEFINITIONS
from tests.workflows.support import PEOPLE, World, make_world


def changes(w: World, username: str) -> list[tuple[str, str, str, dt.date]]:
    """The 学籍异动记录 the user reads: (name, kind, school, date)."""
    form = w.state.definitions.forms["status_change"]
    found = w.state.records.list(form, w.principal(username), ListQuery(per_page=100)).records
    return sorted((r.values["name"], r.values["kind"], r.unit_name, r.values["date"]) for r in found)


def status_change_rows(w: World) -> list[Record]:
    with w.state.db.read() as s:
        return list(s.scalars(select(Record).where(Record.form_key == "status_change").order_by(Record.id)))


GRADUATED = ("张三", "毕业", "示范区第一中学", dt.date(2026, 6, 30))


def test_confirm__the_receiving_school_registers_its_own_status_change(world) -> None:
    w = world("reg", "bureau", "reg_in", "bureau_in")
    student = graduate_with_children(w)
    send_on(w, student)
    assert changes(w, "reg_in") == []  # nothing at the receiver before it confirms
    (pending,) = handovers(w)
    done = w.login("reg_in").post(f"/handovers/{pending.id}/confirm", {"unit": str(unit_id(w.state, RECEIVING_CLASS))})
    assert done.status_code == 303, done.text[:2000]
    today = dt.date.today()
    assert changes(w, "reg_in") == [("张三", "升学转入", "滨江中学", today)]
    assert changes(w, "bureau_in") == [("张三", "升学转入", "滨江中学", today)]
    # The sending school and its district keep their 毕业 and do not see the receiver's record.
    assert changes(w, "reg") == [GRADUATED] and changes(w, "bureau") == [GRADUATED]
    received = status_change_rows(w)[-1]
    assert received.data["student"] == student and received.unit_id == unit_id(w.state, RECEIVING_SCHOOL)
    with w.state.db.read() as s:  # written through RecordService: audited, by the registrar who confirmed
        entry = s.scalar(select(AuditEntry).where(AuditEntry.form_key == "status_change", AuditEntry.record_id == received.id))
    assert entry is not None and entry.action == "create" and entry.username == "reg_in"
    listed = w.login("reg_in").get("/f/status_change/").text
    assert "<td>升学转入</td>" in listed and "<td>毕业</td>" not in listed


def test_decline__creates_nothing(world) -> None:
    w = world("reg", "bureau", "reg_in")
    student = graduate_with_children(w)
    send_on(w, student)
    (pending,) = handovers(w)
    assert w.login("reg_in").post(f"/handovers/{pending.id}/decline", {"reason": "未被本校录取"}).status_code == 303
    assert changes(w, "reg_in") == [] and changes(w, "reg") == [GRADUATED]
    assert len(status_change_rows(w)) == 1


def test_confirm__a_refused_record_writes_nothing(fresh_db_url: str, tmp_path: Path) -> None:
    """A kind the form does not offer: the confirmation fails as a whole — no record, no move, still pending."""
    root = shutil.copytree(DEFINITIONS, tmp_path / "definitions")
    path = root / "workflows" / "graduate.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("'升学转入'", "'入学'"), encoding="utf-8")
    people = ("reg", "bureau", "reg_in")
    w = make_world(fresh_db_url, tmp_path, {u: PEOPLE[u] for u in people}, root)
    try:
        student = graduate_with_children(w)
        send_on(w, student)
        (pending,) = handovers(w)
        before = w.record(student)
        refused = w.login("reg_in").post(f"/handovers/{pending.id}/confirm", {"unit": str(unit_id(w.state, RECEIVING_CLASS))})
        assert refused.status_code == 422 and "确认录取未完成，没有写入任何数据" in refused.text and "异动类别" in refused.text
        after = w.record(student)
        assert (after.unit_id, after.revision, after.data["status"]) == (before.unit_id, before.revision, "毕业")
        assert handovers(w)[0].status == "pending" and len(status_change_rows(w)) == 1
    finally:
        w.state.db.dispose()
