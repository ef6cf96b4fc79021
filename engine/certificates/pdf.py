"""A certificate as a PDF: fpdf2 with an embedded subset of a CJK font, the photo, the seal and a signed QR code.

fpdf2 because it embeds a subset of an OpenType font with CFF outlines (Debian's Noto CJK .ttc, through fontTools):
the PDF shows the same glyphs on every reader, carries only the characters it prints (~10 KB of font), and its text
layer stays real text that `verify-certificate` reads back. ReportLab embeds TrueType outlines only (its CJK
fallback, STSong-Light, is not embedded at all); WeasyPrint needs Pango and a browser-grade layout engine.
"""
from __future__ import annotations

import io
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import segno
from fontTools.ttLib import TTCollection
from fpdf import FPDF
from PIL import Image

from engine.certificates.errors import FontMissing
from engine.certificates.service import Issued
from engine.certificates.signing import Payload
from engine.certificates.spec import CertificateSpec
from engine.certificates.text import cn_date

FONT_DIR = Path("/usr/share/fonts/opentype/noto")  # Debian's fonts-noto-cjk, installed by scripts/setup
DEFAULT_FONT, DEFAULT_BOLD = FONT_DIR / "NotoSerifCJK-Regular.ttc", FONT_DIR / "NotoSerifCJK-Bold.ttc"
KEYWORD = "dangan-certificate"  # marks the PDF; its Subject is the QR payload (read back by verify-certificate)
INK, FRAME = (30, 30, 30), (150, 30, 30)
_fonts_lock = threading.Lock()
# fontTools logs every subsetting step at INFO: hundreds of lines per PDF in the server's log.
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)


def number_line(number: str) -> str:
    return f"证书编号：{number}"


def field_line(label: str, value: str) -> str:
    return f"{label}：{value}"


def render_pdf(spec: CertificateSpec, issued: Issued, payload: Payload, photo: bytes | None, base_url: str) -> bytes:
    """The certificate's PDF; every signed value is printed as “label：value”, which verify-certificate checks."""
    layout = spec.layout
    width, height = layout.size_mm
    pdf = FPDF(orientation="L" if layout.landscape else "P", unit="mm", format=(min(width, height), max(width, height)))
    pdf.set_auto_page_break(False)
    pdf.set_margin(0)
    _metadata(pdf, issued, payload, base_url)
    regular, bold = _font_files(layout.font)
    pdf.add_font("body", fname=str(regular), collection_font_number=_sc_index(str(regular)))
    pdf.add_font("title", fname=str(bold), collection_font_number=_sc_index(str(bold)))
    pdf.add_page()
    texts = issued.values
    texts.update(number=issued.number, school=issued.school, issued_on=issued.issued_on.isoformat(), title=issued.title)
    _frame(pdf, width, height)
    _title(pdf, layout.title + ("（补发）" if issued.replaces_id else ""), width)
    left = _photo(pdf, photo, width, height)
    y = _body(pdf, layout.text(texts), left, width)
    _fields(pdf, issued.fields, left, y + 4, width)
    _footer(pdf, issued, payload, base_url, width, height, layout.seal)
    return bytes(pdf.output())


def _metadata(pdf: FPDF, issued: Issued, payload: Payload, base_url: str) -> None:
    pdf.set_title(f"{issued.title} {issued.number}")
    pdf.set_author(issued.school)
    pdf.set_creator("Dangan")
    pdf.set_keywords(KEYWORD)
    pdf.set_subject(payload.url(base_url))
    pdf.set_lang("zh-CN")


def _frame(pdf: FPDF, width: float, height: float) -> None:
    pdf.set_draw_color(*FRAME)
    pdf.set_line_width(1.2)
    pdf.rect(8, 8, width - 16, height - 16)
    pdf.set_line_width(0.4)
    pdf.rect(11, 11, width - 22, height - 22)


