"""Archive package pages: a record's package as a download, and importing a package (upload → preview → apply).

The rules are ArchiveService's (engine/archives/service.py); these handlers pass the principal and show the result.
An uploaded package waits for its confirmation in `<var>/archive-uploads/<user id>-<sha256>.zip`: the preview page
names it by its digest, with the digest of the plan shown, and applying refuses a plan that has changed since.
"""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath
from litestar.response import Redirect, Response, Template

from engine.archives.service import ArchiveService, ImportPlan, Mapping_, MappingInvalid, NothingToExport
from engine.archives.trusted import TrustedKeys
from engine.certificates.signing import KeyStore
from engine.permissions import Principal, can
from engine.records import StoredRecord
from engine.refusals import Refused
from engine.spec import FormSpec
from web.archive_commands import KEY_DIR, TRUSTED_DIR, trusted_keys
from web.auth import app_state, current_principal
from web.features import Feature
from web.guards import admin_guard, form_guard
from web.pages import flash, page, units_for
from web.params import Id, parse_id
from web.state import AppState

STAGING = "archive-uploads"
MAX_CHOSEN = 1000  # records chosen by id for one package (a class is chosen by its unit, not listed)
STAGED_FOR = 24 * 3600  # seconds an uploaded package waits for its confirmation before it is removed
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _service(state: AppState) -> ArchiveService:
    return ArchiveService(state.db, state.records, KeyStore(state.settings.var_dir / KEY_DIR))


def _form(request: Request) -> FormSpec:
    return app_state(request).definitions.forms[request.path_params["form_key"]]


def _staged(state: AppState, principal: Principal, digest: str) -> Path | None:
    if not _DIGEST.match(digest):
        return None
    return state.settings.var_dir / STAGING / f"{principal.user_id}-{digest}.zip"


class ArchiveController(Controller):
    path = "/f/{form_key:str}"
    guards = [form_guard]

    @get("/{record_id:int}/archive", opt={"action": "export"}, name="archives:export", sync_to_thread=True)
    def export(self, request: Request, record_id: Id) -> Response:
        state, form = app_state(request), _form(request)
        data = _service(state).export(state.definitions, current_principal(request), form.key, [record_id])
        name = quote(f"{form.title}-{record_id}-档案包.zip", safe="")
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{name}", "Cache-Control": "private, no-store"})

    @get("/archive-export", opt={"action": "export"}, name="archives:export_many", sync_to_thread=True)
    def export_many(self, request: Request) -> Response:
        """The packages of a class (`unit`) or of records chosen in the list (`id`, repeated) as one download: one
        signed package holding them all. Without either, the page to choose the class."""
        state, form, principal = app_state(request), _form(request), current_principal(request)
        raw_ids = request.query_params.getall("id", [])
        ids = [parse_id(v) for v in raw_ids]
        unit = parse_id(request.query_params.get("unit", ""))
        if not raw_ids and unit is None:
            asked = "unit" in request.query_params
            return _export_page(request, f"请选择{form.unit_label}" if asked else "", 422 if asked else 200)
        if any(i is None for i in ids) or len(ids) > MAX_CHOSEN:
            return _export_page(request, f"所选记录无效（一次最多 {MAX_CHOSEN} 条）", 422)
        try:
            data = _service(state).export(state.definitions, principal, form.key, [i for i in ids if i is not None],
                                          None if ids else unit)
        except NothingToExport as exc:
            return _export_page(request, exc.message, 422)
        named = next((u.name for u in state.units() if u.id == unit), "") if not ids else f"{len(ids)}条"
        name = quote(f"{form.title}-{named}-档案包.zip", safe="")
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{name}", "Cache-Control": "private, no-store"})

    @get("/archive-import", opt={"action": "import"}, name="archives:new")
    async def new(self, request: Request) -> Template:
        return _upload_page(request)

    @post("/archive-import", opt={"action": "import"}, name="archives:preview")
    async def preview(self, request: Request) -> Template:
        state, form, principal = app_state(request), _form(request), current_principal(request)
        data = await request.form()
        upload = data.get("file")
        choices = _choices(data)
        if not isinstance(upload, UploadFile) or not upload.filename:
            return _upload_page(request, "请选择档案包文件（.zip）", 422, choices)
        content = await upload.read()
        try:
            plan = self._plan(state, principal, content, choices)
        except Refused as exc:
            return _upload_page(request, exc.message, 422, choices)
        digest = hashlib.sha256(content).hexdigest()
        staged = _staged(state, principal, digest)
        assert staged is not None
        staged.parent.mkdir(parents=True, exist_ok=True)
        sweep_staged(staged.parent)
        staged.write_bytes(content)
        return page(request, "archives/preview.html", form=form, plan=plan, package=digest, choices=choices,
                    title=f"{form.title} · 档案包预览")

    @post("/archive-import/apply", opt={"action": "import"}, name="archives:apply")
    async def apply(self, request: Request) -> Response:
        state, form, principal = app_state(request), _form(request), current_principal(request)
        data = await request.form()
        choices = _choices(data)
        staged = _staged(state, principal, str(data.get("package", "")))
        if staged is None or not staged.is_file():
            return _upload_page(request, "预览的档案包已不在服务器上，请重新上传", 422, choices)
        content = staged.read_bytes()
        try:
            done = _service(state).apply(state.definitions, principal, content, trusted_keys(state.settings.var_dir, []),
                                         choices["unit"], _mapping(choices), choices["overwrite"], str(data.get("plan", "")))
        except Refused as exc:
            return _upload_page(request, exc.message, 422, choices)
        staged.unlink(missing_ok=True)
        flash(request, f"档案包已导入：新增 {done.created} 条，更新 {done.updated} 条")
        return Redirect(f"/f/{form.key}/", status_code=303)

    @staticmethod
    def _plan(state: AppState, principal: Principal, content: bytes, choices: dict[str, Any]) -> ImportPlan:
        return _service(state).preview(state.definitions, principal, content, trusted_keys(state.settings.var_dir, []),
                                       choices["unit"], _mapping(choices), choices["overwrite"])


