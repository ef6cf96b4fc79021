"""The `dangan` command: check, serve, create-user, reload, import, backup, restore, verify-certificate,
export-archive, import-archive, link-accounts, org-apply."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from web.archive_commands import add_parsers as add_archive_parsers
from web.cli_org import add_parser as add_org_apply
from web.settings import Settings

# Each command imports what it needs when it runs: `dangan import` of one exam's grades takes a few seconds, and
# importing every command's modules (the web app, backups, archives, accounts) was a third of them.


def cmd_check(args: argparse.Namespace) -> int:
    from engine.errors import DefinitionErrors  # noqa: PLC0415
    from engine.loader import load_definitions  # noqa: PLC0415

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
          f"{len(definitions.options)} 个选项列表、{len(definitions.workflows)} 个流程、{len(definitions.certificates)} 种证书；"
          f"版本 {definitions.version}" + (f"；{len(definitions.warnings)} 处警告" if definitions.warnings else ""))
    return 0


def pid_file(var_dir: Path, port: int) -> Path:
    """The serving parent's pid, one file per port: two servers from one checkout must not share it."""
    return var_dir / f"dangan-{port}.pid"


def cmd_serve(args: argparse.Namespace) -> int:
    from web.app import prepare  # noqa: PLC0415 — keeps `check` free of web start-up cost
    from web.serving import default_workers, serve  # noqa: PLC0415
    from engine.errors import DefinitionErrors  # noqa: PLC0415
    from engine.storage.db import in_memory_sqlite  # noqa: PLC0415
    from engine.storage.projection import IndexConflict  # noqa: PLC0415

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
    """Through AccountService, as the system principal: the same rules as the admin page (web/controllers/admin.py)."""
    from engine.accounts import AccountInvalid, AccountService, UserChanges, system_principal  # noqa: PLC0415
    from engine.org import unit_by_path  # noqa: PLC0415
    from engine.passwords import generate_password  # noqa: PLC0415
    from engine.storage.db import Database  # noqa: PLC0415
    from web.commands import definitions_for_command  # noqa: PLC0415

    settings = Settings()
    definitions = definitions_for_command(settings)
    if definitions is None:
        return 1
    db = Database(settings.database_url, timeouts=settings.database_timeouts())
    try:
        db.upgrade()
        with db.read() as s:
            unit = unit_by_path(s, args.unit)
        if unit is None:
            print(f"找不到组织单位“{args.unit}”（用“/”分隔各级名称，如 示范区教育局/示范区第一中学）", file=sys.stderr)
            return 1
        password = args.password or generate_password()
        accounts = AccountService(db, settings.account_policy())
        try:
            accounts.create_user(system_principal(definitions), definitions, args.username, password,
                                 UserChanges(args.name or args.username, (args.role,), (unit.id,)))
        except AccountInvalid as exc:
            print("；".join(exc.problems), file=sys.stderr)
            return 1
    finally:
        db.dispose()
    print(f"已创建用户 {args.username}（{definitions.roles[args.role].name}，{args.unit}），初始密码：{password}；首次登录须修改密码")
    return 0


