"""Certificate test helpers: definitions with a certificate written in the test, graduating students, PDFs read back."""
from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from textwrap import dedent

from pypdf import PdfReader
from sqlalchemy import select

from engine.certificates.service import CertificateService
from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.storage.models import Certificate
from tests.support import DEFINITIONS, SCHOOL
from tests.workflows.support import PEOPLE as WORKFLOW_PEOPLE, World, application_id
from web.certificates import certificate_service

SHIPPED = (DEFINITIONS / "certificates" / "graduation.yaml").read_text(encoding="utf-8")
PEOPLE = {**WORKFLOW_PEOPLE, "reg_small": ("registrar", "示范区教育局/示范区实验小学")}
GRADUATION = {"graduation_date": "2026-06-30", "destination": "就业", "employer": "示范公司"}


def definitions_with(root: Path, certificates: dict[str, str], drop_shipped: bool = False) -> Path:
    """A copy of the shipped definitions with `certificates` ({name: yaml}) written into certificates/."""
    shutil.copytree(DEFINITIONS, root)
    if drop_shipped:
        (root / "certificates" / "graduation.yaml").unlink()
    for name, text in certificates.items():
        (root / "certificates" / f"{name}.yaml").write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def errors_of(root: Path) -> list[str]:
    try:
        load_definitions(root)
    except DefinitionErrors as exc:
        return [str(e) for e in exc.errors]
    return []


def locate(text: str, needle: str, offset: int = 0) -> str:
    """`line:column` of `needle` (moved on by `offset` characters) in the (dedented) YAML text."""
    text = dedent(text).lstrip("\n")
    position = text.index(needle) + offset
    return f"{text.count(chr(10), 0, position) + 1}:{position - (text.rfind(chr(10), 0, position) + 1) + 1}"


def service(w: World) -> CertificateService:
    return certificate_service(w.state)


def graduate(w: World, student: int) -> int:
    """The 毕业 application, started by the school's registrar and approved by the bureau: its id."""
    w.evaluation(student)  # 毕业审核 asks for one of the final year
    app = application_id(w.login("reg").start("graduate", student, GRADUATION))
    answer = w.login("bureau").decide(app, "approve")
    assert answer.status_code == 303, answer.text[:2000]
    return app


def certificates_of(w: World, record: int) -> list[Certificate]:
    with w.state.db.read() as s:
        return list(s.scalars(select(Certificate).where(Certificate.record_id == record).order_by(Certificate.id)))


def pdf_text(data: bytes) -> str:
    """The PDF's text layer as pypdf reads it, without the spacing and NUL padding a reader adds."""
    return re.sub(r"[\s\x00]+", "", "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages))


__all__ = ["GRADUATION", "PEOPLE", "SCHOOL", "SHIPPED"]
