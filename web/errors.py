"""Engine and HTTP exceptions become Chinese pages (or JSON under /api) in one place."""
from __future__ import annotations

import logging
from urllib.parse import quote

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException, ValidationException
from litestar.response import Redirect, Template
from sqlalchemy.exc import OperationalError

from engine.refusals import Refused
from engine.workflows.errors import WorkflowError
from engine.storage.db import gave_up_waiting
from web.auth import LoginRequired, PasswordChangeRequired, TwoFactorSetupRequired, csrf_token
from web.params import DanganRequest

log = logging.getLogger("dangan")

MESSAGES = {
    400: "请求格式不正确",
    401: "请先登录",
    403: "您没有权限进行此操作",
    404: "页面或记录不存在，或不在您的权限范围内",
    405: "不支持此操作方式",
    409: "数据已被他人修改",
    408: "请求超时",
    413: "上传的内容过大",
    422: "提交的数据有误",
    429: "操作过于频繁",
    500: "系统内部错误，请稍后重试或联系管理员",
    503: "服务暂不可用，请联系管理员",
}


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, detail: str = "") -> Response:
    message = MESSAGES.get(status, "请求失败")
    if _wants_json(request):
        return Response({"error": message, "detail": detail}, status_code=status, media_type=MediaType.JSON)
    context = {"status": status, "message": message, "detail": detail, "principal": request.state.get("principal"),
               "nav_forms": [], "nav_extra": [], "csrf": csrf_token(request), "flash": "", "title": message, "path": request.url.path}
    return Template(template_name="error.html", context=context, status_code=status)


def login_required(request: DanganRequest, exc: LoginRequired) -> Response:
    if _wants_json(request):
        return _error(request, 401)
    target = "/login?next=" + quote(request.url.path) + ("&expired=1" if exc.expired else "")
    if request.htmx:
        return Response("", status_code=401, headers={"HX-Redirect": target})
    return Redirect(target, status_code=303)


def two_factor_setup_required(request: DanganRequest, _exc: TwoFactorSetupRequired) -> Response:
    if request.htmx:
        return Response("", status_code=403, headers={"HX-Redirect": "/account/2fa"})
    return Redirect("/account/2fa", status_code=303)


def password_change_required(request: DanganRequest, _exc: PasswordChangeRequired) -> Response:
    if request.htmx:
        return Response("", status_code=403, headers={"HX-Redirect": "/password"})
    return Redirect("/password", status_code=303)


def http_error(request: Request, exc: HTTPException) -> Response:
    detail = exc.detail if isinstance(exc.detail, str) and not exc.detail.isascii() else ""
    if isinstance(exc, ValidationException):
        detail = "参数格式不正确"
    response = _error(request, exc.status_code, detail)
    response.headers.update(exc.headers or {})  # e.g. Connection: close after a body that stopped coming
    return response


# The one place an engine refusal's kind becomes an HTTP status.
REFUSAL_STATUS = {"not_found": 404, "forbidden": 403, "conflict": 409, "invalid": 422, "limited": 429, "unavailable": 503}


def refused(request: Request, exc: Refused) -> Response:
    return _error(request, REFUSAL_STATUS.get(exc.kind, 400), exc.message)


def workflow_refused(request: Request, exc: WorkflowError) -> Response:
    """A workflow's refusal that no page turned into a message of its own (e.g. a stored workflow version that no
    longer compiles, met while confirming a handover): its message, never a 500."""
    return _error(request, exc.status, exc.message)


def database_busy(request: Request, exc: OperationalError) -> Response:
    """A lock held too long (an import's batch, a stuck transaction) or a statement over its time (ServerTimeouts)."""
    if not gave_up_waiting(exc.orig):
        return internal_error(request, exc)
    log.warning("database wait ended on %s: %s", request.url.path, exc.orig)
    response = _error(request, 503, "数据正被其他操作占用，请稍后重试")
    response.headers["Retry-After"] = "10"
    return response


def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return _error(request, 500)


HANDLERS = {
    LoginRequired: login_required,
    PasswordChangeRequired: password_change_required,
    TwoFactorSetupRequired: two_factor_setup_required,
    NotFoundException: http_error,
    PermissionDeniedException: http_error,
    HTTPException: http_error,
    Refused: refused,
    WorkflowError: workflow_refused,
    OperationalError: database_busy,
    Exception: internal_error,
}
