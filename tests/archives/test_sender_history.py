"""The sender's history comes with an imported archive: audit entries marked as the sender's, under the receiver's
field names, before the import's own entry; importing again does not bring them twice."""
from __future__ import annotations

from sqlalchemy import select

from engine.storage.models import AuditEntry
from tests.archives.test_archives import (  # noqa: F401 - `pair` is the fixture
    apply, exported, pair, records_of, student_with_evaluations,
)
from tests.archives.support import Pair


def _history(w, form_key: str, record_id: int) -> list[AuditEntry]:
    with w.state.db.read() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.form_key == form_key, AuditEntry.record_id == record_id)
                              .order_by(AuditEntry.id)))


def test_import__brings_the_senders_history_marked_as_theirs(pair: Pair) -> None:
    student = student_with_evaluations(pair)
    sent = _history(pair.sender, "student", student)
    assert [e.action for e in sent] == ["create", "update"]  # created, then the photo
    apply(pair, exported(pair, student))
    (got,) = records_of(pair.receiver, "student")
    history = _history(pair.receiver, "student", got.id)
    assert [e.action for e in history] == ["sender", "sender", "create"]
    first, second, own = history
    assert first.username == "reg（发送方）" and first.user_id is None and first.at == sent[0].at
    assert first.note.startswith("发送方（示范区教育局/示范区第一中学/高一/高一(1)班）的记录：创建")
    assert first.changes["hometown"] == [None, "浙江杭州"] and "native_place" not in first.changes  # the receiver's key
    assert "political_status" not in first.changes  # a field the receiver lacks
    assert "photo" in second.changes and second.note.startswith("发送方（") and "修改" in second.note
    assert "档案包导入" in own.note and own.username == "reg_in"
    child = records_of(pair.receiver, "evaluation")[0]
    child_history = _history(pair.receiver, "evaluation", child.id)
    assert [e.action for e in child_history] == ["sender", "create"]
    assert child_history[0].changes["ethics"] == [None, "A"]  # moral, by renamed_from
    page = pair.receiver.login("reg_in").get(f"/f/student/{got.id}/history").text
    assert page.count("发送方记录") == 2 and "reg（发送方）" in page


def test_import_again_with_overwrite__history_not_doubled(pair: Pair) -> None:
    data = exported(pair, student_with_evaluations(pair))
    apply(pair, data)
    (got,) = records_of(pair.receiver, "student")
    before = len(_history(pair.receiver, "student", got.id))
    apply(pair, data, overwrite=True)
    assert len(_history(pair.receiver, "student", got.id)) == before
