"""Web forms benchmark: Dangan's form page, inline check, save and filtered list vs. a minimal Litestar app.

What it does (a script, not a test):
  1. a fresh SQLite file in a temp dir; schema, demo org tree and first admin as `dangan serve` makes them;
     N demo students (default 10,000) created through engine.records.RecordService.create in batches on one
     session per batch (validated, numbered, audited exactly like a save from the web), and a registrar
     `bench` of 示范区第一中学;
  2. starts `.venv/bin/dangan serve` and bench/minimal_app.py (same uvicorn settings: 1 process, 1 worker,
     log_level=warning, no access log), logs in as `bench` through the real login form;
  3. checks every target once (status and content), then for each target: a short warm-up, then
     DURATION seconds at CONNECTIONS keep-alive connections; prints requests/s, p50/p99 latency and the
     ratio to the baseline's requests/s, and the goal: form page >= 0.25 x baseline rps and p99 < 50 ms.
  4. with --profile: one more pass per Dangan target under py-spy (`pip install py-spy` into the venv ad hoc;
     it is not in requirements.lock) and the hot spots as self/inclusive shares of the samples.

Load generator: `wrk` (Debian package; `apt-get install wrk`) when it is on PATH, with a Lua script for the
per-request POST bodies (unique ID numbers) and the session cookie; otherwise a pure-Python asyncio
generator (keep-alive HTTP/1.1 over asyncio streams, no extra packages). The machine has 2 cores and the
server is one process: the Python generator takes most of the second core and caps what it can measure
(see its own ceiling against the minimal app); wrk with one thread needs far less CPU. Use --loadgen to choose.

    .venv/bin/python bench/web_forms.py                      # all targets, 10 s each, 32 connections
    .venv/bin/python bench/web_forms.py --loadgen python     # without wrk
    .venv/bin/python bench/web_forms.py --profile            # + py-spy hot spots
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/x.py`
from harness import WRK_REPORT_LUA, cpu_seconds, free_port, http, log_in, lua_string, run_wrk as wrk_figures, start, stop  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VENV_BIN = ROOT / ".venv" / "bin"
DANGAN = VENV_BIN / "dangan"
PYTHON = VENV_BIN / "python"
DEFINITIONS = ROOT / "definitions"
SCHOOL = "示范区教育局/示范区第一中学"
SAVE_CLASS = "示范区教育局/示范区第一中学/高一/高一(1)班"
SEED_UNITS = [  # (unit path, grade) — most students in the bench user's school, some outside its scope
    ("示范区教育局/示范区第一中学/高一/高一(1)班", "高一"),
    ("示范区教育局/示范区第一中学/高一/高一(2)班", "高一"),
    ("示范区教育局/示范区第一中学/高二/高二(1)班", "高二"),
    ("示范区教育局/示范区实验小学/一年级/一年级(1)班", "一年级"),
    ("滨江区教育局/滨江中学/高一/高一(1)班", "高一"),
]
BENCH_USER, BENCH_PASSWORD = "bench", "Load#test2026"
LIST_PATH = "/f/student/?" + urllib.parse.urlencode({"gender": "女", "grade": "高一"})
GOAL_RATIO, GOAL_P99_MS = 0.25, 50.0

# --- valid ID numbers (GB 11643-1999) ------------------------------------------------------------------
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
SEED_REGIONS = ("110105", "310104", "330106", "440305", "510107")
SAVE_REGIONS = ("120101", "320102", "420102")  # disjoint from the seed: saves never collide with it


def check_char(first17: str) -> str:
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, WEIGHTS)) % 11]


@dataclass(frozen=True)
class Person:
    id_card: str
    birth: str  # YYYY-MM-DD
    gender: str  # 男 / 女


def people(regions: tuple[str, ...], rng: random.Random) -> Iterator[Person]:
    """Unique, valid (region, birth date, sequence) combinations; the 17th digit's parity is the gender."""
    seen: set[str] = set()
    start = dt.date(2006, 9, 1)
    while True:
        born = start + dt.timedelta(days=rng.randrange(4 * 365))
        first17 = f"{rng.choice(regions)}{born:%Y%m%d}{rng.randrange(1000):03d}"
        if first17 in seen:
            continue
        seen.add(first17)
        yield Person(first17 + check_char(first17), born.isoformat(), "男" if int(first17[16]) % 2 else "女")


SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾"
GIVEN = "子涵浩宇欣怡梓轩雨泽思远佳琪一诺明哲若曦嘉懿俊杰语桐晨阳书瑶天佑文博"


def chinese_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


# --- 1. data ---------------------------------------------------------------------------------------------
@dataclass
class Seeded:
    save_unit_id: int
    writable: frozenset[str]
    seconds: float


def seed(db_url: str, var_dir: Path, students: int, rng: random.Random) -> Seeded:
    from sqlalchemy import select  # noqa: PLC0415 — keep `--help` fast

    from engine.accounts import create_user  # noqa: PLC0415
    from engine.org import build_principal, unit_by_path  # noqa: PLC0415
    from engine.permissions import policy, writable_keys  # noqa: PLC0415
    from engine.storage.models import User  # noqa: PLC0415
    from web.app import prepare  # noqa: PLC0415
    from web.settings import Settings  # noqa: PLC0415

    started = time.perf_counter()
    settings = replace(Settings(), database_url=db_url, definitions=DEFINITIONS, var_dir=var_dir)
    state, _admin = prepare(settings)  # migrations, indexes, demo org tree, first admin
    form = state.definitions.forms["student"]
    with state.db.write() as s:
        school = unit_by_path(s, SCHOOL)
        create_user(s, BENCH_USER, BENCH_PASSWORD, ["registrar"], [school.id], display_name="压测用户", must_change=False)
        s.commit()
    with state.db.read() as s:
        admin = build_principal(s, s.scalar(select(User).where(User.username == "admin")), state.definitions)
        bench = build_principal(s, s.scalar(select(User).where(User.username == BENCH_USER)), state.definitions)
        units = [(unit_by_path(s, path).id, grade) for path, grade in SEED_UNITS]
        save_unit_id = unit_by_path(s, SAVE_CLASS).id
    who = people(SEED_REGIONS, rng)
    batch = 500
    done = 0
    while done < students:
        with state.db.write() as s:
            for _ in range(min(batch, students - done)):
                person = next(who)
                unit_id, grade = units[rng.choices(range(len(units)), weights=(3, 3, 2, 1, 1))[0]]
                result = state.records.create(form, admin, unit_id, {
                    "name": chinese_name(rng), "gender": person.gender, "birth_date": person.birth,
                    "ethnicity": rng.choice(("01", "01", "01", "03", "08", "11")), "id_card": person.id_card,
                    "enrol_year": str(rng.choice((2021, 2022, 2023, 2024))), "grade": grade,
                    "address": f"示范市{rng.choice('东西南北')}城区{rng.randrange(1, 300)}号",
                    "guardian_name": chinese_name(rng), "guardian_phone": f"13{rng.randrange(10**9):09d}",
                }, session=s)
                if not result.ok:
                    raise SystemExit(f"seed record refused: {result.issues}")
                done += 1
            s.commit()
        print(f"\r  seeded {done}/{students} students", end="", flush=True)
    print()
    writable = writable_keys(policy(bench, form), form)
    state.db.dispose()
    return Seeded(save_unit_id, writable, time.perf_counter() - started)


# --- 2. servers ------------------------------------------------------------------------------------------
# --- 3. session and requests -----------------------------------------------------------------------------
def form_fields(writable: frozenset[str]) -> list[tuple[str, str]]:
    """(key, widget) of what a browser posts from the student form, in page order."""
    from engine.loader import load_definitions  # noqa: PLC0415

    form = load_definitions(DEFINITIONS).forms["student"]
    return [(k, form.fields[k].kind.widget) for section in form.sections for k in section.fields if k in writable]


