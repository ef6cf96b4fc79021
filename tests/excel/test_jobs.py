"""Jobs on both databases: batches commit with their progress, an interrupted import resumes, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from engine.excel.importer import ImportPass
from engine.excel.jobs import queue_commit, run_job
from engine.excel.limits import Limits
from engine.records import RecordWrite
from engine.storage.models import AuditEntry, Record, User, UserRole, utcnow
from engine.validation import clean_record
from tests.excel.helpers import HEADER, commit, errors_of, new_student, preview, principal_of, record_by_id_card, xlsx
from web.cli import main
from web.state import AppState


def counts(state: AppState, numbers: list[str]) -> tuple[int, int]:
    found = [record_by_id_card(state, n) for n in numbers]
    ids = [r.id for r in found if r is not None]
    with state.db.read() as s:
        audits = s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.record_id.in_(ids))) if ids else 0
    return len(ids), audits or 0


def test_interrupted_after_a_batch__resumes_after_the_last_committed_row(shared: AppState) -> None:
    rows = [new_student() for _ in range(7)]
    numbers = [r["身份证号"] for r in rows]
    limits = Limits(batch_size=3)
    job = preview(shared, "reg", xlsx(rows), limits=limits)
    batches = iter(range(100))
    stopped = commit(shared, job, "skip_invalid", limits=limits, should_stop=lambda: next(batches) >= 1)
    assert stopped.status == "importing" and stopped.runner == ""
    assert (stopped.last_row, stopped.count_new, stopped.done) == (4, 3, 3)  # rows 2-4 committed, with progress
    assert counts(shared, numbers) == (3, 3)
    done = run_job(shared.db, shared.definitions, job.id, limits, shared.records)
    assert done is not None and done.status == "done"
    assert (done.count_new, done.count_unchanged, done.done, done.last_row) == (7, 0, 7, 8)
    assert counts(shared, numbers) == (7, 7)  # each record once, each with one audit entry


def test_resume_is_idempotent_even_from_an_earlier_row(shared: AppState) -> None:
    """Had the progress write been lost, rows already saved come back as unchanged, never twice."""
    rows = [new_student() for _ in range(4)]
    limits = Limits(batch_size=2)
    job = preview(shared, "reg", xlsx(rows), limits=limits)
    done = commit(shared, job, "skip_invalid", limits=limits)
    assert done.count_new == 4
    again = preview(shared, "reg", xlsx(rows), limits=limits)
    assert (again.count_new, again.count_unchanged) == (0, 4)


def test_invalid_rows_of_each_batch__kept_with_the_batch(shared: AppState) -> None:
    rows = [new_student(), new_student(民族="火星族"), new_student(), new_student(姓名="")]
    limits = Limits(batch_size=2)
    job = commit(shared, preview(shared, "reg", xlsx(rows), limits=limits), "skip_invalid", limits=limits)
    assert (job.count_new, job.count_invalid) == (2, 2)
    assert sorted(errors_of(shared, job)) == [3, 5]


def test_unique_value_taken_meanwhile__row_reported_others_saved(shared: AppState) -> None:
    """Between preview and 确认导入 someone saves the same ID number: that row fails alone."""
    rows = [new_student(), new_student(), new_student()]
    job = preview(shared, "reg", xlsx(rows))
    assert job.count_new == 3
    commit(shared, preview(shared, "reg", xlsx([rows[1]])), "skip_invalid")
    done = commit(shared, job, "skip_invalid")
    assert (done.count_new, done.count_unchanged, done.count_invalid) == (2, 1, 0)


def test_database_refuses_a_batch__rows_saved_one_by_one_the_taken_one_reported(shared: AppState,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An ID number saved by someone else after the rows were checked: the batch INSERT hits the unique
    index, the batch is redone row by row, and each row is saved whole (record, numbers, audit) or not at all."""
    rows = [new_student(), new_student(), new_student()]
    taken = rows[1]["身份证号"]
    write = ImportPass._write

    def someone_saves_first(self: ImportPass, s, plans):  # type: ignore[no-untyped-def]
        if self.write and record_by_id_card(shared, taken) is None:
            form = shared.definitions.forms["student"]
            other = plans[1].write.cleaned.values | {"name": "别人"}
            shared.records.writer.write(s, principal_of(shared, "reg"), [RecordWrite(form, clean_record(form, other), unit_id=plans[0].unit_id)])
        return write(self, s, plans)

    monkeypatch.setattr(ImportPass, "_write", someone_saves_first)
    done = commit(shared, preview(shared, "reg", xlsx(rows)), "skip_invalid")
    assert (done.count_new, done.count_invalid) == (2, 1), errors_of(shared, done)
    assert errors_of(shared, done) == {3: [f"身份证号“{taken}”已被另一条记录使用"]}
    assert counts(shared, [rows[0]["身份证号"], rows[2]["身份证号"]]) == (2, 2)
    assert record_by_id_card(shared, taken).data["name"] == "别人"  # type: ignore[union-attr]