def cmd_unlock_user(args: argparse.Namespace) -> int:
    """Ends a user name's sign-in delay (repeated wrong passwords), as the system principal."""
    from engine.accounts import AccountService, UserNotFound, system_principal  # noqa: PLC0415
    from engine.storage.db import Database  # noqa: PLC0415
    from web.commands import definitions_for_command  # noqa: PLC0415

    settings = Settings()
    definitions = definitions_for_command(settings)
    if definitions is None:
        return 1
    db = Database(settings.database_url, timeouts=settings.database_timeouts())
    try:
        db.upgrade()
        cleared = AccountService(db, settings.account_policy()).unlock(system_principal(definitions), args.username)
    except UserNotFound:
        print(f"没有用户“{args.username}”", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(f"已解除用户 {args.username} 的登录限制。" if cleared else f"用户 {args.username} 当前没有登录限制。")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Check first (so errors are shown here), then signal the running server and wait for what it made of it: when
    this command says 已重新加载, every worker answers its next request with the new definitions."""
    from web.state import reload_ack_name  # noqa: PLC0415

    if cmd_check(argparse.Namespace(dir=None)) != 0:
        print("定义有错误，运行中的服务继续使用上一版定义。", file=sys.stderr)
        return 1
    settings = Settings()
    path = pid_file(settings.var_dir, args.port)
    asked = time.time_ns()
    try:
        pid = int(path.read_text())
        os.kill(pid, signal.SIGHUP)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        print(f"没有找到运行中的服务（{path}）；服务不在默认端口时用 --port 指定", file=sys.stderr)
        return 1
    ack = settings.var_dir / reload_ack_name(pid)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        outcome = _read_ack(ack)
        if outcome is not None and outcome.get("at", 0) >= asked:
            if outcome.get("ok"):
                print(f"服务（端口 {args.port}，进程 {pid}）已重新加载定义，版本 {outcome.get('version')}；所有已登录用户的下一次请求即按新定义处理。")
                for note in outcome.get("notes", []):
                    print(f"  {note}")
                return 0
            print(f"服务（进程 {pid}）未加载新定义，仍使用版本 {outcome.get('version')}：", file=sys.stderr)
            for error in outcome.get("errors", []):
                print(f"  {error}", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"已通知服务（进程 {pid}）重新加载定义，但 {args.wait:g} 秒内没有收到结果；请查看服务日志。", file=sys.stderr)
    return 1


def _running_server_file(var_dir: Path) -> Path | None:
    """The pid file of a server of this checkout that still runs (any port), for restore to refuse while it does."""
    from engine.backup.service import running_server  # noqa: PLC0415

    return next((f for f in sorted(var_dir.glob("dangan-*.pid")) if running_server(f) is not None), None)


def _read_ack(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def cmd_import(args: argparse.Namespace) -> int:
    from web.cli_import import command_import  # noqa: PLC0415 — only `import` needs the Excel package

    return command_import(args, sys.stdout, sys.stderr)


def cmd_backup(args: argparse.Namespace) -> int:
    from engine.backup.manifest import Counts  # noqa: PLC0415
    from engine.backup.service import MANUAL_PREFIX, archive_name, run_backup  # noqa: PLC0415
    from engine.fields.files import human_size  # noqa: PLC0415
    from engine.storage.db import Database  # noqa: PLC0415
    from engine.storage.models import utcnow  # noqa: PLC0415

    settings = Settings()
    output = Path(args.output) if args.output else settings.backup_dir / archive_name(MANUAL_PREFIX, utcnow())
    db = Database(settings.database_url, checkpoint=False, timeouts=settings.database_timeouts())
    try:
        run = run_backup(db, output, settings.definitions, "manual", settings.pg_bin)
    finally:
        db.dispose()
    if not run.verified:
        print(f"备份失败：{run.message}", file=sys.stderr)
        return 1
    print(f"备份完成，已读回校验：{run.file}（{human_size(run.size)}）\n  {Counts.from_json(run.counts).summary()}")
    if run.message:
        print(f"  注意：{run.message}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from engine.backup.manifest import BackupError  # noqa: PLC0415
    from engine.backup.service import restore_backup  # noqa: PLC0415

    settings = Settings()
    try:
        result = restore_backup(settings.database_url, Path(args.file), definitions=settings.definitions, force=args.force,
                                safety_dir=settings.backup_dir,
                                definitions_out=Path(args.definitions) if args.definitions else None,
                                server_pid_file=_running_server_file(settings.var_dir), pg_bin=settings.pg_bin)
    except BackupError as exc:
        print(f"未恢复，数据库没有改变：{exc}", file=sys.stderr)
        return 1
    manifest = result.manifest
    print(f"已恢复 {args.file}（备份于 {manifest.created_at:%Y-%m-%d %H:%M} UTC，"
          f"定义版本 {manifest.definitions_version or '未记录'}），行数与备份清单一致：\n  {manifest.counts.summary()}")
    if result.safety_copy is not None:
        print(f"替换前的数据已备份到 {result.safety_copy}")
    if args.definitions:
        print(f"备份中的定义文件已写到 {args.definitions}")
    for note in result.notes:
        print(note)
    return 0


def cmd_verify_certificate(args: argparse.Namespace) -> int:
    # Imported here, as `serve` and `import` do: PDF, QR and image libraries are not for every command's start-up.
    from engine.certificates.offline import check, public_keys_in  # noqa: PLC0415
    from engine.certificates.signing import load_public_keys  # noqa: PLC0415

    try:
        keys = load_public_keys(Path(p).read_bytes() for p in args.key) if args.key else \
            public_keys_in(Settings().var_dir / "keys")
    except (OSError, ValueError) as exc:
        print(f"无法读取公钥：{exc}", file=sys.stderr)
        return 2
    if not keys:
        print("没有可用的公钥：用 --key 指定颁发学校公布的证书签名公钥（在其证书查验页面下载）", file=sys.stderr)
        return 2
    source = Path(args.source)
    try:
        data = source.read_bytes() if source.is_file() else args.source.encode("utf-8")
    except OSError as exc:
        print(f"无法读取文件：{exc}", file=sys.stderr)
        return 2
    result = check(data, keys)
    content = result.content
    if content:
        print(f"证书：{content.get('t', '')}（编号 {content.get('n', '')}）{'，补发自 ' + content['r'] if content.get('r') else ''}")
        print(f"学校：{content.get('s', '')}")
        print(f"颁发日期：{content.get('d', '')}")
        for _key, label, value in content.get("f", []):
            print(f"{label}：{value}")
    if result.ok:
        print(f"签名：有效（密钥 {result.payload.key}）")  # type: ignore[union-attr]
        print("结果：证书内容与学校的签名一致，未被篡改。")
    else:
        print("结果：不可信", file=sys.stderr)
        for problem in result.problems:
            print(f"  - {problem}", file=sys.stderr)
    if result.payload is not None:
        print(f"注意：离线查验无法得知证书是否已被撤销或因补发作废，请到 {result.verify_url()} 在线查询。")
    return 0 if result.ok else 1


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
    unlock = sub.add_parser("unlock-user", help="解除用户名因多次密码错误而受到的登录限制")
    unlock.add_argument("username")
    unlock.set_defaults(func=cmd_unlock_user)
    reload = sub.add_parser("reload", help="让运行中的服务重新加载定义")
    reload.add_argument("--wait", type=float, default=60.0, help="等待服务加载结果的秒数（默认 60）")
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
    excel.add_argument("--sheet", default="", help="要导入的工作表（默认：与表单同名的，否则第一个带表头和数据的）")
    excel.add_argument("--no-size-limit", action="store_true", help="不限制文件大小（行数等其他上限仍然有效）")
    excel.add_argument("--map", action="append", default=[], metavar="列名=字段",
                       help="文件中的列对应哪个字段，如 --map 班级=所属班级（可重复；“列名=”忽略该列）；会记住，下次自动使用")
    excel.add_argument("--value", action="append", default=[], metavar="字段:值=选项",
                       help="单选列中不是选项的值对应哪个选项，如 --value 健康状况:很好=健康（可重复）；会记住，下次自动使用")
    excel.set_defaults(func=cmd_import)
    backup = sub.add_parser("backup", help="备份数据库（含附件）和定义目录到一个 .tar 文件，写完后读回校验")
    backup.add_argument("--output", "-o", help="备份文件（默认 $DANGAN_BACKUP_DIR/dangan-backup-<时间>.tar）")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser("restore", help="从备份文件恢复数据库（先完整校验；失败时不做任何更改）")
    restore.add_argument("file", help="dangan backup 生成的 .tar 文件")
    restore.add_argument("--force", action="store_true",
                         help="目标数据库已有数据时也恢复：整体替换（替换前先把现有数据备份到 $DANGAN_BACKUP_DIR）")
    restore.add_argument("--definitions", help="把备份中的定义文件写到这个目录（须不存在或为空）")
    restore.set_defaults(func=cmd_restore)
    verify = sub.add_parser("verify-certificate", help="离线查验证书（PDF、二维码图片或二维码文字）的签名")
    verify.add_argument("source", help="证书 PDF 文件、扫描的二维码图片，或二维码中的文字（网址）")
    verify.add_argument("--key", action="append", default=[],
                        help="颁发学校的证书签名公钥（PEM，可重复；默认用本机 var/keys 中的公钥）")
    verify.set_defaults(func=cmd_verify_certificate)
    from web.cli_accounts import add_parser as add_link_accounts  # noqa: PLC0415

    add_link_accounts(sub)
    add_org_apply(sub)
    add_archive_parsers(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
