"""升学衔接 pages: archives handed over to this unit (confirm or decline), and the log of those it handed over.

The rules are HandoverService's (engine/archives/handover.py): who receives, what they read, who may decide.
These handlers pass the principal, show the result, and rewrite the record's attachment links to go through the
handover (the receiver reads them before the record is theirs).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Response, Template

from engine.archives.handover import STATUS_LABELS, HandoverService, receives
from engine.attachments import AttachmentService
from engine.permissions import Principal, policy
from engine.records import ListQuery, StoredRecord
from engine.refusals import Refused
from engine.spec import Definitions, FormSpec
from engine.validation import clean_record
from web.auth import app_state, current_principal
from web.downloads import file_response
from web.features import Feature
from web.pages import NavItem, flash, page
from web.params import Id, PageNo, parse_id
from web.presenter import FieldView, field_view
from web.state import AppState
from web.workflows.badge import counts, per_user

TABS = {"pending": "待确认", "done": "已处理", "sent": "本单位移交"}
CHILDREN_SHOWN = 100


def _service(state: AppState) -> HandoverService:
    return HandoverService(state.db, state.records)


class HandoverController(Controller):
    path = "/handovers"

    @get("/", name="handovers:list")
    async def index(self, request: Request, page_no: PageNo) -> Template:
        state, principal = app_state(request), current_principal(request)
        tab = request.query_params.get("tab", "pending")
        tab = tab if tab in TABS else "pending"
        service = _service(state)
        listing = service.sent(state.definitions, principal, page_no) if tab == "sent" \
            else service.incoming(principal, tab, page_no)
        return page(request, "handovers/list.html", tab=tab, tabs=TABS, listing=listing, labels=STATUS_LABELS,
                    page_query=lambda number: urlencode({"tab": tab, "page": number}), title="升学衔接")

    @get("/{handover_id:int}", name="handovers:view")
    async def view(self, request: Request, handover_id: Id) -> Template:
        return _view_page(request, handover_id)

    @post("/{handover_id:int}/confirm", name="handovers:confirm")
    async def confirm(self, request: Request, handover_id: Id) -> Response:
        state, principal = app_state(request), current_principal(request)
        data = await request.form()
        try:
            # Writes wait for locks (another save, an import's batch): through the app's one WriteRunner.
            row = await state.writes.in_thread(_service(state).confirm, state.definitions, principal, handover_id,
                                               parse_id(str(data.get("unit", ""))), str(data.get("remark", "")))
        except Refused as exc:
            return _view_page(request, handover_id, confirm_error=exc.message, status=_status(exc))
        counts.changed()  # the 升学衔接 badge of every worker
        flash(request, f"已确认录取：{row.subject} 的档案已转入 {row.placed_name}")
        return Redirect(f"/f/{row.form_key}/{row.record_id}", status_code=303)

    @post("/{handover_id:int}/decline", name="handovers:decline")
    async def decline(self, request: Request, handover_id: Id) -> Response:
        state, principal = app_state(request), current_principal(request)
        data = await request.form()
        try:
            row = await state.writes.in_thread(_service(state).decline, state.definitions, principal, handover_id,
                                               str(data.get("reason", "")))
        except Refused as exc:
            return _view_page(request, handover_id, decline_error=exc.message, status=_status(exc),
                              reason=str(data.get("reason", "")))
        counts.changed()
        flash(request, f"已退回：{row.subject} 的档案留在 {row.from_name}")
        return Redirect("/handovers/?tab=done", status_code=303)

    @get("/{handover_id:int}/files/{attachment_id:str}", name="handovers:file")
    async def file(self, request: Request, handover_id: Id, attachment_id: FromPath[str]) -> Response:
        """An attachment of the handed-over record (or of a child record), as the receiver reads them."""
        state, principal = app_state(request), current_principal(request)
        service = _service(state)
        found = service.record(state.definitions, principal, service.get(state.definitions, principal, handover_id))
        viewer = found[0] if found is not None else principal
        return file_response(AttachmentService(state.db, state.records).record_file(state.definitions, viewer, attachment_id))


def _status(exc: Refused) -> int:
    return {"not_found": 404, "forbidden": 403, "conflict": 409}.get(exc.kind, 422)


def _view_page(request: Request, handover_id: int, status: int = 200, **errors: str) -> Template:
    state, principal = app_state(request), current_principal(request)
    service = _service(state)
    row = service.get(state.definitions, principal, handover_id)  # HandoverNotFound: 404 through web/errors.py
    form = state.definitions.forms[row.form_key]
    found = service.record(state.definitions, principal, row)
    sections, children = [], []
    if found is not None:
        viewer, record = found
        sections = _sections(form, viewer, record, row.id)
        children = _children(state, state.definitions, form, viewer, record, row.id)
    deciding = row.status == "pending" and receives(principal, row)
    built = page(request, "handovers/view.html", row=row, form=form, labels=STATUS_LABELS, sections=sections,
                 children=children, deciding=deciding, record_shown=found is not None,
                 receiving=receives(principal, row),
                 placements=service.placements(state.definitions, row) if deciding else [],
                 title=f"档案移交 · {row.subject}", **{"confirm_error": "", "decline_error": "", "reason": "", **errors})
    return Template(template_name="handovers/view.html", context=built.context, status_code=status)


def _through(view: FieldView, handover_id: int) -> FieldView:
    """An attachment link goes through the handover: the record is not yet in the receiver's own scope."""
    if view.link.startswith("/files/"):
        view.link = f"/handovers/{handover_id}{view.link}"
    elif view.link:
        view.link = ""  # a linked record out of the receiver's reach
    for row in view.rows:
        for cell in row:
            _through(cell, handover_id)
    return view


