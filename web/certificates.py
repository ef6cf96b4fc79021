"""Certificate pages: batch issuance by class, the record page's panel (print, 补发, 撤销), and the public verify page.

The rules are CertificateService's: each handler passes the principal and turns the result into a page (a refusal
is an engine Refused, which web/errors.py answers). /verify and /verify/key.pem are public
(`opt={"public": True}`), GET only.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from engine.certificates.errors import BatchInvalid, RateLimited
from engine.certificates.service import CertificateService, Issued, may
from engine.certificates.signing import KeyStore, PayloadError, query_payload
from engine.certificates.spec import CertificateSpec
from engine.permissions import Principal
from engine.records import StoredRecord
from engine.spec import FormPolicy, FormSpec
from web.auth import app_state, current_principal
from web.features import Feature
from web.pages import NavItem, flash, page
from web.presenter import field_view, issues_by_field
from web.state import AppState
from web.params import Id

KEY_DIR = "keys"  # under the settings' var directory: see docs/operations.md
_BATCH_POLICY = FormPolicy(actions=frozenset({"create"}))  # the batch's own fields: every one is the registrar's to fill


@lru_cache(maxsize=8)
def _keys(directory: Path) -> KeyStore:
    # One store per directory and process: the private key is read once, not per request.
    return KeyStore(directory)


def certificate_service(state: AppState) -> CertificateService:
    return CertificateService(state.db, state.records, _keys(state.settings.var_dir / KEY_DIR))


def _base_url(request: Request) -> str:
    return app_state(request).settings.public_url or str(request.base_url).rstrip("/")


def _spec(request: Request, key: str) -> CertificateSpec:
    spec = app_state(request).definitions.certificates.get(key)
    if spec is None:
        raise NotFoundException("没有这种证书")
    return spec


def _status_page(request: Request, template: str, status_code: int, **context: Any) -> Template:
    built = page(request, template, **context)
    return Template(template_name=template, context=built.context, status_code=status_code)


class CertificateController(Controller):
    """`opt={"certificate": ...}` tells the permission matrix (tests/web/test_permissions.py) what a route acts on:
    "batch" a certificate kind's batch for a unit, "one" one issued certificate. The service decides."""

    path = "/cert"

    @get("/", name="cert:index")
    async def index(self, request: Request) -> Template:
        state, principal = app_state(request), current_principal(request)
        service = certificate_service(state)
        kinds = [(spec, service.batch_units(state.definitions, principal, spec)) for spec in _batchable(state, principal)]
        return page(request, "certificates/index.html", kinds=kinds, title="证书颁发")

    @get("/{key:str}/batch", name="cert:batch", opt={"certificate": "batch"})
    async def batch(self, request: Request, key: FromPath[str], unit: FromQuery[Id]) -> Template:
        state, spec = app_state(request), _spec(request, key)
        batch = certificate_service(state).preview(state.definitions, current_principal(request), spec, unit)
        return _batch_page(request, batch, raw={}, issues=[])

    @post("/{key:str}/batch", name="cert:issue", opt={"certificate": "batch"})
    async def issue(self, request: Request, key: FromPath[str], unit: FromQuery[Id]) -> Response:
        state, spec, principal = app_state(request), _spec(request, key), current_principal(request)
        data = await request.form()
        raw = {k: data.get(k, "") for k in (spec.batch_form.fields if spec.batch_form else ())}
        expected = [int(v) for v in data.getall("record", []) if str(v).isdigit()]
        service = certificate_service(state)
        try:
            issued = await state.writes.in_thread(service.issue_batch, state.definitions, principal, spec, unit, raw, expected)
        except BatchInvalid as exc:
            batch = service.preview(state.definitions, principal, spec, unit)
            return _batch_page(request, batch, raw=raw, issues=exc.issues, status=422)
        flash(request, f"已颁发 {len(issued)} 份{spec.title}")
        return Redirect(f"/cert/{key}/batch?unit={unit}", status_code=303)

    @get("/c/{certificate_id:int}/pdf", name="cert:pdf", opt={"certificate": "one"}, sync_to_thread=True)
    def pdf(self, request: Request, certificate_id: Id) -> Response:
        # In a thread: embedding the font subset takes a second or two of CPU. Imported here, as `dangan serve` does
        # for its own modules: the PDF libraries (fpdf2, fontTools, Pillow) would add ~1.5 s to every worker's start.
        from engine.certificates.pdf import render_pdf  # noqa: PLC0415

        state = app_state(request)
        spec, issued, payload, photo = certificate_service(state).printable(
            state.definitions, current_principal(request), certificate_id)
        data = render_pdf(spec, issued, payload, photo, _base_url(request))
        name = quote(f"{issued.title}-{issued.number}.pdf")
        return Response(data, media_type="application/pdf",
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})

    @post("/c/{certificate_id:int}/reissue", name="cert:reissue", opt={"certificate": "one"})
    async def reissue(self, request: Request, certificate_id: Id) -> Redirect:
        state = app_state(request)
        data = await request.form()
        new = await state.writes.in_thread(certificate_service(state).reissue, state.definitions, current_principal(request),
                             certificate_id, str(data.get("reason", "")))
        flash(request, f"已补发{new.title}，新编号 {new.number}")
        return Redirect(_record_url(state, new), status_code=303)

    @post("/c/{certificate_id:int}/revoke", name="cert:revoke", opt={"certificate": "one"})
    async def revoke(self, request: Request, certificate_id: Id) -> Redirect:
        state = app_state(request)
        data = await request.form()
        ended = await state.writes.in_thread(certificate_service(state).revoke, state.definitions, current_principal(request),
                               certificate_id, str(data.get("reason", "")))
        flash(request, f"已撤销{ended.title} {ended.number}")
        return Redirect(_record_url(state, ended), status_code=303)


