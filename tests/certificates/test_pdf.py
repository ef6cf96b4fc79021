"""The certificate PDF read back with real parsers: pypdf for text, fonts and metadata, zxing-cpp for the QR image."""
from __future__ import annotations

import io
import re

import zxingcpp
from PIL import Image
from pypdf import PdfReader

from engine.certificates.signing import load_public_keys, parse_payload, verify_signature
from engine.fields.files import UploadedFile
from tests.certificates.support import certificates_of, graduate, pdf_text, service
from tests.support import CLASS_1, unit_id, valid_student


def photo_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (90, 120), (40, 90, 160)).save(out, format="PNG")
    return out.getvalue()


def student_with_photo(w) -> int:
    form = w.state.definitions.forms["student"]
    result = w.state.records.create(form, w.principal("reg"), unit_id(w.state, CLASS_1),
                                    {**valid_student(name="欧阳娜娜"), "photo": UploadedFile("照片.png", "image/png", photo_png())})
    assert result.ok, result.issues
    return result.record_id  # type: ignore[return-value]


def test_pdf__cjk_text_number_embedded_font_photo_and_qr(world) -> None:
    w = world("reg", "bureau")
    student = student_with_photo(w)
    graduate(w, student)
    (row,) = certificates_of(w, student)
    reg = w.login("reg")
    page = reg.get(f"/f/student/{student}")
    assert f'href="/cert/c/{row.id}/pdf"' in page.text
    answer = reg.get(f"/cert/c/{row.id}/pdf")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    data = answer.content
    text = pdf_text(data)
    for expected in ("毕业证书", "欧阳娜娜", f"证书编号：{row.number}", "示范区第一中学", "毕业日期：2026-06-30",
                     "学生欧阳娜娜，性别男，2008年5月12日生，于2023年入学"):
        assert expected in text, (expected, text)
    reader = PdfReader(io.BytesIO(data))
    fonts = [f.get_object() for f in reader.pages[0]["/Resources"]["/Font"].values()]
    assert fonts and all(re.fullmatch(r"/[A-Z]{6}\+NotoSerifCJKSC(Bold)?", str(f["/BaseFont"])) for f in fonts)  # subsets
    descriptors = [f["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object() for f in fonts]
    assert all("/FontFile3" in d for d in descriptors)  # the CFF outlines are in the file
    images = [image.image for image in reader.pages[0].images]
    assert any(image.size == (90, 120) for image in images)  # the photo, as uploaded
    scanned = [code.text for image in images for code in zxingcpp.read_barcodes(image.convert("RGB"))]
    assert scanned == [reader.metadata["/Subject"]]
    payload = parse_payload(scanned[0])
    assert payload.number == row.number and payload.content == row.content
    assert scanned[0].startswith("http://testserver.local/verify?n=")
    public = w.login("reg").get("/verify/key.pem").content
    assert verify_signature(payload, load_public_keys([public])) == "valid"


def test_pdf__refused_for_revoked_and_other_schools(world) -> None:
    w = world("reg", "reg_small", "bureau")
    student = w.student()
    graduate(w, student)
    (row,) = certificates_of(w, student)
    assert w.login("reg_small").get(f"/cert/c/{row.id}/pdf").status_code == 404
    assert w.login("bureau").get(f"/cert/c/{row.id}/pdf").status_code == 403
    service(w).revoke(w.state.definitions, w.principal("reg"), row.id, "错误颁发")
    refused = w.login("reg").get(f"/cert/c/{row.id}/pdf")
    assert refused.status_code == 409 and "该证书已撤销，不能打印" in refused.text