def sweep_staged(directory: Path, now: float | None = None) -> list[Path]:
    """Remove uploaded packages older than STAGED_FOR (previewed, never confirmed); an applied one is removed at once.
    Run before each new upload and at start-up. Returns what it removed."""
    limit = (time.time() if now is None else now) - STAGED_FOR
    removed = []
    for path in directory.glob("*.zip") if directory.is_dir() else ():
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another worker removed it first
            continue
    return removed


def _sweep_at_start(app: Any) -> None:
    sweep_staged(app.state["dangan"].settings.var_dir / STAGING)


class TrustedKeyController(Controller):
    """Administrators: the senders' public keys trusted for archive packages (engine/archives/trusted.py)."""

    path = "/admin/keys"
    guards = [admin_guard]

    @get("/", name="archives:keys")
    async def index(self, request: Request) -> Template:
        return _keys_page(request)

    @post("/", name="archives:add_key")
    async def add(self, request: Request) -> Response:
        data = await request.form()
        upload = data.get("file")
        pem = await upload.read() if isinstance(upload, UploadFile) and upload.filename else str(data.get("pem", "")).encode()
        label = str(data.get("label", ""))
        try:
            added = _trusted(request).add(current_principal(request), pem, label)
        except Refused as exc:
            return _keys_page(request, exc.message, 422, label=label, pem=str(data.get("pem", "")))
        flash(request, f"已添加受信任的公钥 {added.key_id}（{added.label}）")
        return Redirect("/admin/keys/", status_code=303)

    @post("/{key_id:str}/remove", name="archives:remove_key")
    async def remove(self, request: Request, key_id: FromPath[str]) -> Response:
        _trusted(request).remove(current_principal(request), key_id)
        flash(request, f"已删除受信任的公钥 {key_id}")
        return Redirect("/admin/keys/", status_code=303)


def _trusted(request: Request) -> TrustedKeys:
    return TrustedKeys(app_state(request).settings.var_dir / KEY_DIR / TRUSTED_DIR)


def _keys_page(request: Request, error: str = "", status: int = 200, **typed: str) -> Template:
    keys = _trusted(request).list(current_principal(request))
    built = page(request, "archives/keys.html", keys=keys, error=error, label=typed.get("label", ""),
                 pem=typed.get("pem", ""), title="受信任的公钥")
    return Template(template_name="archives/keys.html", context=built.context, status_code=status)


def _choices(data: Any) -> dict[str, Any]:
    return {"unit": parse_id(str(data.get("unit", ""))), "mapping": str(data.get("mapping", "")),
            "overwrite": data.get("overwrite") == "1"}


def _mapping(choices: dict[str, Any]) -> Mapping_:
    text = choices["mapping"].strip()
    if not text:
        return Mapping_()
    try:
        return Mapping_.of(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise MappingInvalid(detail=f"不是有效的 YAML（{str(exc).splitlines()[0]}）") from exc


def _upload_page(request: Request, error: str = "", status: int = 200, choices: dict[str, Any] | None = None) -> Template:
    form, principal = _form(request), current_principal(request)
    units = [] if form.parent_field else units_for(request, principal, form, "create")
    built = page(request, "archives/upload.html", form=form, error=error, units=units,
                 choices=choices or {"unit": None, "mapping": "", "overwrite": False}, title=f"{form.title} · 导入档案包")
    return Template(template_name="archives/upload.html", context=built.context, status_code=status)


def _export_page(request: Request, error: str, status: int) -> Template:
    form, principal = _form(request), current_principal(request)
    # A child form's records travel in their parents' packages: the classes are those of the parent form.
    root = app_state(request).definitions.forms[form.parent_form] if form.parent_field else form
    built = page(request, "archives/export.html", form=root, error=error,
                 units=units_for(request, principal, root, "export"), title=f"{root.title} · 导出档案包")
    return Template(template_name="archives/export.html", context=built.context, status_code=status)


def _list_actions(form: FormSpec, principal: Principal) -> list[dict[str, str]]:
    if form.parent_field:
        return []
    actions = []
    if can(principal, "export", form):
        actions.append({"href": f"/f/{form.key}/archive-export", "label": "导出档案包（按班级）"})
    if can(principal, "import", form):
        actions.append({"href": f"/f/{form.key}/archive-import", "label": "导入档案包"})
    return actions


def _record_actions(form: FormSpec, principal: Principal, record: StoredRecord) -> list[dict[str, str]]:
    if form.parent_field or not can(principal, "export", form):
        return []
    return [{"href": f"/f/{form.key}/{record.id}/archive", "label": "导出档案包"}]


def archives_feature() -> Feature:
    return Feature(name="archives", routes=(ArchiveController, TrustedKeyController), list_actions=_list_actions,
                   record_actions=_record_actions, on_startup=(_sweep_at_start,))
