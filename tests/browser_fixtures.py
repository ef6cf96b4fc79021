"""Browser-test fixtures: the real `dangan serve` as a subprocess, and Debian's Chromium via Playwright.

Registered once in tests/conftest.py for every folder. Never `playwright install`: the browser is /usr/bin/chromium.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support import DEFINITIONS, REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DANGAN = REPO / ".venv" / "bin" / "dangan"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    var_dir: Path
    process: subprocess.Popen

    @property
    def initial_password(self) -> str:
        text = (self.var_dir / "initial-admin.txt").read_text(encoding="utf-8")
        return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("初始密码"))

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Run `dangan <args>` against the same database and definitions as the server."""
        done = subprocess.run([str(DANGAN), *args], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dangan serve exited with {process.returncode}:\n{log.read_text(errors='replace')}", pytrace=False)
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"dangan serve did not answer /healthz in {timeout:.0f}s:\n{log.read_text(errors='replace')}", pytrace=False)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """start_server(db_url, **env) → a running `dangan serve` on a free loopback port (with these extra environment
    variables, e.g. DANGAN_BODY_TIMEOUT_SECONDS="2"); stopped at teardown."""
    started: list[Server] = []

    def start(db_url: str, **extra_env: str) -> Server:
        var_dir = tmp_path / f"var{len(started)}"
        var_dir.mkdir()
        env = {**os.environ, "DANGAN_DATABASE_URL": db_url, "DANGAN_VAR": str(var_dir),
               "DANGAN_DEFINITIONS": str(DEFINITIONS), "PYTHONUNBUFFERED": "1", **extra_env}
        port = _free_port()
        log = var_dir / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen([str(DANGAN), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                       env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        server = Server(f"http://127.0.0.1:{port}", env, var_dir, process)
        started.append(server)
        _wait_healthy(server.base_url, process, log)
        return server

    yield start
    for server in started:
        stop_process(server.process)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} missing: run `bash scripts/setup --browser` (Debian chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 — only browser tests need it

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shot() -> Callable[[object, str], Path]:
    """shot(page, name) saves a full-page PNG under test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: object, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path
    return take


def log_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")


def change_password(page: Page, current: str, new: str) -> None:
    """The forced change at first login: explained, then done, then home with 密码已修改."""
    expect(page).to_have_url(re.compile(r"/password$"))
    expect(page.locator(".notice")).to_be_visible()
    page.fill("#current", current)
    page.fill("#new", new)
    page.fill("#confirm", new)
    with page.expect_navigation():
        page.click("form[action='/password'] button[type=submit]")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator(".flash")).to_have_text("密码已修改")
