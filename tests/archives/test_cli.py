"""`dangan export-archive` and `dangan import-archive` run as the installed command on real files: two SQLite
installations, the receiver's definitions naming fields differently."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from engine.storage.models import Record
from tests.archives.support import MAPPING, RECEIVING_CLASS, Pair, make_pair
from tests.archives.test_archives import _rezip, student_with_evaluations
from tests.support import REPO

DANGAN = str(REPO / ".venv" / "bin" / "dangan")


def run(side: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DANGAN, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **side})


@pytest.fixture(scope="module")
def installations(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("two")
    pair: Pair = make_pair(f"sqlite:///{tmp / 'a.db'}", f"sqlite:///{tmp / 'b.db'}", tmp)
    student = student_with_evaluations(pair)
    pair.sender_keys.signing_key()
    pair.close()
    sender = {"DANGAN_DATABASE_URL": f"sqlite:///{tmp / 'a.db'}", "DANGAN_DEFINITIONS": str(REPO / "definitions"),
              "DANGAN_VAR": str(tmp / "var_a")}
    receiver = {"DANGAN_DATABASE_URL": f"sqlite:///{tmp / 'b.db'}", "DANGAN_DEFINITIONS": str(tmp / "defs_b"),
                "DANGAN_VAR": str(tmp / "var_b")}
    mapping = tmp / "map.yaml"
    mapping.write_text(yaml.safe_dump(MAPPING, allow_unicode=True), encoding="utf-8")
    key = next((tmp / "var_a" / "keys").glob("certificate-public-*.pem"))
    return {"tmp": tmp, "sender": sender, "receiver": receiver, "student": student, "map": mapping, "key": key, "pair": pair}


def records(installation: dict, form: str) -> list[Record]:
    pair = installation["pair"]
    db = pair.receiver.state.db
    with db.read() as s:
        found = list(s.scalars(select(Record).where(Record.form_key == form)))
    db.dispose()
    return found


def test_export_then_preview_then_apply(installations) -> None:
    i = installations
    package = i["tmp"] / "张三.zip"
    done = run(i["sender"], "export-archive", "student", "--user", "reg", "--id", str(i["student"]), "-o", str(package))
    assert done.returncode == 0, done.stderr
    assert package.stat().st_size > 0 and "已导出档案包" in done.stdout

    args = ["import-archive", str(package), "--user", "reg_in", "--unit", RECEIVING_CLASS, "--map", str(i["map"])]
    untrusted = run(i["receiver"], *args)
    assert untrusted.returncode == 1 and "不在受信任的公钥中" in untrusted.stderr

    shown = run(i["receiver"], *args, "--key", str(i["key"]))
    assert shown.returncode == 0, shown.stderr
    assert "籍贯（native_place）→ 籍贯（hometown）" in shown.stdout
    assert "未导入的字段：政治面貌（political_status）：本系统的表单中没有对应字段" in shown.stdout
    assert "新增 3 条" in shown.stdout and "这是预览" in shown.stdout
    assert records(i, "student") == []

    applied = run(i["receiver"], *args, "--key", str(i["key"]), "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "已导入：新增 3 条，更新 0 条" in applied.stdout
    (student,) = records(i, "student")
    assert student.data["hometown"] == "浙江杭州" and student.data["home_address"] == "杭州市西湖区文三路 1 号"
    assert {r.data["student"] for r in records(i, "evaluation")} == {student.id}

    again = run(i["receiver"], *args, "--key", str(i["key"]), "--apply")
    assert again.returncode == 0 and "新增 0 条，更新 0 条" in again.stdout and "相同 3 条" in again.stdout


def test_tampered_or_not_a_package__refused(installations) -> None:
    i = installations
    package = i["tmp"] / "class.zip"
    done = run(i["sender"], "export-archive", "student", "--user", "reg", "--unit", "示范区教育局/示范区第一中学/高一/高一(1)班",
               "-o", str(package))
    assert done.returncode == 0, done.stderr
    tampered = i["tmp"] / "tampered.zip"

    def edit(members: dict) -> None:
        members["records.json"] = members["records.json"].replace("积极上进".encode(), "表现一般".encode())

    tampered.write_bytes(_rezip(package.read_bytes(), edit))
    args = ["--user", "reg_in", "--unit", RECEIVING_CLASS, "--key", str(i["key"]), "--apply"]
    refused = run(i["receiver"], "import-archive", str(tampered), *args)
    assert refused.returncode == 1 and "档案包已被改动或损坏" in refused.stderr and "records.json" in refused.stderr
    junk = i["tmp"] / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    refused = run(i["receiver"], "import-archive", str(junk), *args)
    assert refused.returncode == 1 and "不是本系统导出的档案包" in refused.stderr
    nobody = run(i["sender"], "export-archive", "student", "--user", "teacher", "--id", str(i["student"]), "-o", str(package))
    assert nobody.returncode == 1 and "未导出" in nobody.stderr
