"""A request body that stops coming is answered 408 and its connection closed (issue 14, item 11): a raw socket
against the real `dangan serve`, which before held such a connection open for as long as the client liked."""
from __future__ import annotations

import socket
import time
from typing import Callable

from tests.browser_fixtures import Server

IDLE = 2.0
# The login form's CSRF cookie: without one the request is refused before its body is read.
COOKIE = b"Cookie: dangan_form=" + b"f" * 43 + b"\r\n"  # the server's setting for this test (DANGAN_BODY_TIMEOUT_SECONDS); the default is 20


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while True:
        chunk = sock.recv(65536)  # the socket's own timeout fails the test if the server never answers
        if not chunk:
            return received
        received += chunk


def test_body_that_stops__408_and_closed(start_server: Callable[..., Server], tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(f"sqlite:///{tmp_path / 'slow.db'}", DANGAN_BODY_TIMEOUT_SECONDS=str(IDLE))
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=IDLE * 10) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\n" + COOKIE
                     + b"Content-Length: 1000\r\n\r\nusername=abc&")  # 13 of the 1000 bytes promised
        started = time.monotonic()
        answer = _read_until_closed(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert "请求超时".encode() in answer
    assert waited >= IDLE * 0.9  # it waited for the body first


def test_body_that_keeps_coming_slowly__served(start_server: Callable[..., Server], tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(f"sqlite:///{tmp_path / 'slow.db'}", DANGAN_BODY_TIMEOUT_SECONDS=str(IDLE))
    host, port = server.base_url.removeprefix("http://").split(":")
    body = b"username=abc&password=wrong-password&_csrf=x"
    with socket.create_connection((host, int(port)), timeout=IDLE * 10) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" + COOKIE
                     + b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n")
        for start in range(0, len(body), 15):  # a third of the body every half idle period: slower than the idle bound
            sock.sendall(body[start:start + 15])
            time.sleep(IDLE / 2)
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]  # read in full, then refused for its CSRF token
