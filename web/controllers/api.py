"""JSON read API: the same scope and field masks as the pages."""
from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from engine.permissions import policy
from engine.records import ListQuery, StoredRecord
from engine.records.figures import shown_figures
from engine.spec import FormPolicy, FormSpec
from web.auth import app_state, current_principal
from web.controllers.records import _form, _get
from web.guards import form_guard
from web.params import Id, PageNo
from web.presenter import display_text
from engine.permissions import is_masked


def record_json(form: FormSpec, found: FormPolicy, record: StoredRecord) -> dict[str, Any]:
    """Readable fields only; masked fields as their masked text, never the stored value."""
    values: dict[str, Any] = {}
    for key, spec in form.fields.items():
        if key in found.hidden:
            continue
        value = record.values.get(key)
        if is_masked(found, spec):
            values[key] = display_text(spec, value, True) or None
        else:
            values[key] = None if value is None else spec.kind.to_json(value)
    figures = {f.key: f.field.kind.to_json(record.figures.get(f.key)) if record.figures.get(f.key) is not None else None
               for f in shown_figures(form, found)}
    return {"id": record.id, "unit": record.unit_name, "revision": record.revision, "values": values,
            **({"figures": figures} if figures else {})}


class ApiController(Controller):
    path = "/api/f/{form_key:str}"
    guards = [form_guard]

    @get("/", opt={"action": "read"}, name="api:list")
    async def list_json(self, request: Request, page_no: PageNo) -> dict[str, Any]:
        form, principal = _form(request), current_principal(request)
        found = policy(principal, form)
        records = app_state(request).records
        result = records.list(form, principal, ListQuery.parse(form, request.query_params, page=page_no))
        records.figured(principal, form, result.records)
        return {"total": result.total, "page": result.page, "records": [record_json(form, found, r) for r in result.records]}

    @get("/{record_id:int}", opt={"action": "read"}, name="api:detail")
    async def detail_json(self, request: Request, record_id: Id) -> dict[str, Any]:
        form, principal = _form(request), current_principal(request)
        return record_json(form, policy(principal, form), _get(request, form, principal, record_id, "read"))
