"""The `dangan` command: check, serve, create-user, reload."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from engine.accounts import AccountError, create_user, generate_password
from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.org import unit_by_path
from engine.storage.db import Database, in_memory_sqlite
from engine.storage.fieldsql import IndexConflict
from web.settings import Settings


def cmd_check(args: argparse.Namespace) -> int:
    directory = args.dir or str(Settings().definitions)
    try:
        definitions = load_definitions(directory)
    except DefinitionErrors as exc:
        for error in exc.errors:
            print(error)
        print(f"\n共 {len(exc.errors)} 处错误。", file=sys.stderr)
        return 1
    for warning in definitions.warnings:
        print(warning)
    fields = sum(len(f.fields) for f in definitions.forms.values())
    print(f"定义检查通过：{len(definitions.forms)} 个表单（{fields} 个字段）、{len(definitions.roles)} 个角色、"
          f"{len(definitions.options)} 个选项列表、{len(definitions.workflows)} 个流程；版本 {definitions.version}"
          + (f"；{len(definitions.warnings)} 处警告" if definitions.warnings else ""))
    return 0


def pid_file(var_dir: Path, port: int) -> Path:
    """The serving parent's pid, one file per port: two servers from one checkout must not share it."""
    return var_dir / f"dangan-{port}.pid"


def cmd_serve(args: argparse.Namespace) -> int:
    from web.app import prepare  # noqa: PLC0415 — keeps `check` free of web start-up cost
    from web.serving import default_workers, serve  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    workers = args.workers or default_workers(settings.database_url)
    if workers > 1 and in_memory_sqlite(settings.database_url):
        print("内存中的 SQLite 数据库只属于一个进程，--workers 大于 1 需要数据库文件或 PostgreSQL。", file=sys.stderr)
        return 2
    try:
        state, admin = prepare(settings)
    except DefinitionErrors as exc:
        print("定义有错误，服务未启动：", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    except IndexConflict as exc:
        print(f"服务未启动：{exc}", file=sys.stderr)
        return 1
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    if admin is not None:
        note = settings.var_dir / "initial-admin.txt"
        note.write_text(f"用户名: {admin.username}\n初始密码: {admin.password}\n", encoding="utf-8")
        note.chmod(0o600)
        print(f"\n已创建第一个管理员账号：用户名 {admin.username}，初始密码 {admin.password}"
              f"\n（也保存在 {note}；首次登录后须修改密码）\n", flush=True)
    pid_file(settings.var_dir, args.port).write_text(str(os.getpid()))
    print(f"Dangan 运行在 http://{args.host}:{args.port}/ （数据库 {_safe_url(settings.database_url)}，"
          f"{workers} 个工作进程）", flush=True)
    serve(state, args.host, args.port, workers)
    return 0


def _safe_url(url: str) -> str:
    return url.split("@")[-1] if "@" in url else url


def cmd_create_user(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        definitions = load_definitions(settings.definitions)
    except DefinitionErrors as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.role not in definitions.roles:
        print(f"未知的角色“{args.role}”；可用：{'、'.join(definitions.roles)}", file=sys.stderr)
        return 1
    db = Database(settings.database_url)
    db.upgrade()
    password = args.password or generate_password()
    with db.write() as s:
        unit = unit_by_path(s, args.unit)
        if unit is None:
            print(f"找不到组织单位“{args.unit}”（用“/”分隔各级名称，如 示范区教育局/示范区第一中学）", file=sys.stderr)
            return 1
        try:
            create_user(s, args.username, password, [args.role], [unit.id], display_name=args.name or args.username)
        except AccountError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        s.commit()
    print(f"已创建用户 {args.username}（{definitions.roles[args.role].name}，{args.unit}），初始密码：{password}；首次登录须修改密码")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Check first (so errors are shown here), then signal the running server to re-read."""
    if cmd_check(argparse.Namespace(dir=None)) != 0:
        print("定义有错误，运行中的服务继续使用上一版定义。", file=sys.stderr)
        return 1
    path = pid_file(Settings().var_dir, args.port)
    try:
        pid = int(path.read_text())
        os.kill(pid, signal.SIGHUP)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        print(f"没有找到运行中的服务（{path}）；服务不在默认端口时用 --port 指定", file=sys.stderr)
        return 1
    print(f"已通知服务（端口 {args.port}，进程 {pid}）重新加载定义。")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from web.excel import command_import  # noqa: PLC0415 — only `import` needs the Excel package

    return command_import(args, sys.stdout, sys.stderr)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="dangan", description="Dangan 学生电子档案表单与流程引擎")
    sub = root.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="检查定义目录")
    check.add_argument("dir", nargs="?", help="定义目录（默认 $DANGAN_DEFINITIONS 或 ./definitions）")
    check.set_defaults(func=cmd_check)
    serve = sub.add_parser("serve", help="启动网页服务")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=int(os.environ.get("DANGAN_WORKERS", "0")),
                       help="工作进程数（默认：SQLite 为 CPU 核数，最多 2；PostgreSQL 为 CPU 核数，最多 4）")
    serve.set_defaults(func=cmd_serve)
    user = sub.add_parser("create-user", help="创建用户")
    user.add_argument("--username", required=True)
    user.add_argument("--role", required=True)
    user.add_argument("--unit", required=True, help="组织单位路径，如 示范区教育局/示范区第一中学")
    user.add_argument("--password", help="初始密码（不填则随机生成）")
    user.add_argument("--name", help="显示名称")
    user.set_defaults(func=cmd_create_user)
    reload = sub.add_parser("reload", help="让运行中的服务重新加载定义")
    reload.add_argument("--port", type=int, default=8000, help="服务的端口（默认 8000，与 serve 相同）")
    reload.set_defaults(func=cmd_reload)
    excel = sub.add_parser("import", help="从 Excel 或 CSV 文件导入记录（先预览，再导入）")
    excel.add_argument("form", help="表单，如 student")
    excel.add_argument("file", help=".xlsx 或 .csv 文件")
    excel.add_argument("--user", required=True, help="以哪个用户的身份和权限导入")
    excel.add_argument("--mode", choices=("insert", "update", "upsert"), default="upsert",
                       help="insert 仅新增，update 仅更新，upsert 新增或更新（默认）")
    excel.add_argument("--dry-run", action="store_true", help="只预览，不保存")
    excel.add_argument("--skip-invalid", action="store_true", help="跳过错误行，导入其余行（默认：全部正确才导入）")
    excel.add_argument("--no-size-limit", action="store_true", help="不限制文件大小（行数等其他上限仍然有效）")
    excel.set_defaults(func=cmd_import)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