def _sections(form: FormSpec, viewer: Principal, record: StoredRecord, handover_id: int) -> list[Any]:
    found = policy(viewer, form)
    assert found is not None
    cleaned = clean_record(form, record.values)
    return [(section, [_through(field_view(form, form.fields[k], found, record.values.get(k), visible=k not in cleaned.hidden),
                                handover_id)
                       for k in section.fields if k not in found.hidden])
            for section in form.sections]


def _children(state: AppState, definitions: Definitions, form: FormSpec, viewer: Principal, record: StoredRecord,
              handover_id: int) -> list[dict[str, Any]]:
    panels = []
    for child in definitions.forms.values():
        found = policy(viewer, child)
        if child.parent_form != form.key or found is None:
            continue
        result = state.records.list(child, viewer, ListQuery(filters={child.parent_field: str(record.id)},
                                                             per_page=CHILDREN_SHOWN, sort=child.list.default_sort))
        state.records.titled(viewer, child, result.records)
        items = []
        for r in result.records:
            fields = [_through(field_view(child, spec, found, r.values.get(k)), handover_id)
                      for k, spec in child.fields.items() if k not in found.hidden and k != child.parent_field]
            columns = [v for v in fields if v.key in child.list.columns][:4] or fields[:3]
            items.append({"record": r, "fields": fields, "summary": " · ".join(v.display for v in columns if v.display)})
        panels.append({"form": child, "items": items, "total": result.total})
    return panels


def _visible(state: AppState) -> Any:
    def visible(principal: Principal) -> bool:
        roles = {w.effects.hand_over.confirm_by for w in state.definitions.workflows.values() if w.effects.hand_over}
        forms = {w.form for w in state.definitions.workflows.values() if w.effects.hand_over}
        return any(r.key in roles for r in principal.roles) or any(
            f in state.definitions.forms and policy(principal, state.definitions.forms[f]) is not None for f in forms)
    return visible


def handovers_feature() -> Feature:
    def nav(state: AppState) -> list[NavItem]:
        service = _service(state)

        def count(principal: Principal) -> int:
            # On every page: cached as the 待办 badge is; an approval that hands a record over, a confirmation and
            # a decline each move the shared generation.
            return per_user(state, principal, "handovers", lambda: service.count_incoming(principal))

        return [NavItem("handovers", "/handovers/", "升学衔接", "其他学校交来的学生档案：查阅、确认录取或退回",
                        visible=_visible(state), count=count)]

    return Feature(name="handovers", routes=(HandoverController,), nav=nav)