def field_values(person: Person, name: str) -> dict[str, str]:
    return {"name": name, "gender": person.gender, "birth_date": person.birth, "ethnicity": "01", "id_card": person.id_card,
            "enrol_year": "2024", "grade": "高一", "address": "示范市东城区和平里1号", "guardian_name": "王建国",
            "guardian_phone": "13812345678", "health": "健康或良好"}


BOUNDARY = "----DanganBenchBoundary7MA4YWxkTrZu0gW"


def multipart(pairs: list[tuple[str, str | None]]) -> bytes:
    """multipart/form-data as Chromium sends the student form (None = an empty file input)."""
    parts = []
    for key, value in pairs:
        if value is None:
            parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"; filename=""\r\n'
                         f"Content-Type: application/octet-stream\r\n\r\n\r\n")
        else:
            parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n')
    parts.append(f"--{BOUNDARY}--\r\n")
    return "".join(parts).encode()


def browser_pairs(fields: list[tuple[str, str]], values: dict[str, str], csrf: str, unit_id: int) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = [("_csrf", csrf), ("_unit", str(unit_id))]
    for key, widget in fields:
        if widget in ("file", "image"):
            pairs.append((key, None))
        elif widget in ("boolean", "checkboxes", "table"):
            continue  # nothing checked, no rows: a browser sends nothing
        else:
            pairs.append((key, values.get(key, "")))
    return pairs


@dataclass
class Target:
    name: str
    server: str  # "dangan" | "baseline"
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    expect: str = "2xx"  # "303" for the save
    # the save's body is a template: @ID@ @BIRTH@ @GENDER@ are filled per request from a pool of unique people
    unique: bool = False