def _title(pdf: FPDF, title: str, width: float) -> None:
    pdf.set_text_color(*FRAME)
    pdf.set_font("title", size=30)
    pdf.set_char_spacing(6)
    pdf.set_xy(0, 20)
    pdf.cell(width, 16, title, align="C")
    pdf.set_char_spacing(0)
    pdf.set_text_color(*INK)


def _photo(pdf: FPDF, photo: bytes | None, width: float, height: float) -> float:
    """The photo (or an empty frame for one) at the left; returns where the text starts."""
    x, y, w, h = 24.0, 46.0, 33.0, 44.0
    image = _image(photo)
    if image is not None:
        pdf.image(image, x=x, y=y, w=w, h=h, keep_aspect_ratio=True)
    else:
        pdf.set_draw_color(160, 160, 160)
        pdf.set_line_width(0.2)
        pdf.rect(x, y, w, h)
        pdf.set_font("body", size=10)
        pdf.set_xy(x, y + h / 2 - 3)
        pdf.cell(w, 6, "照片", align="C")
    return x + w + 12


def _image(data: bytes | None) -> Image.Image | None:
    if not data:
        return None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # a damaged upload leaves the photo's place empty rather than failing the certificate
    return image.convert("RGB")


def _body(pdf: FPDF, text: str, left: float, width: float) -> float:
    pdf.set_font("body", size=16)
    pdf.set_xy(left, 48)
    pdf.multi_cell(width - left - 24, 11, text, align="L")
    return pdf.get_y()


def _fields(pdf: FPDF, fields: tuple[tuple[str, str, str], ...], left: float, top: float, width: float) -> None:
    """The signed values, “label：value”, in columns."""
    pdf.set_font("body", size=10.5)
    columns = 3
    column = (width - left - 24) / columns
    for index, (_key, label, value) in enumerate(fields):
        pdf.set_xy(left + column * (index % columns), top + 7 * (index // columns))
        pdf.cell(column, 7, field_line(label, value))


def _footer(pdf: FPDF, issued: Issued, payload: Payload, base_url: str, width: float, height: float, seal: str) -> None:
    size = 32.0
    qr_x, qr_y = 24.0, height - 22 - size
    pdf.image(_qr_png(payload.url(base_url)), x=qr_x, y=qr_y, w=size, h=size)
    pdf.set_font("body", size=10.5)
    pdf.set_xy(qr_x + size + 4, qr_y + 4)
    pdf.cell(100, 6, number_line(issued.number))
    pdf.set_xy(qr_x + size + 4, qr_y + 12)
    pdf.set_font("body", size=9)
    pdf.cell(110, 5, f"扫描二维码或访问 {base_url.rstrip('/')}/verify 查验真伪")
    right = width - 24
    pdf.set_font("body", size=14)
    pdf.set_xy(right - 90, height - 52)
    pdf.cell(90, 9, issued.school, align="C")
    pdf.set_xy(right - 90, height - 42)
    pdf.cell(90, 9, cn_date(issued.issued_on), align="C")
    if seal:
        pdf.image(seal, x=right - 45 - 20, y=height - 72, w=40, h=40)


def _qr_png(url: str) -> io.BytesIO:
    out = io.BytesIO()
    segno.make(url, error="m", micro=False).save(out, kind="png", scale=6, border=2)
    out.seek(0)
    return out


def _font_files(font: str) -> tuple[Path, Path]:
    if font:
        return Path(font), Path(font)
    if not DEFAULT_FONT.is_file():
        raise FontMissing(path=str(DEFAULT_FONT))
    return DEFAULT_FONT, DEFAULT_BOLD if DEFAULT_BOLD.is_file() else DEFAULT_FONT


@lru_cache(maxsize=8)
def _sc_index(path: str) -> int:
    """In a font collection, the face for Simplified Chinese (Noto's “… CJK SC”); 0 for a single font."""
    if not path.lower().endswith(".ttc"):
        return 0
    with _fonts_lock:
        collection = TTCollection(path, lazy=True)
        names: list[Any] = [font["name"].getDebugName(1) or "" for font in collection.fonts]
    return next((i for i, name in enumerate(names) if name.endswith(" SC")), 0)
