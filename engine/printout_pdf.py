"""A printout (engine/printouts.py) as an A4 PDF, with the certificates' fonts (engine/certificates/pdf.py)."""
from __future__ import annotations

from fpdf import FPDF

from engine.certificates.pdf import INK, _font_files, _image, _sc_index
from engine.printouts import Printout


def render_printout(printout: Printout) -> bytes:
    """A4 portrait: the title, the unit, the parent's particulars (with the photo), the record's fields as a table."""
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(True, margin=18)
    pdf.set_margins(20, 18, 20)
    pdf.set_title(printout.title)
    pdf.set_creator("Dangan")
    pdf.set_lang("zh-CN")
    regular, bold = _font_files("")
    pdf.add_font("body", fname=str(regular), collection_font_number=_sc_index(str(regular)))
    pdf.add_font("title", fname=str(bold), collection_font_number=_sc_index(str(bold)))
    pdf.add_page()
    pdf.set_text_color(*INK)
    pdf.set_font("title", size=20)
    pdf.cell(0, 12, printout.title, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("body", size=10)
    pdf.cell(0, 7, printout.unit, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    top = pdf.get_y()
    image = _image(printout.photo)
    if image is not None:
        pdf.image(image, x=210 - 20 - 25, y=top, w=25, h=33, keep_aspect_ratio=True)
    pdf.set_font("body", size=11)
    for label, text in printout.heading:
        pdf.cell(120, 7, f"{label}：{text}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y(), top + (36 if image is not None else 0)) + 4)
    with pdf.table(col_widths=(40, 130), text_align=("LEFT", "LEFT"), first_row_as_headings=False, line_height=7) as table:
        for label, text in printout.rows:
            row = table.row()
            row.cell(label)
            row.cell(text)
    pdf.ln(8)
    pdf.set_font("body", size=10)
    pdf.cell(0, 7, f"打印日期：{printout.printed_on.isoformat()}", align="R")
    return bytes(pdf.output())
