"""The home page (the user's forms), attachment downloads, health check."""
from __future__ import annotations

from urllib.parse import quote

from litestar.params import FromPath
from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.response import Response, Template

from engine.permissions import can, is_masked, policy
from engine.storage.models import Attachment
from web.auth import app_state, current_principal
from web.pages import page


class HomeController(Controller):
    path = "/"

    @get("/", name="home")
    async def home(self, request: Request) -> Template:
        return page(request, "home.html", title="首页")

    @get("/healthz", opt={"public": True}, name="health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/files/{attachment_id:str}", name="files:download")
    async def download(self, request: Request, attachment_id: FromPath[str]) -> Response:
        """An attachment is readable only through its record: same form right, same scope, field not hidden."""
        state, principal = app_state(request), current_principal(request)
        with state.db.read() as s:
            attachment = s.get(Attachment, attachment_id)
        form = state.definitions.forms.get(attachment.form_key) if attachment else None
        if attachment is None or form is None or attachment.record_id is None or not can(principal, "read", form):
            raise NotFoundException("附件不存在或不在您的权限范围内")
        found = policy(principal, form)
        spec = form.fields.get(attachment.field_key)
        record = state.records.get(form, attachment.record_id, principal, "read")
        if record is None or found is None or attachment.field_key in found.hidden or (spec is not None and is_masked(found, spec)):
            raise NotFoundException("附件不存在或不在您的权限范围内")
        inline = attachment.content_type.startswith("image/")
        disposition = "inline" if inline else "attachment"
        return Response(
            attachment.content, media_type=attachment.content_type if inline else "application/octet-stream",
            headers={
                "Content-Disposition": f"{disposition}; filename*=UTF-8''{_quote(attachment.filename)}",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, no-store",
            },
        )


def _quote(name: str) -> str:
    return quote(name, safe="")
