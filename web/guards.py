"""Route guards: the action a route needs is declared in its `opt`, and `can` decides."""
from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler

from engine.permissions import can
from web.auth import app_state


async def form_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """`opt={"action": "read"}` on a route under /f/{form_key}: unknown form is 404, no right is 403."""
    form = app_state(connection).definitions.forms.get(connection.path_params.get("form_key", ""))
    if form is None:
        raise NotFoundException("没有这个表单")
    principal = connection.state.principal
    actions = handler.opt["action"]
    if not any(can(principal, action, form) for action in (actions if isinstance(actions, tuple) else (actions,))):
        raise PermissionDeniedException(f"您没有{ACTION_NAMES.get(actions if isinstance(actions, str) else actions[0], '')}“{form.title}”的权限")


async def admin_guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    if not connection.state.principal.is_admin:
        raise PermissionDeniedException("只有系统管理员可以进行此操作")


ACTION_NAMES = {"create": "新增", "read": "查看", "update": "修改", "delete": "删除", "export": "导出", "import": "导入"}