def test_insert_mode__existing_record_not_changed(shared: AppState) -> None:
    row = new_student()
    commit(shared, preview(shared, "reg", xlsx([row])), "skip_invalid")
    same = preview(shared, "reg", xlsx([row]), mode="insert")
    assert (same.count_unchanged, same.count_invalid) == (1, 0)
    changed = preview(shared, "reg", xlsx([dict(row, 姓名="新名字")]), mode="insert")
    assert changed.count_invalid == 1
    assert "已存在" in errors_of(shared, changed)[2][0]


def test_update_mode__unknown_record_reported(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx([new_student()]), mode="update")
    assert job.count_invalid == 1
    assert errors_of(shared, job)[2][0].startswith("找不到身份证号为")


def test_rights_removed_before_the_job_runs__job_fails(shared: AppState) -> None:
    job = preview(shared, "reg_b", xlsx([new_student(所属班级="一年级(1)班", 年级="一年级")]))
    assert job.status == "previewed"
    with shared.db.write() as s:
        user_id = s.scalar(select(User.id).where(User.username == "reg_b"))
        s.execute(UserRole.__table__.update().where(UserRole.user_id == user_id).values(role_key="teacher"))
        s.commit()
    try:
        done = commit(shared, job, "skip_invalid")
        assert done.status == "failed"
    finally:
        with shared.db.write() as s:
            s.execute(UserRole.__table__.update().where(UserRole.user_id == user_id).values(role_key="registrar"))
            s.commit()


