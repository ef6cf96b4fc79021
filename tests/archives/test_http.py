"""The archive pages over HTTP on both databases: a record's package downloaded from the sender, uploaded to the
receiver, previewed and applied."""
from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.archives.support import MAPPING, RECEIVING_CLASS, Pair, make_pair
from tests.archives.test_archives import _rezip, records_of, student_with_evaluations
from tests.engine.helpers import BACKENDS, database_url
from tests.support import unit_id


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
