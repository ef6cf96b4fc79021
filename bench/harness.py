"""What the benchmark scripts share: free ports, the server subprocess, plain HTTP calls and logging in, CPU time from
/proc, running a wrk script, and a PostgreSQL schema of their own."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited ({process.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    raise SystemExit(f"server did not answer {url} within {timeout}s")


def start(cmd: list[str], env: dict[str, str], log: Path, probe: str) -> subprocess.Popen:
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    wait_for(probe, process, log)
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def http(base: str, path: str, cookie: str = "", data: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(base + path, data=data, headers={**(headers or {}), **({"Cookie": cookie} if cookie else {})})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) and of its live child processes (a server's forked
    workers), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total + sum(cpu_seconds(child) for child in child_pids(pid))


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
    except OSError:  # gone meanwhile
        pass
    return children


def cookie_of(headers: dict[str, str]) -> str:
    """Every cookie the response sets, as a Cookie header (the sign-in page sets its CSRF cookie, not a session)."""
    jar = SimpleCookie()
    jar.load(headers.get("set-cookie", ""))
    return "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())


def csrf_of(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match[1]


def log_in(base: str, username: str, password: str, landing: str) -> tuple[str, str]:
    """Through the real login form; (session cookie, CSRF token of the `landing` page)."""
    _status, headers, html = http(base, "/login")
    body = urllib.parse.urlencode({"_csrf": csrf_of(html), "username": username, "password": password, "next": "/"}).encode()
    status, headers, _ = http(base, "/login", cookie_of(headers), body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["location"] == "/", (status, headers)
    cookie = cookie_of(headers)
    status, _, html = http(base, landing, cookie)
    assert status == 200, status
    return cookie, csrf_of(html)


def lua_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# The `done` hook every wrk script ends with (written for %-formatting, hence %%): one line of JSON to parse.
WRK_REPORT_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, '
    .. '"p999_us": %%d, "max_us": %%d, "bad": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def run_wrk(base: str, script: Path, seconds: float, connections: int, threads: int = 1) -> dict[str, Any]:
    """Runs wrk with a script that ends with WRK_REPORT_LUA; its figures (requests, duration_us, p50_us, p99_us, bad).
    wrk counts 3xx as success; a script's own status check counts the rest as "bad"."""
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
                          "-s", str(script), base + "/"], capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"WRKJSON (\{.*\})", out.stdout)
    if not match:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(match[1])


def pg_schema(admin_url: str, prefix: str) -> tuple[str, str]:
    """A new schema in the database at `admin_url`: (a URL whose search_path is that schema, its name)."""
    import sqlalchemy as sa  # noqa: PLC0415 — only the PostgreSQL runs need it
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin_url, poolclass=sa.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop_schema(admin_url: str, schema: str) -> None:
    import sqlalchemy as sa  # noqa: PLC0415

    engine = sa.create_engine(admin_url, poolclass=sa.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()
