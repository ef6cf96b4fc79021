"""Attachments as a principal may read them: the access rule of the record or application each belongs to, and what
its bytes are (decoded here, never the type the uploading browser claimed)."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from engine.permissions import Principal, can, is_masked, policy
from engine.records import RecordService
from engine.refusals import NotFound
from engine.spec import Definitions
from engine.storage.db import Database
from engine.storage.models import Attachment
from engine.workflows.service import WorkflowService

OCTET_STREAM = "application/octet-stream"
# The only types shown in the page: raster formats a browser cannot run as a document. SVG (script, forms, links),
# HTML, PDF and everything else is a download, whatever it claims to be.
INLINE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
MAX_PIXELS = 40_000_000  # a photo or a scan; more is a decompression bomb, not a picture
APPLICATION_PREFIX = "wf:"  # an application's attachment: form_key "wf:<workflow>", record_id the application


class AttachmentNotFound(NotFound):
    code = "attachment_not_found"


@dataclass(frozen=True)
class ServedFile:
    filename: str
    content: bytes
    media_type: str
    inline: bool


def sniff(data: bytes) -> tuple[str, bool]:
    """(media type, inline): a JPEG, PNG or WebP that Pillow opens and verifies is served inline as what it is;
    anything else is application/octet-stream, to be downloaded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(INLINE_FORMATS)) as image:
                if image.width * image.height > MAX_PIXELS:
                    return OCTET_STREAM, False
                found = image.format
                image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return OCTET_STREAM, False
    media = INLINE_FORMATS.get(found or "")
    return (media, True) if media else (OCTET_STREAM, False)


class AttachmentService:
    """Every refusal is AttachmentNotFound: an attachment out of reach and one that does not exist read the same."""

    def __init__(self, db: Database, records: RecordService) -> None:
        self.db, self.records = db, records

    def record_file(self, definitions: Definitions, principal: Principal, attachment_id: str) -> ServedFile:
        """Readable only through its record: the form's read right, the record in read scope, the field neither
        hidden nor masked for this principal."""
        attachment = self._find(attachment_id)
        form = definitions.forms.get(attachment.form_key) if attachment is not None else None
        if attachment is None or form is None or attachment.record_id is None or not can(principal, "read", form):
            raise AttachmentNotFound()
        found = policy(principal, form)
        spec = form.fields.get(attachment.field_key)
        if found is None or spec is None or attachment.field_key in found.hidden or is_masked(found, spec):
            raise AttachmentNotFound()
        if self.records.get(form, attachment.record_id, principal, "read") is None:
            raise AttachmentNotFound()
        return _served(attachment)

    def application_file(self, definitions: Definitions, principal: Principal, attachment_id: str) -> ServedFile:
        """Readable by whoever may see the application it was uploaded to (WorkflowService.can_view)."""
        attachment = self._find(attachment_id)
        if attachment is None or not attachment.form_key.startswith(APPLICATION_PREFIX) or attachment.record_id is None:
            raise AttachmentNotFound()
        workflows = WorkflowService(self.db, self.records)
        bundle = workflows.load(attachment.record_id)
        if bundle is None or not workflows.can_view(definitions, principal, bundle):
            raise AttachmentNotFound()
        return _served(attachment)

    def _find(self, attachment_id: str) -> Attachment | None:
        with self.db.read() as s:
            return s.get(Attachment, attachment_id)


def _served(attachment: Attachment) -> ServedFile:
    media, inline = sniff(attachment.content)
    return ServedFile(attachment.filename, attachment.content, media, inline)
