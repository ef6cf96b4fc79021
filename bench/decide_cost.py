"""What one workflow decision costs the application process, in instructions: a figure that does not move with the VM.

The HTTP benches (bench/workflows.py) measure the whole server under load, and on these VMs the same code's CPU per
request moved by ±20 % within minutes. This one counts instructions with valgrind's callgrind, which is repeatable
for the same code and data, so a change to the decision path can be compared with one run on each side:

  1. seeds a small database (SQLite file or a PostgreSQL schema) as bench/workflows.py does: students with one open
     休学 application each, waiting for the bench user;
  2. runs, under `valgrind --tool=callgrind`, a process that makes W approvals (warm-up: caches, prepared
     statements) and then N more through `WorkflowService.decide` (the final approval: task, application, timeline,
     the record's 学籍状态 and its audit entry, one transaction), once with N = 0 and once with N = --decisions;
  3. prints the difference divided by N: instructions per decision in this process (Python, SQLAlchemy, the driver,
     and on SQLite the database engine itself; PostgreSQL's server process is not counted), and the plain CPU time
     per decision from a run without valgrind.

    .venv/bin/python bench/decide_cost.py --db sqlite          # ~2 minutes
    .venv/bin/python bench/decide_cost.py --db pg --decisions 100

Needs valgrind (Debian package; on every machine of this kind).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/x.py`
from harness import drop_schema, pg_schema  # noqa: E402
from workflows import BENCH_USER, DEFINITIONS, approve_pool, principal_of, seed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
WARMUP = 20


def decide(db_url: str, var_dir: Path, warmup: int, count: int) -> float:
    """`warmup` then `count` approvals in this process; CPU seconds per counted approval."""
    from engine.workflows.service import WorkflowService  # noqa: PLC0415
    from web.app import prepare  # noqa: PLC0415
    from web.settings import Settings  # noqa: PLC0415

    pool = approve_pool(db_url)
    if len(pool) < warmup + count:
        raise SystemExit(f"only {len(pool)} open applications for {warmup + count} approvals")
    state, _admin = prepare(replace(Settings(), database_url=db_url, definitions=DEFINITIONS, var_dir=var_dir))
    principal = principal_of(state, BENCH_USER)
    service = WorkflowService(state.db, state.records)
    for application, task in pool[:warmup]:
        service.decide(state.definitions, principal, application, task, "approve")
    began = time.process_time()
    for application, task in pool[warmup:warmup + count]:
        service.decide(state.definitions, principal, application, task, "approve")
    spent = time.process_time() - began
    state.db.dispose()
    return spent / max(1, count)


def instructions(db_url: str, var_dir: Path, count: int, workdir: Path) -> int:
    """Instructions callgrind counts in a whole `--decide` run (start-up included; the caller takes differences)."""
    out = workdir / f"callgrind-{count}.out"
    run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(PYTHON), __file__,
                          "--decide", db_url, "--var", str(var_dir), "--decisions", str(count)],
                         capture_output=True, text=True)
    collected = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or collected is None:
        raise SystemExit(f"valgrind run failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return int(collected[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--decisions", type=int, default=100)
    parser.add_argument("--decide", help=argparse.SUPPRESS)  # the measured child: a seeded database's URL
    parser.add_argument("--var", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.decide:  # the child run under valgrind
        decide(args.decide, args.var, WARMUP, args.decisions)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install -y valgrind")
    workdir = Path(tempfile.mkdtemp(prefix="dangan-decide-cost-"))
    admin = os.environ.get("DANGAN_TEST_PG_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    schema = None
    try:
        if args.db == "pg":
            url, schema = pg_schema(admin, "bench_dc")
        else:
            url = f"sqlite:///{workdir / 'bench.db'}"
        # Three runs take from one pool: the CPU-time run, then the two callgrind runs (each with its warm-up).
        seed(url, workdir, round((3 * WARMUP + 2 * args.decisions) / 0.75) + 20)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        cpu = decide(url, workdir, WARMUP, args.decisions)
        start_up = instructions(url, workdir, 0, workdir)
        total = instructions(url, workdir, args.decisions, workdir)
        print(f"decide_cost — {time.strftime('%Y-%m-%d %H:%M')} — git {head} — {args.db}, {args.decisions} approvals"
              f" after {WARMUP} warm-up")
        print(f"  instructions per decision (callgrind, this process): {(total - start_up) / args.decisions / 1e6:.2f} M")
        print(f"  CPU per decision (no valgrind; moves with the VM):    {cpu * 1000:.2f} ms")
    finally:
        if schema is not None:
            drop_schema(admin, schema)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