class VerifyController(Controller):
    """The public verification: no login, GET only (no session, so no CSRF token to send)."""

    path = "/verify"
    opt = {"public": True}

    @get("/", name="verify:page")
    async def verify(self, request: Request) -> Template:
        params = {k: str(v) for k, v in request.query_params.items()}
        number = params.get("n", "").strip()
        context: dict[str, Any] = {"number": number, "result": None, "limited": "", "damaged": False, "title": "证书查验"}
        if not number:
            return page(request, "certificates/verify.html", **context)
        try:
            payload = query_payload(params)
        except PayloadError:
            payload = None
            context["damaged"] = True
        client = request.client.host if request.client else "unknown"
        try:
            context["result"] = await app_state(request).writes.in_thread(certificate_service(app_state(request)).verify, number, client, payload)
        except RateLimited as exc:  # too many look-ups from this address
            context["limited"] = exc.message
            return _status_page(request, "certificates/verify.html", 429, **context)
        return page(request, "certificates/verify.html", **context)

    @get("/key.pem", name="verify:key")
    async def public_key(self, request: Request) -> Response:
        keys = _keys(app_state(request).settings.var_dir / KEY_DIR)
        return Response(keys.current_public_pem(), media_type="application/x-pem-file",
                        headers={"Content-Disposition": f'attachment; filename="certificate-public-{keys.current_id()}.pem"'})


def _batch_page(request: Request, batch: Any, raw: dict[str, Any], issues: list[Any], status: int = 200) -> Template:
    spec = batch.spec
    grouped = issues_by_field(issues)
    fields = [field_view(spec.batch_form, f, _BATCH_POLICY, raw=raw.get(k, ""), issues=grouped.get(k, []))
              for k, f in spec.batch_form.fields.items()] if spec.batch_form else []
    return _status_page(request, "certificates/batch.html", status, batch=batch, spec=spec, fields=fields,
                        title=f"批量颁发{spec.title}")


def _record_url(state: AppState, issued: Issued) -> str:
    spec = state.definitions.certificates.get(issued.kind)
    return f"/f/{spec.form}/{issued.record_id}" if spec is not None else "/cert/"


def _batchable(state: AppState, principal: Principal) -> list[CertificateSpec]:
    return [spec for spec in state.definitions.certificates.values() if spec.batch_level and may(principal, spec, "issue")]


def _record_panels(request: Request, form: FormSpec, principal: Principal, record: StoredRecord) -> list[dict[str, Any]]:
    state = app_state(request)
    specs = [spec for spec in state.definitions.certificates.values() if spec.form == form.key]
    if not specs:
        return []
    rows = certificate_service(state).for_record(state.definitions, principal, form, record.id)
    return [{"template": "certificates/panel.html", "cert_rows": rows,
             "cert_issue": {s.key for s in specs if may(principal, s, "issue")},
             "cert_revoke": {s.key for s in specs if may(principal, s, "revoke")}}]


def certificates_feature() -> Feature:
    def nav(state: AppState) -> list[NavItem]:
        return [NavItem("cert", "/cert/", "证书颁发", "按班级批量颁发证书",
                        visible=lambda principal: bool(_batchable(state, principal)))]

    return Feature(name="certificates", routes=(CertificateController, VerifyController), nav=nav,
                   record_panels=_record_panels)

