"""The security headers, on every response the app sends: pages, errors, 404s, static files and downloads alike."""
from __future__ import annotations

from litestar.types import Message, Scope

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "img-src 'self' data:", "style-src 'self'", "script-src 'self'",
    "object-src 'none'", "base-uri 'self'",
    # A page (or an uploaded document, were one ever shown) may post only back to this app, and no other site may
    # frame it.
    "form-action 'self'", "frame-ancestors 'none'",
])
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
)


# Over HTTPS the browser keeps to HTTPS for a year (not sent over plain HTTP, where it would mean nothing).
HSTS = (b"strict-transport-security", b"max-age=31536000")
NO_STORE = (b"cache-control", b"no-store")


async def send_security_headers(message: Message, scope: Scope) -> None:
    """App-level before_send hook: adds what a response does not set itself. (Litestar's `response_headers` reach
    handler responses only, not the 404 of an unknown path or an error raised before a handler.) A page for a
    signed-in user holds personal data: no browser or proxy cache keeps it (`no-store`); static files stay cacheable."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    present = {bytes(name).lower() for name, _ in headers}
    extra = list(SECURITY_HEADERS)
    if scope.get("scheme") == "https":
        extra.append(HSTS)
    if (scope.get("state") or {}).get("principal") is not None:
        extra.append(NO_STORE)
    headers.extend((name, value) for name, value in extra if name not in present)
    message["headers"] = headers
