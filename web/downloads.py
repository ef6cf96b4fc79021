"""An attachment the engine handed out, as an HTTP response: inline only when its bytes decoded as a raster image."""
from __future__ import annotations

from urllib.parse import quote

from litestar.response import Response

from engine.attachments import ServedFile


def file_response(served: ServedFile) -> Response:
    disposition = "inline" if served.inline else "attachment"
    return Response(served.content, media_type=served.media_type, headers={
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(served.filename, safe='')}",
        "X-Content-Type-Options": "nosniff",
        # Personal data: neither the browser nor a proxy keeps a copy.
        "Cache-Control": "private, no-store",
    })
