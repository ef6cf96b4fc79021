"""`dangan verify-certificate` run as the installed command on real PDF files: genuine, tampered, forged, wrong key."""
from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ByteStringObject, ContentStream, NameObject, TextStringObject

from engine.certificates.signing import KeyStore, canonical
from tests.certificates.support import certificates_of, graduate, pdf_text
from tests.support import DEFINITIONS, REPO
from tests.workflows.support import make_world

DANGAN = str(REPO / ".venv" / "bin" / "dangan")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DANGAN, "verify-certificate", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str) -> dict[str, Path]:
    """One genuine certificate PDF, its public key, and the app's var directory (SQLite: the command is what is tested)."""
    var = tmp_path_factory.mktemp("var")
    w = make_world(sqlite_url, var, {"reg": ("registrar", "示范区教育局/示范区第一中学"), "bureau": ("bureau", "示范区教育局")})
    student = w.student()
    graduate(w, student)
    (row,) = certificates_of(w, student)
    pdf = var / "certificate.pdf"
    pdf.write_bytes(w.login("reg").get(f"/cert/c/{row.id}/pdf").content)
    key = var / "public.pem"
    key.write_bytes(w.login("reg").get("/verify/key.pem").content)
    w.state.db.dispose()
    return {"pdf": pdf, "key": key, "var": var}


def edited(pdf: Path, target: Path, change) -> Path:
    writer = PdfWriter(clone_from=PdfReader(pdf))
    change(writer)
    with target.open("wb") as out:
        writer.write(out)
    return target


def swap_name_glyphs(writer: PdfWriter) -> None:
    """Edit the printed “姓名：张三” into “姓名：三张” (its last two glyphs swapped), leaving the QR code alone."""
    page = writer.pages[0]
    content = ContentStream(page.get_contents(), writer)
    size = None
    for operands, operator in content.operations:
        if operator == b"Tf":
            size = float(operands[1])
        elif operator == b"Tj" and size == 10.5:  # the first line of the signed fields
            glyphs = bytes(operands[0].original_bytes if hasattr(operands[0], "original_bytes") else operands[0])
            operands[0] = ByteStringObject(glyphs[:-4] + glyphs[-2:] + glyphs[-4:-2])
            break
    page.replace_contents(content)


def test_genuine_pdf__ok_and_says_revocation_is_unknown(issued) -> None:
    done = run(str(issued["pdf"]), "--key", str(issued["key"]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "姓名：张三" in done.stdout and "签名：有效" in done.stdout and "未被篡改" in done.stdout
    assert "离线查验无法得知证书是否已被撤销" in done.stdout and "/verify?n=" in done.stdout


def test_default_keys__the_installation_s_own(issued) -> None:
    done = run(str(issued["pdf"]), env={"DANGAN_VAR": str(issued["var"])})
    assert done.returncode == 0, done.stdout + done.stderr


def test_tampered_text__refused(issued, tmp_path: Path) -> None:
    tampered = edited(issued["pdf"], tmp_path / "tampered.pdf", swap_name_glyphs)
    assert "姓名：三张" in pdf_text(tampered.read_bytes())  # the edit is what a reader now shows
    done = run(str(tampered), "--key", str(issued["key"]))
    assert done.returncode == 1
    assert "找不到“姓名：张三”，文字被改动过" in done.stderr and "结果：不可信" in done.stderr


def test_tampered_metadata__refused(issued, tmp_path: Path) -> None:
    subject = str(PdfReader(issued["pdf"]).metadata["/Subject"])
    query = {k: v[0] for k, v in parse_qs(urlsplit(subject).query).items()}
    content = json.loads(base64.urlsafe_b64decode(query["c"] + "=" * (-len(query["c"]) % 4)))
    content["f"] = [[k, label, "李四" if k == "name" else v] for k, label, v in content["f"]]
    query["c"] = base64.urlsafe_b64encode(canonical(content).encode()).decode().rstrip("=")
    forged = subject.split("?")[0] + "?" + urlencode(query)
    path = edited(issued["pdf"], tmp_path / "forged.pdf",
                  lambda w: w.add_metadata({NameObject("/Subject"): TextStringObject(forged)}))
    done = run(str(path), "--key", str(issued["key"]))
    assert done.returncode == 1 and "PDF 的二维码与文件中记录的证书信息不一致" in done.stderr
    # The same forged content given as QR text: the signature does not hold.
    done = run(forged, "--key", str(issued["key"]))
    assert done.returncode == 1 and "签名无效" in done.stderr


def test_qr_text_and_scanned_image__ok(issued, tmp_path: Path) -> None:
    reader = PdfReader(issued["pdf"])
    done = run(str(reader.metadata["/Subject"]), "--key", str(issued["key"]))
    assert done.returncode == 0, done.stdout + done.stderr
    seal = Image.open(DEFINITIONS / "certificates" / "seals" / "school.png").size
    (qr,) = [image.image for image in reader.pages[0].images if image.image.size != seal]
    scan = tmp_path / "scan.png"
    qr.convert("RGB").resize((600, 600), Image.NEAREST).save(scan)
    done = run(str(scan), "--key", str(issued["key"]))
    assert done.returncode == 0 and "证书：毕业证书" in done.stdout, done.stdout + done.stderr


def test_wrong_key_or_not_a_certificate__refused(issued, tmp_path: Path) -> None:
    stranger = KeyStore(tmp_path / "stranger")
    other = tmp_path / "other.pem"
    other.write_bytes(stranger.current_public_pem())
    done = run(str(issued["pdf"]), "--key", str(other))
    assert done.returncode == 1 and "不在所给的公钥中" in done.stderr
    plain = tmp_path / "plain.pdf"
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    with plain.open("wb") as out:
        writer.write(out)
    done = run(str(plain), "--key", str(issued["key"]))
    assert done.returncode == 1 and "这不是本系统生成的证书 PDF" in done.stderr
    done = run(str(issued["pdf"]), "--key", str(tmp_path / "missing.pem"))
    assert done.returncode == 2 and "无法读取公钥" in done.stderr
