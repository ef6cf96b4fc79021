"""What a request may carry, bounded once for every route: ids, page numbers, query text, form text and uploads.

A value a database cannot hold (an id beyond 64 bits, an offset that overflows, a search pattern SQLite calls too
complex, a NUL that PostgreSQL's jsonb refuses, a file name longer than its column) is answered here with a clear
4xx or made a clean value, before any handler or guard passes it on.
"""
from __future__ import annotations

import asyncio
import posixpath
import re
import unicodedata
from pathlib import PurePath
from typing import Annotated, Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import FormMultiDict, UploadFile
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, Parameter
from litestar.plugins.htmx import HTMXRequest
from litestar.types import ASGIApp, Message, Receive, Scope, Send

# The widest integer column (SQLite's INTEGER, PostgreSQL's BIGINT); engine/storage/models.py:holds_id tells a
# narrower (32-bit) key apart.
MAX_ID = 2**63 - 1
# Offsets stay far inside 64 bits at any page size; no list has a millionth page.
MAX_PAGE = 1_000_000
# A query parameter (a search box, a filter) longer than this is no search: SQLite refuses LIKE patterns over 50,000
# bytes, and 1,000 characters are at most 4,000 bytes of UTF-8.
MAX_QUERY_VALUE = 1000
MAX_FILENAME = 255  # attachments.filename, import_jobs.filename
MAX_CONTENT_TYPE = 120  # attachments.content_type

Id = Annotated[int, Parameter(ge=1, le=MAX_ID, description="a row id")]

_ASCII_ID = re.compile(r"[1-9][0-9]{0,18}")
# C0 controls but tab, line feed and carriage return, and DEL: PostgreSQL's jsonb refuses NUL, and Excel files
# (openpyxl) refuse the others, so a value that held one could be saved but never exported.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]{1,63}"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}")


def parse_id(raw: Any) -> int | None:
    """An id posted in a form or a query (a unit, a task, a record): ASCII digits within MAX_ID, else None.
    (`str.isdigit` accepts "²" and "٣", which `int` then refuses or reads as another number.)"""
    if not isinstance(raw, str) or not _ASCII_ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_ID else None


def _names_fit(value: str) -> bool:
    # Keys and ids are short, and a static file's name must fit the file system (a longer one raises ENAMETOOLONG,
    # which is no "not found"): no segment over 255 bytes, no control character.
    return not _CONTROLS.search(value) and all(len(part.encode()) <= 255 for part in value.split("/"))


def page_number(page: FromQuery[str | None] = None) -> int:
    """The app-level dependency `page_no`: the query parameter `page` as a page to show. Anything but a page number is
    the first page, and a number past MAX_PAGE the last possible one (empty, like any page past the end)."""
    if page is None or not page.isascii() or not page.isdigit():
        return 1
    return max(1, min(int(page), MAX_PAGE)) if len(page) <= 7 else MAX_PAGE


PAGE = Provide(page_number, sync_to_thread=False)
# What a handler declares to get it: `page_no: PageNo`.
PageNo = NamedDependency[int]


def clean_text(value: str) -> str:
    return _CONTROLS.sub("", value)


def clean_filename(name: str) -> str:
    """The name part only (old browsers send the client's path), no control characters, at most MAX_FILENAME
    characters with the extension kept."""
    base = posixpath.basename(clean_text(name).replace("\\", "/")).strip() or "file"
    base = unicodedata.normalize("NFC", base)
    if len(base) <= MAX_FILENAME:
        return base
    stem, dot, extension = base.rpartition(".")
    if dot and 0 < len(extension) <= 16:
        return stem[:MAX_FILENAME - len(extension) - 1] + "." + extension
    return base[:MAX_FILENAME]


def clean_content_type(claimed: str | None) -> str:
    """The media type as claimed (type/subtype, parameters dropped), or application/octet-stream. It is never
    trusted: what a file is comes from its bytes (engine/attachments.py)."""
    media = (claimed or "").split(";", 1)[0].strip().lower()
    return media if len(media) <= MAX_CONTENT_TYPE and _MEDIA_TYPE.fullmatch(media) else "application/octet-stream"


class DanganRequest(HTMXRequest):
    """The app's request class: every handler's and guard's `form()` returns the form cleaned here, once;
    `request.htmx` (litestar-htmx) says whether htmx sent it."""

    async def form(self) -> FormMultiDict:
        if getattr(self, "_dangan_form", None) is None:
            try:
                raw = await super().form()
            except (UnicodeDecodeError, LookupError) as exc:
                # A multipart field in another encoding (or an unknown charset): litestar decodes it as it parses.
                raise ClientException("表单内容不是有效的 UTF-8 文本，请在网页上重新填写后提交") from exc
            self._dangan_form = FormMultiDict([(clean_text(key), _clean_value(value)) for key, value in raw.multi_items()])
        return self._dangan_form


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, UploadFile):
        value.filename = clean_filename(value.filename or "")
        value.content_type = clean_content_type(value.content_type)
    return value


async def bounded_request(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """App-level guard, before every other: an integer path parameter beyond MAX_ID, or a text one with a control
    character or a segment over 255 bytes, names nothing (404); a query value over MAX_QUERY_VALUE characters or with a control character is
    refused (400). Guards read path parameters before a handler's signature is checked, so this cannot wait for `Id`."""
    for value in connection.path_params.values():
        if (isinstance(value, int) and not 0 < value <= MAX_ID) or (isinstance(value, (str, PurePath)) and not _names_fit(str(value))):
            raise NotFoundException("页面或记录不存在")
    if connection.scope.get("query_string"):
        for _, value in connection.query_params.multi_items():
            if len(value) > MAX_QUERY_VALUE:
                raise ClientException(f"查询内容过长：最多 {MAX_QUERY_VALUE} 个字")
            if _CONTROLS.search(value):
                raise ClientException("查询内容含有不可见的控制字符")


class BodyTimeout:
    """ASGI middleware: a request body must keep coming — `idle` seconds without a byte of it and the request is
    answered 408 and its connection closed. (uvicorn bounds the wait between requests, not within one: a client that
    declared Content-Length: 1000 and sent 13 bytes held its connection, and a handler, for as long as it liked.) An
    idle bound, not a total one: a 20 MB upload over a slow school line takes minutes, but never stops."""

    def __init__(self, app: ASGIApp, idle: float) -> None:
        self.app, self.idle = app, idle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def bounded() -> Message:
            nonlocal complete
            if complete:  # later receives wait for a disconnect, which may rightly take as long as the response
                return await receive()
            try:
                async with asyncio.timeout(self.idle):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(status_code=408, detail="请求内容在规定时间内没有传完，连接已关闭，请重试",
                                    headers={"Connection": "close"}) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, bounded, send)
