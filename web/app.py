"""The Litestar application: definitions compiled once, database upgraded, routes and templates wired."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Litestar
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from engine.bootstrap import InitialAdmin, bootstrap
from engine.loader import demo_units, load_definitions
from engine.org_apply import org_note
from engine.storage.db import Database, gather_statistics
from engine.storage.projection import prepare_projections
from web.auth import session_guard
from web.archives import archives_feature
from web.certificates import certificates_feature
from web.handovers import handovers_feature
from web.printouts import printouts_feature
from web.reports import reports_feature
from web.controllers.admin import AdminController
from web.controllers.api import ApiController
from web.controllers.auth import AuthController
from web.controllers.home import HomeController
from web.controllers.records import RecordController
from web.errors import HANDLERS
from web.excel import excel_feature
from web.features import Feature
from web.headers import send_security_headers
from web.pages import send_flash_cookie
from web.params import PAGE, BodyTimeout, DanganRequest, bounded_request
from web.settings import Settings
from web.state import AppState, acknowledge_reload
from web.workflows import workflows_feature

log = logging.getLogger("dangan")
TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
BEIJING = dt.timedelta(hours=8)


def local_time(moment: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return (moment + BEIJING).strftime(fmt) if moment else ""


def template_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      auto_reload=False)  # templates ship with the code; no stat() per include
    env.filters["localtime"] = local_time
    return env


def prepare(settings: Settings) -> tuple[AppState, InitialAdmin | None]:
    """Everything start-up does before serving; raises DefinitionErrors or IndexConflict to refuse."""
    definitions = load_definitions(settings.definitions)
    db = Database(settings.database_url, timeouts=settings.database_timeouts())
    db.upgrade()
    prepare_projections(db, definitions, settings.recompute_inline_rows)
    gather_statistics(db, stale_only=True)
    admin = bootstrap(db, definitions, lambda: demo_units(settings.definitions))
    note = org_note(db, demo_units(settings.definitions))
    if note:  # once, by the process that starts the workers
        log.warning(note)
    return AppState(settings, definitions, db), admin


def _reload_on_sighup(app: Litestar) -> None:
    """`dangan reload` sends SIGHUP; an invalid set is logged and the last good one stays live."""
    state: AppState = app.state["dangan"]

    def reload() -> None:
        outcome = state.reload()
        if outcome.ok:
            log.warning("定义已重新加载，版本 %s", outcome.version)
        else:
            log.error("定义有错误，未加载，仍使用版本 %s：\n%s", outcome.version, "\n".join(outcome.errors))
        acknowledge_reload(state.settings, outcome)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError, ValueError):
        log.info("SIGHUP reload unavailable in this process")


def enabled_features() -> list[Feature]:
    """The features this build ships, in navigation order."""
    return [workflows_feature(), excel_feature(), certificates_feature(), reports_feature(), archives_feature(),
            printouts_feature(), handovers_feature()]


def create_app(settings: Settings | None = None, state: AppState | None = None) -> Litestar:
    settings = settings or Settings()
    if state is None:
        state, _ = prepare(settings)
    features = enabled_features()
    static = create_static_files_router(
        path="/static", directories=[STATIC, settings.assets / "htmx.org" / "dist"], opt={"public": True, "static": True},
    )
    return Litestar(
        route_handlers=[AuthController, HomeController, RecordController, ApiController, AdminController, static, *(r for f in features for r in f.routes)],
        guards=[bounded_request, session_guard],
        request_class=DanganRequest,
        middleware=[DefineMiddleware(BodyTimeout, idle=settings.body_timeout_seconds)],
        dependencies={"page_no": PAGE},
        before_send=[send_flash_cookie, send_security_headers],
        template_config=TemplateConfig(engine=JinjaTemplateEngine.from_environment(template_environment())),
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
        state=State({"dangan": state, "features": features,
                     "nav_extra": [item for f in features for item in f.nav(state)]}),
        on_startup=[_reload_on_sighup, *(hook for f in features for hook in f.on_startup)],
        on_shutdown=[hook for f in features for hook in f.on_shutdown],
        request_max_body_size=settings.max_upload_bytes,
        debug=False,
        # No generated /schema pages: they list every route (admin included) and load scripts from a CDN.
        openapi_config=None,
    )
