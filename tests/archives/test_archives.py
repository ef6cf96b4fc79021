"""Archive packages between two installations (engine/archives): export, verify, preview, import all or nothing."""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.archives.package import Incomplete, NotAPackage, Tampered, Untrusted, read_package
from engine.archives.service import ExportRefused, ImportRefused, Mapping_, PlanChanged
from engine.certificates.signing import KeyStore
from engine.storage.models import Attachment, AuditEntry, Record
from tests.archives.support import MAPPING, RECEIVING_CLASS, Pair, make_pair
from tests.engine.helpers import BACKENDS, database_url, png_bytes
from tests.support import CLASS_1, unit_id, valid_student

PDF = b"%PDF-1.4 evidence of the practice\n%%EOF"


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with database_url(request.param, tmp_path / "a") as a, database_url(request.param, tmp_path / "b") as b:
        made = make_pair(a, b, tmp_path)
        yield made
        made.close()


def student_with_evaluations(p: Pair) -> int:
    w = p.sender
    student = w.student(native_place="浙江杭州", address="杭州市西湖区文三路 1 号", remarks="喜欢读书",
                        political_status="共青团员")
    registrar = w.principal("reg")
    form = w.state.definitions.forms["student"]
    photo = {"photo": _upload("photo.png", "image/png", png_bytes(3, 4))}
    current = w.state.records.get(form, student, registrar, "update")
    saved = w.state.records.update(form, registrar, student, photo, current.revision)
    assert saved.ok, saved.issues
    evaluation = w.state.definitions.forms["evaluation"]
    for term, conduct in (("2023-2024学年第一学期", "积极上进"), ("2023-2024学年第二学期", "乐于助人")):
        values = {"student": student, "term": term, "moral": "A", "academic": "B", "health": "A", "art": "C",
                  "practice": "B", "conduct": conduct}
        made = w.state.records.create(evaluation, registrar, None, values)
        assert made.ok, made.issues
    return student


def _upload(name: str, media: str, data: bytes):
    from engine.fields.files import UploadedFile  # noqa: PLC0415 - only the tests' uploads need it
    return UploadedFile(name, media, data)


def exported(p: Pair, student: int) -> bytes:
    return p.archives(p.sender).export(p.sender.state.definitions, p.sender.principal("reg"), "student", [student])


def trusted(p: Pair) -> dict:
    return p.sender_keys.public_keys()


def preview(p: Pair, data: bytes, mapping=MAPPING, overwrite: bool = False, who: str = "reg_in"):
    r = p.receiver
    return p.archives(r).preview(r.state.definitions, r.principal(who), data, trusted(p),
                                 unit_id(r.state, RECEIVING_CLASS), Mapping_.of(mapping), overwrite)


def apply(p: Pair, data: bytes, mapping=MAPPING, overwrite: bool = False, expected: str | None = None):
    r = p.receiver
    return p.archives(r).apply(r.state.definitions, r.principal("reg_in"), data, trusted(p),
                               unit_id(r.state, RECEIVING_CLASS), Mapping_.of(mapping), overwrite, expected)


def records_of(w, form_key: str) -> list[Record]:
    with w.state.db.read() as s:
        return list(s.scalars(select(Record).where(Record.form_key == form_key).order_by(Record.id)))


def attachment_bytes(w, reference: dict) -> bytes:
    with w.state.db.read() as s:
        return s.get(Attachment, reference["id"]).content


# --- the package ----------------------------------------------------------------------------------------------
def test_export__signed_package_with_children_history_and_files(pair: Pair) -> None:
    student = student_with_evaluations(pair)
    package = read_package(exported(pair, student), trusted(pair))
    assert package.manifest["counts"] == {"student": 1, "evaluation": 2, "award": 0, "score": 0, "attendance": 0}
    assert package.manifest["omitted"] == {}
    assert package.manifest["forms"]["evaluation"]["parent_field"] == "student"
    assert package.manifest["sender"]["units"] == [CLASS_1]
    (root,) = [r for r in package.records if r["form"] == "student"]
    assert root["values"]["id_card"] == "110105200805120018" and root["texts"]["political_status"]
    assert [h["action"] for h in root["history"]] == ["create", "update"]
    assert package.attachments[root["files"]["photo"]["sha256"]] == png_bytes(3, 4)
    children = [r for r in package.records if r["form"] == "evaluation"]
    assert {c["parent"] for c in children} == {student} and {c["values"]["conduct"] for c in children} == {"积极上进", "乐于助人"}


