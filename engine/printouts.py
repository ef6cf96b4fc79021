"""A record printed as a PDF — a term's 综合素质评价 with its student's particulars above it, or any record — in the
certificates' PDF machinery (engine/printout_pdf.py: fpdf2 with an embedded subset of the CJK font, as engine/certificates/pdf.py).

What is printed is what the principal may read: the record in their read scope, hidden fields left out, masked
ones masked, and the record it belongs to (`belongs_to`) only if that one is in their read scope too. A form's
`print:` names the printout's title and the parent's fields printed above the record's own.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import select

from engine.org import ancestor_ids
from engine.permissions import Principal, is_masked, policy
from engine.records.model import StoredRecord
from engine.records.service import RecordService
from engine.refusals import NotFound
from engine.spec import Definitions, FieldSpec, FormPolicy, FormSpec
from engine.storage.models import Attachment, OrgUnit

NOT_PRINTED = ("file", "table")  # a file is not text; a table prints badly in one cell (the record page shows it)


@dataclass(frozen=True)
class Printout:
    title: str
    unit: str  # the record's unit, its full name
    heading: tuple[tuple[str, str], ...]  # the parent record's fields: (label, text)
    rows: tuple[tuple[str, str], ...]  # the record's own fields
    photo: bytes | None
    printed_on: dt.date


class PrintService:
    def __init__(self, db: Any, records: RecordService) -> None:
        self.db, self.records = db, records

    def printout(self, definitions: Definitions, principal: Principal, form: FormSpec, record_id: int) -> Printout:
        record = self.records.get(form, record_id, principal, "read")
        found = policy(principal, form)
        if record is None or found is None:
            raise NotFound()
        self.records.titled(principal, form, [record])
        rows = _texts(form, found, record, [k for k in form.fields if k != form.parent_field])
        heading: tuple[tuple[str, str], ...] = ()
        photo = None
        parent_form = definitions.forms.get(form.parent_form) if form.parent_field else None
        parent_id = record.data.get(form.parent_field) if form.parent_field else None
        if parent_form is not None and isinstance(parent_id, int):
            parent = self.records.get(parent_form, parent_id, principal, "read")
            parent_policy = policy(principal, parent_form)
            if parent is not None and parent_policy is not None:
                keys = list(form.print_parent_fields) or [parent_form.title_field]
                heading = _texts(parent_form, parent_policy, parent, keys)
                photo = self._photo(parent_form, parent_policy, parent)
        with self.db.read() as s:
            unit = s.get(OrgUnit, record.unit_id)
            names = dict(s.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(ancestor_ids(unit.path)))).all()) if unit else {}
        full = "/".join(names.get(i, "") for i in ancestor_ids(unit.path)) if unit else record.unit_name
        return Printout(form.print_title or form.title, full, heading, rows, photo, dt.date.today())

    def _photo(self, form: FormSpec, found: FormPolicy, record: StoredRecord) -> bytes | None:
        for key, spec in form.fields.items():
            value = record.values.get(key)
            if spec.kind.name == "image" and isinstance(value, Mapping) and key not in found.hidden and not is_masked(found, spec):
                with self.db.read() as s:
                    attachment = s.get(Attachment, value.get("id"))
                    return attachment.content if attachment is not None else None
        return None


def _texts(form: FormSpec, found: FormPolicy, record: StoredRecord, keys: list[str]) -> tuple[tuple[str, str], ...]:
    shown = []
    for key in keys:
        spec: FieldSpec | None = form.fields.get(key)
        if spec is None or key in found.hidden or spec.kind.name in (*NOT_PRINTED, "image"):
            continue
        value = record.values.get(key)
        text = "" if value is None else spec.kind.to_text(value)
        shown.append((spec.label, spec.kind.mask(text) if text and is_masked(found, spec) else text))
    return tuple(shown)
