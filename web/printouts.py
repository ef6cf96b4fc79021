"""A record's printout (PDF): a thin route over engine/printouts.py, and the record page's button."""
from __future__ import annotations

from urllib.parse import quote

from litestar import Controller, Request, get
from litestar.response import Response

from engine.permissions import Principal
from engine.printouts import PrintService
from engine.records import StoredRecord
from engine.spec import FormSpec
from web.auth import app_state, current_principal
from web.features import Feature
from web.guards import form_guard
from web.params import Id


class PrintoutController(Controller):
    path = "/f/{form_key:str}"
    guards = [form_guard]

    @get("/{record_id:int}/print", opt={"action": "read"}, name="printouts:pdf", sync_to_thread=True)
    def pdf(self, request: Request, record_id: Id) -> Response:
        # In a thread: embedding the font subset takes CPU, as a certificate's PDF does (web/certificates.py).
        from engine.printout_pdf import render_printout  # noqa: PLC0415 - fpdf2 and fontTools: not for every worker's start

        state = app_state(request)
        form = state.definitions.forms[request.path_params["form_key"]]
        printout = PrintService(state.db, state.records).printout(state.definitions, current_principal(request), form, record_id)
        name = quote(f"{printout.title}-{record_id}.pdf", safe="")
        return Response(render_printout(printout), media_type="application/pdf",
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}", "Cache-Control": "private, no-store"})


def _record_actions(form: FormSpec, principal: Principal, record: StoredRecord) -> list[dict[str, str]]:
    return [{"href": f"/f/{form.key}/{record.id}/print", "label": f"打印{form.print_title or ''}（PDF）"}]


def printouts_feature() -> Feature:
    return Feature(name="printouts", routes=(PrintoutController,), record_actions=_record_actions)