def test_export__refused_without_export_right(pair: Pair) -> None:
    student = student_with_evaluations(pair)
    with pytest.raises(ExportRefused) as refused:
        pair.archives(pair.sender).export(pair.sender.state.definitions, pair.sender.principal("teacher"), "student", [student])
    assert "学生档案" in refused.value.message


def test_export__child_forms_without_export_right_left_out_and_named(pair: Pair) -> None:
    student = student_with_evaluations(pair)
    data = pair.archives(pair.sender).export(pair.sender.state.definitions, pair.sender.principal("head"), "student", [student])
    package = read_package(data, trusted(pair))
    assert package.manifest["omitted"] == {"award": "奖惩记录"} and package.manifest["counts"]["evaluation"] == 2
    plan = preview(pair, data)
    assert plan.ok and plan.omitted == {"award": "奖惩记录"}


def test_export__masked_fields_are_withheld_and_named(pair: Pair) -> None:
    student = student_with_evaluations(pair)
    data = pair.archives(pair.sender).export(pair.sender.state.definitions, pair.sender.principal("bureau"), "student", [student])
    package = read_package(data, trusted(pair))
    assert "id_card" in package.manifest["withheld"]["student"]
    (root,) = [r for r in package.records if r["form"] == "student"]
    assert "id_card" not in root["values"]
    assert all("id_card" not in h["changes"] for h in root["history"])
    plan = preview(pair, data)
    assert not plan.ok and any("身份证号为必填项" in p for p in plan.problems)
    (place,) = [f for f in plan.forms[0].fields if f.key == "id_card"]
    assert set(package.manifest["omitted"]) == {"award", "attendance"}  # the bureau may not export them
    assert place.target is None and "发送方未提供" in place.reason


