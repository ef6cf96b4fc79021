"""The archive pages over HTTP on both databases: a record's package downloaded from the sender, uploaded to the
receiver, previewed and applied."""
from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from engine.archives.package import read_package
from tests.archives.support import MAPPING, RECEIVING_CLASS, Pair, make_pair
from tests.archives.test_archives import _rezip, records_of, student_with_evaluations
from tests.engine.helpers import BACKENDS, database_url
from tests.support import CLASS_1, CLASS_2, DISTRICT, add_user, unit_id, valid_id_number
from tests.workflows.support import OTHER_SCHOOL


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with database_url(request.param, tmp_path / "a") as a, database_url(request.param, tmp_path / "b") as b:
        made = make_pair(a, b, tmp_path)
        yield made
        made.close()


def trust_sender(p: Pair) -> None:
    trusted = p.receiver.state.settings.var_dir / "keys" / "trusted"
    trusted.mkdir(parents=True, exist_ok=True)
    (trusted / "sender.pem").write_bytes(p.sender_keys.current_public_pem())


def test_download_preview_apply(pair: Pair) -> None:
    student = student_with_evaluations(pair)
    reg = pair.sender.login("reg")
    assert f'href="/f/student/{student}/archive"' in reg.get(f"/f/student/{student}").text
    download = reg.get(f"/f/student/{student}/archive")
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    assert pair.sender.login("teacher").get(f"/f/student/{student}/archive").status_code == 403

    trust_sender(pair)
    reg_in = pair.receiver.login("reg_in")
    assert 'href="/f/student/archive-import"' in reg_in.get("/f/student/").text
    assert reg_in.get("/f/student/archive-import").status_code == 200
    unit = str(unit_id(pair.receiver.state, RECEIVING_CLASS))
    form = {"unit": unit, "mapping": yaml.safe_dump(MAPPING, allow_unicode=True)}
    shown = reg_in.post("/f/student/archive-import", form, files={"file": ("张三.zip", download.content, "application/zip")})
    assert shown.status_code == 200, shown.text[:2000]
    assert "籍贯（hometown）" in shown.text and 'id="count-create">3<' in shown.text
    assert records_of(pair.receiver, "student") == []
    package = re.search(r'name="package" value="([0-9a-f]{64})"', shown.text)[1]
    plan = re.search(r'name="plan" value="([0-9a-f]+)"', shown.text)[1]
    applied = reg_in.post("/f/student/archive-import/apply", {**form, "package": package, "plan": plan})
    assert applied.status_code == 303, applied.text[:2000]
    (got,) = records_of(pair.receiver, "student")
    assert got.data["hometown"] == "浙江杭州" and len(records_of(pair.receiver, "evaluation")) == 2
    again = reg_in.post("/f/student/archive-import/apply", {**form, "package": package, "plan": plan})
    assert again.status_code == 422 and "请重新上传" in again.text


def test_tampered_or_untrusted__refused_with_the_reason(pair: Pair) -> None:
    student = student_with_evaluations(pair)
    content = pair.sender.login("reg").get(f"/f/student/{student}/archive").content
    reg_in = pair.receiver.login("reg_in")
    form = {"unit": str(unit_id(pair.receiver.state, RECEIVING_CLASS))}
    untrusted = reg_in.post("/f/student/archive-import", form, files={"file": ("a.zip", content, "application/zip")})
    assert untrusted.status_code == 422 and "不在受信任的公钥中" in untrusted.text
    trust_sender(pair)

    def edit(members: dict) -> None:
        members["records.json"] = members["records.json"].replace("乐于助人".encode(), "不爱劳动".encode())

    tampered = reg_in.post("/f/student/archive-import", form,
                           files={"file": ("a.zip", _rezip(content, edit), "application/zip")})
    assert tampered.status_code == 422 and "档案包已被改动或损坏" in tampered.text
    broken_map = reg_in.post("/f/student/archive-import", {**form, "mapping": "fields: ["},
                             files={"file": ("a.zip", content, "application/zip")})
    assert broken_map.status_code == 422 and "字段映射有误" in broken_map.text
    shutil.rmtree(pair.receiver.state.settings.var_dir / "keys" / "trusted")


# --- a class's packages from the web -------------------------------------------------------------------------------
def test_class_download__one_signed_package_with_every_student_of_the_class(pair: Pair) -> None:
    first = student_with_evaluations(pair)
    second = pair.sender.student("李四", "110105200805120034")
    elsewhere = pair.sender.student("王五", valid_id_number("11010520080512005"), unit=CLASS_2)
    reg = pair.sender.login("reg")
    assert 'href="/f/student/archive-export"' in reg.get("/f/student/").text
    chooser = reg.get("/f/student/archive-export")
    class_1 = unit_id(pair.sender.state, CLASS_1)
    assert chooser.status_code == 200 and f'<option value="{class_1}">{CLASS_1}</option>' in chooser.text
    download = reg.get(f"/f/student/archive-export?unit={class_1}")
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    assert quote("学生档案-高一(1)班-档案包.zip", safe="") in download.headers["content-disposition"]
    package = read_package(download.content, pair.sender_keys.public_keys())  # signature and checksums verified
    students = {r["id"] for r in package.records if r["form"] == "student"}
    assert students == {first, second} and elsewhere not in students
    assert package.manifest["counts"]["student"] == 2 and package.manifest["counts"]["evaluation"] == 2
    chosen = reg.get(f"/f/student/archive-export?id={second}&id={elsewhere}")
    assert chosen.status_code == 200
    assert {r["id"] for r in read_package(chosen.content, pair.sender_keys.public_keys()).records} == {second, elsewhere}


def test_class_download__refused_outside_the_export_scope(pair: Pair) -> None:
    student_with_evaluations(pair)
    add_user(pair.sender.state, "reg_other", "registrar", OTHER_SCHOOL)
    class_1 = unit_id(pair.sender.state, CLASS_1)
    other = pair.sender.login("reg_other")
    assert f'value="{class_1}"' not in other.get("/f/student/archive-export").text
    refused = other.get(f"/f/student/archive-export?unit={class_1}")
    assert refused.status_code == 404 and refused.headers["content-type"].startswith("text/html")
    assert other.get(f"/f/student/archive-export?unit={unit_id(pair.sender.state, DISTRICT)}").status_code == 404
    assert pair.sender.login("teacher").get(f"/f/student/archive-export?unit={class_1}").status_code == 403
    empty = pair.sender.login("reg").get(f"/f/student/archive-export?unit={unit_id(pair.sender.state, CLASS_2)}")
    assert empty.status_code == 422 and "没有可以导出的记录" in empty.text
    assert pair.sender.login("reg").get("/f/student/archive-export?unit=abc").status_code == 422
