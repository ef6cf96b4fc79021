"""The home page (the user's forms), attachment downloads, health check."""
from __future__ import annotations

from litestar.params import FromPath
from litestar import Controller, Request, get
from litestar.response import Response, Template

from engine.attachments import AttachmentService
from web.auth import app_state, current_principal
from web.downloads import file_response
from web.pages import page
from web.reports import dashboard_context


class HomeController(Controller):
    path = "/"

    @get("/", name="home")
    async def home(self, request: Request) -> Template:
        return page(request, "home.html", dashboard=dashboard_context(request), title="首页")

    @get("/healthz", opt={"public": True}, name="health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/files/{attachment_id:str}", name="files:download")
    async def download(self, request: Request, attachment_id: FromPath[str]) -> Response:
        state = app_state(request)
        served = AttachmentService(state.db, state.records).record_file(state.definitions, current_principal(request),
                                                                         attachment_id)
        return file_response(served)