def test_cli__dry_run_then_import(shared: AppState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DANGAN_DATABASE_URL", shared.db.url)
    monkeypatch.setenv("DANGAN_DEFINITIONS", str(shared.settings.definitions))
    monkeypatch.chdir(tmp_path)
    rows = [new_student(), new_student(), new_student(民族="火星族")]
    path = tmp_path / "新生.xlsx"
    path.write_bytes(xlsx(rows))
    assert main(["import", "student", str(path), "--user", "reg", "--dry-run"]) == 2
    out = capsys.readouterr()
    assert "预览" in out.out and "新增 2" in out.out and "错误 1" in out.out
    assert "100%" in out.err and " 行" in out.err  # the progress bar (rich)
    assert record_by_id_card(shared, rows[0]["身份证号"]) is None
    assert main(["import", "student", str(path), "--user", "reg", "--skip-invalid"]) == 2
    assert "导入" in capsys.readouterr().out
    assert record_by_id_card(shared, rows[0]["身份证号"]) is not None
    assert (tmp_path / "新生-错误报告.xlsx").is_file()


def test_cli__user_without_import_right(shared: AppState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DANGAN_DATABASE_URL", shared.db.url)
    monkeypatch.setenv("DANGAN_DEFINITIONS", str(shared.settings.definitions))
    path = tmp_path / "a.xlsx"
    path.write_bytes(xlsx([new_student()]))
    assert main(["import", "student", str(path), "--user", "nobody"]) == 1
    assert "没有导入" in capsys.readouterr().err


def test_ids_of_deleted_records__never_handed_out_again(shared: AppState) -> None:
    first = new_student()
    commit(shared, preview(shared, "reg", xlsx([first])), "skip_invalid")
    gone = record_by_id_card(shared, first["身份证号"])
    assert gone is not None
    with shared.db.write() as s:
        s.execute(Record.__table__.delete().where(Record.id == gone.id))
        s.commit()
    second = new_student()
    commit(shared, preview(shared, "reg", xlsx([second])), "skip_invalid")
    assert record_by_id_card(shared, second["身份证号"]).id > gone.id  # type: ignore[union-attr]


# --- rows prepared in a forked helper process (engine/excel/parallel.py) -----------------------------

def _mixed_rows() -> list[dict]:
    twin = new_student()
    return [new_student(), twin, new_student(民族="火星族"), new_student(姓名=""), dict(twin), new_student(),
            new_student(出生日期="2008-02-30"), new_student()]


def _outcome(state: AppState, job) -> tuple:  # type: ignore[no-untyped-def]
    return ((job.status, job.count_new, job.count_updated, job.count_unchanged, job.count_invalid),
            sorted((n, sorted(m)) for n, m in errors_of(state, job).items()))


def _preparing_pids(monkeypatch: pytest.MonkeyPatch, log: Path, die_in_helper: bool = False) -> None:
    """Every process that prepares a batch writes its pid to `log` (the helper inherits the patch by fork)."""
    import os

    prepare, parent = ImportPass.prepare, os.getpid()

    def logged(self: ImportPass, rows):  # type: ignore[no-untyped-def]
        with log.open("a") as out:
            out.write(f"{os.getpid()}\n")
        if die_in_helper and os.getpid() != parent:
            os._exit(1)
        return prepare(self, rows)

    monkeypatch.setattr(ImportPass, "prepare", logged)


def test_helper_process__same_preview_and_import_as_in_process(shared: AppState, monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    import os

    rows = _mixed_rows()
    alone = preview(shared, "reg", xlsx(rows), limits=Limits(batch_size=2, helper_rows=0))
    _preparing_pids(monkeypatch, tmp_path / "pids")
    helped_limits = Limits(batch_size=2, helper_rows=1)
    helped = preview(shared, "reg", xlsx(rows), limits=helped_limits)
    assert _outcome(shared, helped) == _outcome(shared, alone)
    assert _outcome(shared, alone)[0] == ("previewed", 3, 0, 0, 5)  # 3 bad rows, and both rows of the repeated ID
    pids = {int(p) for p in (tmp_path / "pids").read_text().split()}
    assert pids and os.getpid() not in pids  # every batch was prepared by the helper
    done = commit(shared, helped, "skip_invalid", limits=helped_limits)
    assert (done.status, done.count_new, done.count_invalid) == ("done", 3, 5)
    saved = [r for r in rows if r is not rows[1] and r is not rows[4] and r.get("民族") != "火星族" and r.get("姓名")
             and r.get("出生日期") != "2008-02-30"]
    assert counts(shared, [r["身份证号"] for r in saved]) == (3, 3)


def test_helper_process_dies__the_rest_prepared_here_same_result(shared: AppState, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    import os

    rows = _mixed_rows()
    alone = preview(shared, "reg", xlsx(rows), limits=Limits(batch_size=2, helper_rows=0))
    _preparing_pids(monkeypatch, tmp_path / "pids", die_in_helper=True)
    helped = preview(shared, "reg", xlsx(rows), limits=Limits(batch_size=2, helper_rows=1))
    assert _outcome(shared, helped) == _outcome(shared, alone)
    pids = {int(p) for p in (tmp_path / "pids").read_text().split()}
    assert os.getpid() in pids and len(pids) == 2  # the helper started, died, and this process took over


def test_imported_rows__stored_as_the_record_service_stores_them(shared: AppState) -> None:
    """The batch INSERT binds values itself (engine/excel/importer.py _insert_sqlite): the stored text must be
    what SQLAlchemy writes for a saved record — json.dumps of the document and changes, sqlite3's datetime text.
    On PostgreSQL (COPY into jsonb and timestamp columns) the values read back are compared instead."""
    row = new_student(备注="引号\"与\\反斜杠", 家长姓名="李\u00a0父")
    commit(shared, preview(shared, "reg", xlsx([row], header=[*HEADER, "备注"])), "skip_invalid")
    record = record_by_id_card(shared, row["身份证号"])
    assert record is not None
    with shared.db.read() as s:
        data, created, updated = s.execute(text("SELECT data, created_at, updated_at FROM records WHERE id = :i"),
                                           {"i": record.id}).one()
        changes, at = s.execute(text("SELECT changes, at FROM audit_log WHERE record_id = :i AND action = 'create'"),
                                {"i": record.id}).one()
        orm = s.get(Record, record.id)
        entry = s.scalars(select(AuditEntry).where(AuditEntry.record_id == record.id)).one()
        assert orm is not None and orm.data["remarks"] == "引号\"与\\反斜杠"
        expected_changes = {k: [None, v] for k, v in orm.data.items() if v is not None}
        if shared.db.dialect != "sqlite":
            assert data == orm.data and changes == entry.changes == expected_changes
            assert created == updated == orm.created_at == at == entry.at
            return
        assert data == json.dumps(orm.data)
        assert changes == json.dumps(entry.changes) == json.dumps(expected_changes)
        assert created == updated == orm.created_at.isoformat(" ") == at == entry.at.isoformat(" ")


@pytest.mark.parametrize("checked_now", [False, True])
def test_all_or_nothing_after_a_clean_preview__checked_again_unless_committed_straight_after(
        shared: AppState, checked_now: bool) -> None:
    """The web's 确认导入 may come minutes after the preview: all-or-nothing checks every row again. `dangan import`
    commits straight after its own preview: a preview without an invalid row is that check (one pass fewer)."""
    rows = [new_student() for _ in range(3)]
    job = preview(shared, "reg", xlsx(rows), error_mode="all_or_nothing")
    assert (job.status, job.count_invalid) == ("previewed", 0)
    phases: list[str] = []
    assert queue_commit(shared.db, job.id, "all_or_nothing", checked_now=checked_now)
    done = run_job(shared.db, shared.definitions, job.id, Limits(), shared.records,
                   progress=lambda status, _done, _total: phases.append(status))
    assert done is not None and (done.status, done.count_new) == ("done", 3)
    assert ("validating" in phases) is not checked_now and "importing" in phases
    assert counts(shared, [r["身份证号"] for r in rows]) == (3, 3)


def test_all_or_nothing_with_an_invalid_row__refused_even_when_committed_straight_after(shared: AppState) -> None:
    rows = [new_student(), new_student(民族="火星族")]
    job = preview(shared, "reg", xlsx(rows), error_mode="all_or_nothing")
    assert job.count_invalid == 1
    assert queue_commit(shared.db, job.id, "all_or_nothing", checked_now=True)
    done = run_job(shared.db, shared.definitions, job.id, Limits(), shared.records)
    assert done is not None and done.status == "aborted"
    assert counts(shared, [r["身份证号"] for r in rows]) == (0, 0)