def build_targets(cookie: str, csrf: str, seeded: Seeded) -> list[Target]:
    fields = form_fields(seeded.writable)
    common = {"Cookie": cookie}
    wrong = Person("110105200805120014", "2008-05-12", "男")  # check character should be 8
    check_body = urllib.parse.urlencode(
        [(k, v or "") for k, v in browser_pairs(fields, field_values(wrong, "王小明"), csrf, seeded.save_unit_id)]).encode()
    template = Person("@ID@", "@BIRTH@", "@GENDER@")
    save_body = multipart(browser_pairs(fields, field_values(template, "赵压测"), csrf, seeded.save_unit_id) + [("_action", "save")])
    return [
        Target("baseline: minimal Litestar GET /", "baseline", "GET", "/"),
        Target("form page GET /f/student/new", "dangan", "GET", "/f/student/new", common),
        Target("inline check POST /f/student/check?field=id_card", "dangan", "POST", "/f/student/check?field=id_card",
               {**common, "Content-Type": "application/x-www-form-urlencoded", "HX-Request": "true", "X-CSRF-Token": csrf},
               check_body),
        # the list before the save, so it reads the seeded students, not thousands of bench saves
        Target("list GET /f/student/?gender=女&grade=高一", "dangan", "GET", LIST_PATH, common),
        Target("save POST /f/student/new (multipart, unique ID)", "dangan", "POST", "/f/student/new",
               {**common, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, save_body, expect="303", unique=True),
    ]


def fill(target: Target, person: Person) -> bytes:
    return (target.body.replace(b"@ID@", person.id_card.encode()).replace(b"@BIRTH@", person.birth.encode())
            .replace(b"@GENDER@", person.gender.encode()))


def sanity(bases: dict[str, str], targets: list[Target], message: str, person: Person) -> None:
    """Each target once: the right status and content, so the load runs measure real work."""
    for t in targets:
        body = fill(t, person) if t.unique else (t.body or None)
        status, headers, text = http(bases[t.server], t.path, data=body if t.method == "POST" else None, headers=t.headers)
        if t.name.startswith("baseline"):
            ok = status == 200 and text == "ok"
        elif "check" in t.path:
            ok = status == 200 and message in text
        elif t.expect == "303":
            ok = status == 303 and re.fullmatch(r"/f/student/\d+", headers.get("location", "")) is not None
        elif t.path == LIST_PATH:
            found = re.search(r"共 (\d+)\+? 条", text)
            ok = status == 200 and found is not None and int(found[1]) > 0
        else:
            ok = status == 200 and 'id="in-id_card"' in text
        if not ok:
            raise SystemExit(f"sanity check failed for {t.name}: {status}\n{text[:1500]}")


# --- 4. load generators ----------------------------------------------------------------------------------
@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    bad: int  # responses with an unexpected status, plus socket errors
    generator: str
    server_cpu_s: float = 0.0  # CPU time (user+system, all threads) the server process used during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / self.requests if self.requests else 0.0

    @property
    def server_cores(self) -> float:
        return self.server_cpu_s / self.seconds if self.seconds else 0.0


LUA = r"""
-- generated by bench/web_forms.py
local counter = 0
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
local method, path, body_file, pool_file, nthreads = %(method)s, %(path)s, %(body)s, %(pool)s, %(threads)d
local headers = %(headers)s
local body, pool, i = nil, {}, 0
function init(args)
  if body_file ~= "" then local f = io.open(body_file, "rb"); body = f:read("*a"); f:close() end
  if pool_file ~= "" then
    local n = 0
    for line in io.lines(pool_file) do
      if n %% nthreads == tid then pool[#pool + 1] = line end
      n = n + 1
    end
  end
  if #pool == 0 then req = wrk.format(method, path, headers, body) end
end
function request()
  if #pool == 0 then return req end
  i = i + 1
  local id, birth, gender = pool[((i - 1) %% #pool) + 1]:match("([^,]+),([^,]+),([^,]+)")
  local b = body:gsub("@ID@", id):gsub("@BIRTH@", birth):gsub("@GENDER@", gender)
  return wrk.format(method, path, headers, b)
end
"""  + WRK_REPORT_LUA


def lua_table(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f'[{json.dumps(k)}] = {json.dumps(v, ensure_ascii=False)}' for k, v in headers.items()) + "}"


def run_wrk(base: str, target: Target, seconds: float, connections: int, workdir: Path, pool: list[Person]) -> Result:
    threads = 1  # one wrk thread drives 32 connections easily and leaves the second core to the server
    slug = re.sub(r"\W+", "_", target.name)[:40]
    body_file = pool_file = ""
    if target.body:
        body_file = str(workdir / f"{slug}.body")
        Path(body_file).write_bytes(target.body)
    if pool:
        pool_file = str(workdir / f"{slug}.{len(pool)}.pool")
        Path(pool_file).write_text("".join(f"{p.id_card},{p.birth},{p.gender}\n" for p in pool), encoding="utf-8")
    script = workdir / f"{slug}.lua"
    script.write_text(LUA % {"method": lua_string(target.method), "path": lua_string(target.path), "body": lua_string(body_file),
                             "pool": lua_string(pool_file), "threads": threads, "headers": lua_table(target.headers)},
                      encoding="utf-8")
    # The save's 303 is the success case, a 422 counts as "bad".
    data = wrk_figures(base, script, seconds, connections, threads)
    return Result(data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000, data["p99_us"] / 1000, data["bad"], "wrk")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif status not in (204, 304):
        await reader.read()
        return status, True
    return status, headers.get("connection", "").lower() == "close"


async def _load(host: str, port: int, make: Callable[[], bytes], seconds: float, connections: int, expect: str
                ) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    bad = 0
    stop_at = time.perf_counter() + seconds
    ok_status = (lambda s: s == 303) if expect == "303" else (lambda s: 200 <= s < 300)

    async def worker() -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                request = make()
                began = time.perf_counter()
                writer.write(request)
                try:
                    status, closed = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    bad += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append(time.perf_counter() - began)
                if not ok_status(status):
                    bad += 1
                if closed:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies, bad, time.perf_counter() - began


def run_python(base: str, target: Target, seconds: float, connections: int, pool: list[Person]) -> Result:
    parsed = urllib.parse.urlsplit(base)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    head = f"{target.method} {target.path} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in target.headers.items())
    head_bytes = head.encode()
    pool_iter = iter(pool)

    def make() -> bytes:
        body = fill(target, next(pool_iter)) if pool else target.body
        length = f"Content-Length: {len(body)}\r\n" if target.method == "POST" else ""
        return head_bytes + length.encode() + b"\r\n" + body

    latencies, bad, elapsed = asyncio.run(_load(host, port, make, seconds, connections, target.expect))
    latencies.sort()
    if not latencies:
        return Result(0, elapsed, 0, 0, bad, "python")
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return Result(len(latencies), elapsed, p(0.50), p(0.99), bad, "python-asyncio")


def load(kind: str, base: str, target: Target, seconds: float, connections: int, workdir: Path, pool: list[Person],
         pid: int) -> Result:
    cpu_before = cpu_seconds(pid)
    if kind == "wrk":
        result = run_wrk(base, target, seconds, connections, workdir, pool)
    else:
        result = run_python(base, target, seconds, connections, pool)
    result.server_cpu_s = cpu_seconds(pid) - cpu_before
    return result


# --- 5. profile ------------------------------------------------------------------------------------------
def py_spy() -> str | None:
    return shutil.which("py-spy", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
THREAD = re.compile(r"^thread \(\w+\): (?P<name>.*)$")
RATE = 250
GROUPS = [  # (label, frame prefixes): where a request's time goes, counted once per sample
    ("Jinja2 template rendering", ("jinja2/environment.py:Template.render",)),
    ("SQLAlchemy + sqlite3 (any sqlalchemy/ frame)", ("sqlalchemy/",)),
    ("web/auth.py:session_guard (session + principal + CSRF)", ("web/auth.py:session_guard",)),
    ("request body parsing (Litestar form/multipart)", ("litestar/_multipart.py", "litestar/connection/request.py:Request.form",
                                                        "multipart.py")),
    ("socket writes (asyncio transport write)", ("asyncio/selector_events.py:_SelectorSocketTransport.write",)),
    ("h11 HTTP parsing/serialising (h11/ frames)", ("h11/",)),
    ("sync guard hop to the thread pool (anyio to_thread / executor submit)", ("anyio/to_thread.py", "litestar/utils/sync.py",
                                                                               "concurrent/futures/thread.py")),
]


def summarise_profile(raw: Path, seconds: float, top: int = 15) -> str:
    """Self and inclusive shares of the event-loop thread's busy samples (py-spy --threads, idle excluded);
    project frames as file:function. Other threads (the thread pool running sync guards) summarised apart."""
    busy: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    other_leaf: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        parts = [f for f in stack.split(";") if f]
        thread = THREAD.match(parts[0]) if parts else None
        name = thread["name"] if thread else "?"
        frames = [_frame(f) for f in (parts[1:] if thread else parts)]
        busy[name] += count
        if name != "MainThread":
            if frames:
                other_leaf[f"{name}: {frames[-1]}"] += count
            continue
        if frames:
            self_time[frames[-1]] += count
        for frame in dict.fromkeys(frames):
            inclusive[frame] += count
        for label, prefixes in GROUPS:
            if any(f.startswith(prefixes) for f in frames):
                groups[label] += count
    main = busy.get("MainThread", 0)
    if not main:
        return "  (no samples)"
    wall = RATE * seconds
    out = [f"  event-loop thread busy in {main} of ~{wall:.0f} samples ({100 * main / wall:.0f}% of wall time);"
           f" other threads: " + (", ".join(f"{n} {c} ({100 * c / wall:.0f}%)" for n, c in busy.items() if n != "MainThread") or "none"),
           "  self, share of the event-loop thread's busy samples:"]
    out += [f"    {100 * n / main:5.1f}%  {frame}" for frame, n in self_time.most_common(top)]
    out.append("  inclusive, project code (engine/ web/), same base:")
    project = [(frame, n) for frame, n in inclusive.most_common() if frame.startswith(("engine/", "web/"))
               and not frame.startswith("web/cli.py")]
    out += [f"    {100 * n / main:5.1f}%  {frame}" for frame, n in project[:top]]
    out.append("  groups (inclusive, same base):")
    for label, prefixes in GROUPS:
        n = groups.get(label, 0)
        out.append(f"    {100 * n / main:5.1f}%  {label}")
    if other_leaf:
        out.append("  other threads, top leaves (share of wall time):")
        out += [f"    {100 * n / wall:5.1f}%  {frame}" for frame, n in other_leaf.most_common(5)]
    return "\n".join(out)


def _frame(text: str) -> str:
    match = FRAME.match(text.strip())
    if not match:
        return text.strip()
    path = match["file"]
    root = str(ROOT) + "/"
    if path.startswith(root):
        path = path[len(root):]
    else:
        path = re.sub(r"^.*/site-packages/", "", path)
        path = re.sub(r"^.*/lib/python3\.\d+/", "stdlib/", path)
    return f"{path}:{match['func']}"


def settle() -> None:
    """Let the server finish what the previous run queued (a slow endpoint leaves a backlog)."""
    time.sleep(2)


def profile(kind: str, bases: dict[str, str], targets: list[Target], pid: int, seconds: float, connections: int,
            workdir: Path, pools: Iterator[list[Person]]) -> None:
    spy = py_spy()
    if spy is None:
        print("\n--profile: py-spy not found; `.venv/bin/pip install py-spy` (ad hoc, not in the lock)")
        return
    for t in targets:
        if t.server != "dangan":
            continue
        raw = workdir / (re.sub(r"\W+", "_", t.name)[:40] + ".pyspy.txt")
        settle()
        load(kind, bases[t.server], t, 2, connections, workdir, next(pools) if t.unique else [], pid)  # warm-up
        settle()
        # Load runs a little longer than the recording, so every sample is under load.
        spy_proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(RATE),
                                     "--threads", "--format", "raw", "--output", str(raw), "--nonblocking"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        result = load(kind, bases[t.server], t, seconds + 2, connections, workdir, next(pools) if t.unique else [], pid)
        _, err = spy_proc.communicate(timeout=seconds + 60)
        print(f"\nprofile: {t.name} — {result.rps:.0f} req/s under py-spy  ({raw})")
        print(summarise_profile(raw, seconds) if raw.exists() else f"  py-spy failed: {err.decode(errors='replace')[-500:]}")


# --- main ------------------------------------------------------------------------------------------------
def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def code_version() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout.splitlines()
    except OSError:
        return "unknown"
    return f"git {head}" + (f" + {len(dirty)} modified files" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per target (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load before each target")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--profile", action="store_true", help="an extra pass per Dangan target under py-spy")
    parser.add_argument("--workdir", type=Path, help="keep the database, logs and scripts here (default: a temp dir, removed)")
    parser.add_argument("--seed", type=int, default=20261124)
    args = parser.parse_args()

    kind = args.loadgen if args.loadgen != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if kind == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk not found (apt-get install wrk) — or use --loadgen python")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dangan-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "bench.db"
    for leftover in workdir.glob("bench.db*"):
        leftover.unlink()
    db_url = f"sqlite:///{db_path}"
    rng = random.Random(args.seed)
    print(f"Dangan web forms bench — {dt.datetime.now():%Y-%m-%d %H:%M} — {machine()} — {code_version()}")
    print("load average before start: %.2f %.2f %.2f (other work on the 2 cores skews the figures)" % os.getloadavg())
    print(f"load generator: {kind}; {args.connections} connections; {args.duration:g} s per target "
          f"(+{args.warmup:g} s warm-up); workdir {workdir}")

    seeded = seed(db_url, workdir, args.students, rng)
    print(f"seeded {args.students} students through RecordService.create in {seeded.seconds:.1f} s")
    save_people = people(SAVE_REGIONS, rng)

    def pools() -> Iterator[list[Person]]:
        while True:  # more unique numbers than any run can save
            yield [next(save_people) for _ in range(60_000)]

    pool_source = pools()

    env = {**os.environ, "DANGAN_DATABASE_URL": db_url, "DANGAN_VAR": str(workdir), "DANGAN_DEFINITIONS": str(DEFINITIONS)}
    dangan_port, baseline_port = free_port(), free_port()
    bases = {"dangan": f"http://127.0.0.1:{dangan_port}", "baseline": f"http://127.0.0.1:{baseline_port}"}
    servers: list[subprocess.Popen] = []
    results: list[tuple[Target, Result]] = []
    try:
        servers.append(start([str(DANGAN), "serve", "--host", "127.0.0.1", "--port", str(dangan_port)], env,
                             workdir / "dangan.log", bases["dangan"] + "/healthz"))
        servers.append(start([str(PYTHON), str(ROOT / "bench" / "minimal_app.py"), "--port", str(baseline_port)], env,
                             workdir / "baseline.log", bases["baseline"] + "/"))
        cookie, csrf = log_in(bases["dangan"], BENCH_USER, BENCH_PASSWORD, "/f/student/new")
        from engine.loader import load_definitions  # noqa: PLC0415
        from engine.messages import MESSAGES  # noqa: PLC0415

        label = load_definitions(DEFINITIONS).forms["student"].fields["id_card"].label
        message = MESSAGES["id_card_check"].format(label=label, expected="8")
        targets = build_targets(cookie, csrf, seeded)
        sanity(bases, targets, message, next(save_people))
        print("sanity checks passed (form page, inline check message, save → 303, list has rows)\n")
        for t in targets:
            pid = servers[0 if t.server == "dangan" else 1].pid
            pool = next(pool_source) if t.unique else []
            settle()
            if args.warmup > 0:
                load(kind, bases[t.server], t, args.warmup, args.connections, workdir, next(pool_source) if pool else [], pid)
                settle()
            result = load(kind, bases[t.server], t, args.duration, args.connections, workdir, pool, pid)
            results.append((t, result))
            print(f"  {t.name:<52} {result.rps:8.1f} req/s  p50 {result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms"
                  f"  server CPU {result.server_cores:4.2f} cores, {result.cpu_ms_per_request:5.2f} ms/req  bad {result.bad}",
                  flush=True)
        report(results, args, kind)
        if args.profile:
            profile(kind, bases, targets, servers[0].pid, args.duration, args.connections, workdir, pool_source)
        log_text = (workdir / "dangan.log").read_text(errors="replace")
        if "Traceback" in log_text:
            print(f"\nWARNING: tracebacks in {workdir / 'dangan.log'}")
    finally:
        for process in servers:
            stop(process)
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(results: list[tuple[Target, Result]], args: argparse.Namespace, kind: str) -> None:
    baseline = next(r for t, r in results if t.server == "baseline")
    print(f"\n| endpoint ({args.connections} connections, {args.duration:g} s, {kind}) | req/s | ratio to baseline | p50 ms | p99 ms"
          " | server CPU (cores) | server CPU ms/req | bad |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t, r in results:
        print(f"| {t.name} | {r.rps:.0f} | {r.rps / baseline.rps:.3f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.server_cores:.2f}"
              f" | {r.cpu_ms_per_request:.2f} | {r.bad} |")
    form = next(r for t, r in results if t.path == "/f/student/new" and t.method == "GET")
    ratio_ok, p99_ok = form.rps >= GOAL_RATIO * baseline.rps, form.p99_ms < GOAL_P99_MS
    print(f"\ngoal (form page >= {GOAL_RATIO} x baseline req/s and p99 < {GOAL_P99_MS:g} ms): "
          f"ratio {form.rps / baseline.rps:.3f} {'MET' if ratio_ok else 'MISSED'}, "
          f"p99 {form.p99_ms:.1f} ms {'MET' if p99_ok else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
