"""The offline check of a certificate: a PDF, a scanned image or the QR text, against published public keys.

From a PDF it reads the payload three ways — the document's Subject (written with it), the QR image on the page
(decoded with zxing-cpp, as a phone would) and the printed text (pypdf) — and every one must agree with the signed
content. Revocation cannot be known offline: the result says so and where to look it up.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlencode

import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from PIL import Image
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from engine.certificates.pdf import KEYWORD, field_line, number_line
from engine.certificates.signing import (
    PUBLIC_PREFIX, VERIFY_PATH, Payload, PayloadError, load_public_keys, parse_payload, verify_signature,
)
from engine.fields.files import image_format

# pypdf gives fpdf2's two-byte glyph codes back with NUL padding; spacing depends on the reader: both are dropped.
_SPACE = re.compile(r"[\s\x00]+")


@dataclass
class OfflineCheck:
    """What was found and whether it holds: `problems` empty means genuine and untampered (revocation unknown)."""

    source: str  # "pdf" | "image" | "text"
    payload: Payload | None = None
    content: dict[str, Any] = field(default_factory=dict)
    signature: str = ""  # valid | invalid | unknown_key
    problems: list[str] = field(default_factory=list)
    base_url: str = ""  # the installation the QR code points to

    @property
    def ok(self) -> bool:
        return self.payload is not None and self.signature == "valid" and not self.problems

    def verify_url(self) -> str:
        """Where to ask whether it has been revoked: the QR's verification page, by number only."""
        if self.payload is None:
            return ""
        return f"{self.base_url}{VERIFY_PATH}?{urlencode({'n': self.payload.number})}"


def public_keys_in(directory: Path) -> dict[str, Ed25519PublicKey]:
    """The public keys an installation published in its key directory (none made here)."""
    return load_public_keys(p.read_bytes() for p in sorted(Path(directory).glob(f"{PUBLIC_PREFIX}*.pem")))


def check(data: bytes, keys: Mapping[str, Ed25519PublicKey]) -> OfflineCheck:
    """Check a file's bytes (PDF or image) or the QR text itself (UTF-8)."""
    if data.startswith(b"%PDF"):
        result = _from_pdf(data)
    elif image_format(data) is not None:
        result = _from_texts("image", _decode_qr([_open_image(data)]))
    else:
        result = _from_texts("text", [data.decode("utf-8", errors="replace")])
    if result.payload is None:
        return result
    payload = result.payload
    result.signature = verify_signature(payload, keys)
    if result.signature == "invalid":
        result.problems.append("签名无效：证书内容被改动过，或证书是伪造的")
    elif result.signature == "unknown_key":
        result.problems.append(f"签名所用的密钥（{payload.key}）不在所给的公钥中，无法确认真伪；请使用颁发学校公布的公钥")
    result.content = json.loads(payload.content)
    if result.content.get("n") != payload.number:
        result.problems.append(f"二维码中的编号“{payload.number}”与签名内容中的编号“{result.content.get('n')}”不一致")
    return result


def _from_pdf(data: bytes) -> OfflineCheck:
    result = OfflineCheck("pdf")
    try:
        reader = PdfReader(io.BytesIO(data))
        subject = str((reader.metadata or {}).get("/Subject") or "")
        keywords = str((reader.metadata or {}).get("/Keywords") or "")
        printed = _SPACE.sub("", "".join(page.extract_text() or "" for page in reader.pages))
        images = [image.image for page in reader.pages for image in page.images if image.image is not None]
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        result.problems.append(f"无法读取 PDF：{exc}")
        return result
    scanned = _decode_qr(images)
    if KEYWORD not in keywords and not scanned:
        result.problems.append("这不是本系统生成的证书 PDF：没有证书信息，也没有证书二维码")
        return result
    found = _from_texts("pdf", scanned or [subject])
    result.payload, result.base_url, result.problems = found.payload, found.base_url, found.problems
    if result.payload is None:
        return result
    if not scanned:
        result.problems.append("PDF 中没有可识别的证书二维码（图片被替换或损坏）")
    elif subject and subject.strip() != scanned[0].strip():
        result.problems.append("PDF 的二维码与文件中记录的证书信息不一致，文件被改动过")
    _compare_printed(result, printed)
    return result


def _compare_printed(result: OfflineCheck, printed: str) -> None:
    """Every signed value must be printed as “label：value” (whitespace aside), and the number as well."""
    assert result.payload is not None
    try:
        content = json.loads(result.payload.content)
    except ValueError:
        return
    expected = [number_line(str(content.get("n", "")))]
    expected += [field_line(label, value) for _key, label, value in content.get("f", [])]
    for line in expected:
        if _SPACE.sub("", line) not in printed:
            result.problems.append(f"PDF 上印的文字与签名内容不一致：找不到“{line}”，文字被改动过")


def _from_texts(source: str, texts: list[str]) -> OfflineCheck:
    result = OfflineCheck(source)
    for text in texts:
        try:
            result.payload = parse_payload(text)
        except PayloadError as exc:
            result.problems.append(str(exc))
            continue
        base = text.strip().split("?", 1)[0]
        result.base_url = base[: -len(VERIFY_PATH)] if base.endswith(VERIFY_PATH) else base
        result.problems = []
        return result
    if not texts:
        result.problems.append("没有找到证书二维码")
    return result


def _open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _decode_qr(images: list[Any]) -> list[str]:
    texts = []
    for image in images:
        try:
            found = zxingcpp.read_barcodes(image.convert("RGB"), formats=zxingcpp.BarcodeFormat.QRCode)
        except (ValueError, OSError):
            continue
        texts += [barcode.text for barcode in found if barcode.text]
    return texts