def _rezip(data: bytes, change) -> bytes:
    members = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    change(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_tampered_incomplete_untrusted_or_not_a_package__refused(pair: Pair, tmp_path: Path) -> None:
    data = exported(pair, student_with_evaluations(pair))

    def edit_records(members: dict) -> None:
        members["records.json"] = members["records.json"].replace("浙江杭州".encode(), "浙江宁波".encode())

    def drop_attachment(members: dict) -> None:
        del members[next(n for n in members if n.startswith("attachments/"))]

    def edit_manifest(members: dict) -> None:
        members["manifest.json"] = members["manifest.json"].replace(b'"evaluation":2', b'"evaluation":3')

    with pytest.raises(Tampered) as refused:
        read_package(_rezip(data, edit_records), trusted(pair))
    assert "records.json" in refused.value.message and "未导入任何数据" in refused.value.message
    with pytest.raises(Incomplete):
        read_package(_rezip(data, drop_attachment), trusted(pair))
    with pytest.raises(Tampered) as refused:
        read_package(_rezip(data, edit_manifest), trusted(pair))
    assert "签名无效" in refused.value.message
    with pytest.raises(Untrusted) as refused:
        read_package(data, KeyStore(tmp_path / "stranger").public_keys())
    assert pair.sender_keys.current_id() in refused.value.message
    with pytest.raises(NotAPackage):
        read_package(data[: len(data) // 2], trusted(pair))
    with pytest.raises(NotAPackage):
        read_package(b"PK\x03\x04 not really", trusted(pair))
    r = pair.receiver
    with pytest.raises(Tampered):
        apply(pair, _rezip(data, edit_records))
    assert records_of(r, "student") == []


# --- importing into other definitions -------------------------------------------------------------------------
def test_import__round_trip_of_what_maps(pair: Pair) -> None:
    student = student_with_evaluations(pair)
    data = exported(pair, student)
    plan = preview(pair, data)
    assert plan.ok, plan.problems
    assert (plan.count("create"), plan.count("same"), plan.count("update")) == (3, 0, 0)
    places = {f.key: f for f in plan.forms[0].fields}
    assert places["name"].target == "name" and places["native_place"].target == "hometown"  # by label
    assert places["remarks"].target == "notes" and places["address"].target == "home_address"  # renamed_from, mapping
    assert places["political_status"].target is None and "没有对应字段" in places["political_status"].reason
    assert places["student_no"].target is None and "自动生成" in places["student_no"].reason
    (evaluation_plan,) = [f for f in plan.forms if f.key == "evaluation"]
    evaluation_places = {f.key: f.target for f in evaluation_plan.fields}
    assert evaluation_places["moral"] == "ethics" and evaluation_places["conduct"] == "behaviour"

    done = apply(pair, data, expected=plan.digest)
    assert (done.created, done.updated) == (3, 0)
    sent, (got,) = pair.sender.record(student), records_of(pair.receiver, "student")
    renamed = {"native_place": "hometown", "address": "home_address", "remarks": "notes"}
    for key, value in sent.data.items():
        if key in ("political_status", "status", "school_no", "photo") or value is None:
            continue
        assert got.data[renamed.get(key, key)] == value, key
    assert attachment_bytes(pair.receiver, got.data["photo"]) == png_bytes(3, 4)
    sent_children = sorted(records_of(pair.sender, "evaluation"), key=lambda r: r.data["term"])
    got_children = sorted(records_of(pair.receiver, "evaluation"), key=lambda r: r.data["term"])
    assert [c.data["student"] for c in got_children] == [got.id, got.id]
    assert [c.unit_id for c in got_children] == [got.unit_id] * 2
    for a, b in zip(sent_children, got_children):
        assert (b.data["ethics"], b.data["behaviour"], b.data["term"]) == (a.data["moral"], a.data["conduct"], a.data["term"])
        assert b.data["a_count"] == a.data["a_count"] == 2  # computed again on this side, from the mapped fields
    with pair.receiver.state.db.read() as s:
        notes = list(s.scalars(select(AuditEntry.note).where(AuditEntry.record_id == got.id, AuditEntry.action != "sender")
                               .order_by(AuditEntry.id)))
    assert notes and "档案包导入" in notes[0] and "高一(1)班" in notes[0]
    # The sender keeps its part: the student is still there, with its history.
    assert pair.sender.record(student) is not None


def test_import_again__same_and_nothing_written(pair: Pair) -> None:
    data = exported(pair, student_with_evaluations(pair))
    apply(pair, data)
    plan = preview(pair, data)
    assert plan.ok and plan.count("same") == 3 and plan.count("create") == 0
    done = apply(pair, data)
    assert (done.created, done.updated) == (0, 0)
    assert len(records_of(pair.receiver, "student")) == 1 and len(records_of(pair.receiver, "evaluation")) == 2


def test_existing_student__differences_shown_and_only_overwritten_when_asked(pair: Pair) -> None:
    data = exported(pair, student_with_evaluations(pair))
    apply(pair, data)
    r = pair.receiver
    form = r.state.definitions.forms["student"]
    (got,) = records_of(r, "student")
    principal = r.principal("reg_in")
    current = r.state.records.get(form, got.id, principal, "update")
    assert r.state.records.update(form, principal, got.id, {"hometown": "江苏南京"}, current.revision).ok
    plan = preview(pair, data)
    (changed,) = [i for i in plan.records if i.action == "update"]
    assert [(d.label, d.old, d.new) for d in changed.differences] == [("籍贯", "江苏南京", "浙江杭州")]
    apply(pair, data)  # without overwrite: kept
    assert records_of(r, "student")[0].data["hometown"] == "江苏南京"
    shown = preview(pair, data, overwrite=True)
    done = apply(pair, data, overwrite=True, expected=shown.digest)
    assert done.updated == 1 and records_of(r, "student")[0].data["hometown"] == "浙江杭州"


def test_plan_changed_since_preview__refused(pair: Pair) -> None:
    data = exported(pair, student_with_evaluations(pair))
    plan = preview(pair, data)
    apply(pair, data)  # someone else imported it meanwhile
    with pytest.raises(PlanChanged):
        apply(pair, data, expected=plan.digest)


def test_one_record_not_placeable__nothing_written(pair: Pair) -> None:
    data = exported(pair, student_with_evaluations(pair))
    dropping_required = {"fields": {**MAPPING["fields"], "evaluation": {"conduct": "behaviour", "art": None}}}
    plan = preview(pair, data, dropping_required)
    assert not plan.ok and plan.count("create") == 3
    assert sum(1 for p in plan.problems if "艺术素养为必填项" in p) == 2
    with pytest.raises(ImportRefused) as refused:
        apply(pair, data, dropping_required)
    assert "没有写入任何数据" in refused.value.message
    assert records_of(pair.receiver, "student") == [] and records_of(pair.receiver, "evaluation") == []


def test_existing_student_out_of_scope__refused(pair: Pair) -> None:
    data = exported(pair, student_with_evaluations(pair))
    r = pair.receiver
    form = r.state.definitions.forms["student"]
    made = r.state.records.create(form, r.principal("reg_far"), unit_id(r.state, CLASS_1), valid_student())
    assert made.ok, made.issues
    plan = preview(pair, data)
    assert any("不在您可以修改的范围内" in p for p in plan.problems)
    with pytest.raises(ImportRefused):
        apply(pair, data)
    with r.state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Record)) == 1


def test_unit_out_of_scope__refused(pair: Pair) -> None:
    data = exported(pair, student_with_evaluations(pair))
    r = pair.receiver
    with pytest.raises(ImportRefused) as refused:
        pair.archives(r).preview(r.state.definitions, r.principal("reg_in"), data, trusted(pair),
                                 unit_id(r.state, CLASS_1), Mapping_.of(MAPPING))
    assert "不在您的权限范围内" in refused.value.message


def test_mapping_names_a_missing_field__refused(pair: Pair) -> None:
    from engine.archives.service import MappingInvalid  # noqa: PLC0415
    data = exported(pair, student_with_evaluations(pair))
    with pytest.raises(MappingInvalid) as refused:
        preview(pair, data, {"fields": {"student": {"address": "adress"}}})
    assert "adress" in refused.value.message
    with pytest.raises(MappingInvalid):
        Mapping_.of({"forms": ["student"]})
    assert json.loads(json.dumps(MAPPING))  # the mapping a file holds is plain data


# --- links to records outside the package ---------------------------------------------------------------------
EXAM = {"name": "2024学年第一学期高一期中考试", "term": "2024-2025学年第一学期", "kind": "期中", "grade": "高一"}


def add_exam(w, username: str, school: str) -> int:
    from tests.support import unit_id as unit_of  # noqa: PLC0415

    made = w.state.records.create(w.state.definitions.forms["exam"], w.principal(username), unit_of(w.state, school),
                                  {**EXAM, "start_date": "2024-11-05"})
    assert made.ok, made.issues
    return made.record_id


def test_score_links_its_exam_by_name__found_refused_or_left_out(pair: Pair) -> None:
    student = student_with_evaluations(pair)
    exam = add_exam(pair.sender, "reg", "示范区教育局/示范区第一中学")
    score = pair.sender.state.records.create(pair.sender.state.definitions.forms["score"], pair.sender.principal("reg"), None,
                                             {"student": student, "exam": exam, "chinese": "101", "math": "120"})
    assert score.ok, score.issues
    data = exported(pair, student)
    (sent,) = [r for r in read_package(data, trusted(pair)).records if r["form"] == "score"]
    assert sent["links"] == {"exam": {"name": EXAM["name"]}}

    with pytest.raises(ImportRefused) as refused:  # the receiving school has no such exam: nothing written
        apply(pair, data)
    assert "找不到" in refused.value.message and EXAM["name"] in refused.value.message
    assert records_of(pair.receiver, "student") == []

    leaving_scores_out = {**MAPPING, "forms": {"score": None}}
    plan = preview(pair, data, leaving_scores_out)
    assert plan.ok and plan.count("skipped") == 1
    assert apply(pair, data, leaving_scores_out).created == 3
    assert records_of(pair.receiver, "score") == []

    exam_here = add_exam(pair.receiver, "reg_in", "滨江区教育局/滨江中学")
    done = apply(pair, data)  # the exam of that name exists here now: the score follows
    (got,) = records_of(pair.receiver, "score")
    assert done.created == 1 and got.data["exam"] == exam_here and float(got.data["total"]) == 221.0


def test_export_of_a_child_record__its_parent_s_package(pair: Pair) -> None:
    student = student_with_evaluations(pair)
    (evaluation, _) = records_of(pair.sender, "evaluation")
    data = pair.archives(pair.sender).export(pair.sender.state.definitions, pair.sender.principal("reg"), "evaluation",
                                             [evaluation.id])
    package = read_package(data, trusted(pair))
    assert package.manifest["root"] == "student" and package.manifest["counts"]["evaluation"] == 2
    assert [r["id"] for r in package.records if r["form"] == "student"] == [student]
