"""`dangan org-apply [--yes]`: org.yaml's unit tree applied to the database of a running system (engine/org_apply.py):
the difference shown first, applied in one transaction after confirmation."""
from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from web.settings import Settings


def cmd_org_apply(args: argparse.Namespace) -> int:
    return org_apply(args, sys.stdin, sys.stdout, sys.stderr)


def org_apply(args: Any, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    """0: applied or nothing to apply; 1: definitions invalid or not confirmed."""
    from engine.loader import demo_units  # noqa: PLC0415 — imported when run: web/cli.py
    from engine.org_apply import apply_org, plan_org  # noqa: PLC0415
    from engine.storage.db import Database  # noqa: PLC0415
    from web.commands import definitions_for_command  # noqa: PLC0415

    settings = Settings()
    if definitions_for_command(settings, err) is None:
        print("定义有错误，没有更改组织机构。", file=err)
        return 1
    tree = demo_units(settings.definitions)
    db = Database(settings.database_url, timeouts=settings.database_timeouts())
    try:
        db.upgrade()
        with db.read() as s:
            plan = plan_org(s, tree)
        if not plan.declared:
            print("org.yaml 中没有 demo_units（组织机构树），没有可应用的内容。", file=out)
            return 0
        for line in plan.lines():
            print(line, file=out)
        if not plan.pending:
            print("数据库中的组织机构与 org.yaml 一致，无需更改。", file=out)
            return 0
        print(f"将要：{plan.counts()}。有数据（档案记录、用户等）的单位不会被删除或移动。", file=out)
        if not args.yes:
            print("确认应用这些更改？输入 y 确认：", end="", file=out, flush=True)
            answer = stdin.readline().strip().lower()
            if answer not in ("y", "yes", "是"):
                print("未应用任何更改。", file=out)
                return 1
        applied = apply_org(db, tree)
        print(f"已应用：{applied.counts() or '无更改'}。运行中的服务会在一秒内读到新的组织机构，无需重启。", file=out)
        return 0
    finally:
        db.dispose()


def add_parser(sub: Any) -> None:
    org = sub.add_parser("org-apply", help="把 org.yaml 中的组织机构（demo_units）应用到数据库：先列出差异，确认后一次完成")
    org.add_argument("--yes", "-y", action="store_true", help="不询问，直接应用")
    org.set_defaults(func=cmd_org_apply)
