"""`dangan export-archive` and `dangan import-archive`: archive packages between installations, as a named user."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, TextIO

from web.settings import Settings

if TYPE_CHECKING:  # the commands import what they use when they run (web/cli.py: every `dangan` start pays for imports)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from engine.archives.service import ImportPlan
    from engine.permissions import Principal
    from engine.spec import Definitions
    from engine.storage.db import Database

KEY_DIR, TRUSTED_DIR = "keys", "trusted"


def trusted_keys(var_dir: Path, extra: list[str]) -> dict[str, Ed25519PublicKey]:
    """The keys a package may be signed with: the given files, the senders' keys an administrator put in
    `<var>/keys/trusted/`, and this installation's own."""
    from engine.certificates.signing import load_public_keys  # noqa: PLC0415

    keys_dir = var_dir / KEY_DIR
    files = [Path(p) for p in extra] + sorted((keys_dir / TRUSTED_DIR).glob("*.pem")) + sorted(keys_dir.glob("certificate-public-*.pem"))
    return load_public_keys(p.read_bytes() for p in files)


class _Context:
    def __init__(self, settings: Settings, definitions: Definitions, db: Database, principal: Principal) -> None:
        from engine.archives.service import ArchiveService  # noqa: PLC0415
        from engine.certificates.signing import KeyStore  # noqa: PLC0415
        from engine.records.service import RecordService  # noqa: PLC0415

        self.settings, self.definitions, self.db, self.principal = settings, definitions, db, principal
        self.archives = ArchiveService(db, RecordService(db, lambda: definitions.forms), KeyStore(settings.var_dir / KEY_DIR))

    def unit(self, path: str) -> int | None:
        from engine.org import unit_by_path  # noqa: PLC0415

        with self.db.read() as s:
            unit = unit_by_path(s, path)
            return unit.id if unit is not None else None


def _open(username: str, err: TextIO) -> _Context | None:
    from sqlalchemy import select  # noqa: PLC0415

    from engine.org import build_principal  # noqa: PLC0415
    from engine.storage.db import Database  # noqa: PLC0415
    from engine.storage.models import User  # noqa: PLC0415
    from web.commands import definitions_for_command, prepare_database  # noqa: PLC0415

    settings = Settings()
    definitions = definitions_for_command(settings, err)
    if definitions is None:
        return None
    db = Database(settings.database_url, checkpoint=False)
    prepare_database(db, definitions)
    with db.read() as s:
        user = s.scalar(select(User).where(User.username == username))
        principal = build_principal(s, user, definitions) if user is not None and user.is_active else None
    if principal is None:
        print(f"用户“{username}”不存在或已停用", file=err)
        db.dispose()
        return None
    return _Context(settings, definitions, db, principal)


def command_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from engine.refusals import Refused  # noqa: PLC0415

    ctx = _open(args.user, err)
    if ctx is None:
        return 1
    try:
        unit = None
        if args.unit:
            unit = ctx.unit(args.unit)
            if unit is None:
                print(f"没有单位“{args.unit}”，请写完整路径，如“示范区教育局/示范区第一中学/高一/高一(1)班”", file=err)
                return 1
        try:
            data = ctx.archives.export(ctx.definitions, ctx.principal, args.form, args.id, unit)
        except Refused as exc:
            print(f"未导出：{exc.message}", file=err)
            return 1
        Path(args.output).write_bytes(data)
        print(f"已导出档案包 {args.output}（{len(data)} 字节），签名密钥 {ctx.archives.keys.current_id()}；"
              f"接收方需要本机的公钥 {ctx.settings.var_dir / KEY_DIR}/certificate-public-{ctx.archives.keys.current_id()}.pem", file=out)
        return 0
    finally:
        ctx.db.dispose()


def command_import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import yaml  # noqa: PLC0415

    from engine.archives.package import PackageRefused, signer_key  # noqa: PLC0415
    from engine.archives.service import Mapping_  # noqa: PLC0415
    from engine.refusals import Refused  # noqa: PLC0415

    path = Path(args.file)
    try:
        data = path.read_bytes()
        mapping = Mapping_.of(yaml.safe_load(Path(args.map).read_text(encoding="utf-8")) if args.map else None)
    except (OSError, yaml.YAMLError) as exc:
        print(f"无法读取文件：{exc}", file=err)
        return 2
    except Refused as exc:
        print(exc.message, file=err)
        return 2
    ctx = _open(args.user, err)
    if ctx is None:
        return 1
    try:
        try:
            trusted = trusted_keys(ctx.settings.var_dir, args.key)
        except (OSError, ValueError) as exc:
            print(f"无法读取公钥：{exc}", file=err)
            return 2
        unit = ctx.unit(args.unit) if args.unit else None
        if args.unit and unit is None:
            print(f"没有单位“{args.unit}”，请写完整路径", file=err)
            return 1
        try:
            plan = ctx.archives.preview(ctx.definitions, ctx.principal, data, trusted, unit, mapping, args.overwrite)
        except PackageRefused as exc:
            print(f"档案包被拒绝：{exc.message}", file=err)
            if exc.code == "archive_untrusted":
                print(f"  发送方密钥编号：{signer_key(data)}", file=err)
            return 1
        except Refused as exc:
            print(f"未导入：{exc.message}", file=err)
            return 1
        report(plan, out)
        if not plan.ok:
            print("有问题的记录（须先解决，全部能导入时才会导入）：", file=err)
            for problem in plan.problems:
                print(f"  - {problem}", file=err)
            return 1
        if not args.apply:
            print("这是预览，没有写入任何数据；确认无误后加 --apply 导入。", file=out)
            return 0
        try:
            done = ctx.archives.apply(ctx.definitions, ctx.principal, data, trusted, unit, mapping, args.overwrite,
                                      expected=plan.digest)
        except Refused as exc:
            print(f"未导入：{exc.message}", file=err)
            return 1
        print(f"已导入：新增 {done.created} 条，更新 {done.updated} 条。", file=out)
        kept = plan.count("update") if not args.overwrite else 0
        if kept:
            print(f"有差异的 {kept} 条记录保留了本系统的内容；核对上面的差异后加 --overwrite 才会覆盖。", file=out)
        return 0
    finally:
        ctx.db.dispose()


def report(plan: ImportPlan, out: TextIO) -> None:
    manifest: Mapping[str, Any] = plan.package.manifest
    sender = manifest.get("sender", {})
    print(f"档案包：来自 {'、'.join(sender.get('units', [])) or '（未注明）'}，导出人 {sender.get('user', '')}，"
          f"导出于 {manifest.get('created_at', '')}；签名有效（密钥 {plan.package.key}），内容完整。", file=out)
    for title in plan.omitted.values():
        print(f"发送方未包含“{title}”的记录（导出人没有导出它的权限）", file=out)
    for form in plan.forms:
        if form.skipped:
            print(f"表单“{form.title}”：{form.reason}", file=out)
            continue
        if form.target is None:
            print(f"表单“{form.title}”：无法对应：{form.reason}", file=out)
            continue
        print(f"表单“{form.title}” → 本系统“{form.target.title}”", file=out)
        for place in form.fields:
            if place.target is None:
                print(f"  未导入的字段：{place.label}（{place.key}）：{place.reason}", file=out)
            elif place.target != place.key:
                print(f"  {place.label}（{place.key}）→ {form.target.fields[place.target].label}（{place.target}）", file=out)
    print(f"记录：新增 {plan.count('create')} 条，与本系统相同 {plan.count('same')} 条，"
          f"已存在但有差异 {plan.count('update')} 条。", file=out)
    for item in plan.records:
        if item.action == "update":
            print(f"  {item.title}：已存在，有差异{'（将覆盖）' if plan.overwrite else '（不覆盖，除非加 --overwrite）'}：", file=out)
            for difference in item.differences:
                print(f"      {difference.label}：“{difference.old}” → “{difference.new}”", file=out)
    print(f"预览摘要：{plan.digest}", file=out)


def add_parsers(sub: Any) -> None:
    export = sub.add_parser("export-archive", help="把学生等记录连同其从属记录、历史和附件导出为签名的档案包（升学衔接、跨系统转学）")
    export.add_argument("form", help="表单，如 student")
    export.add_argument("--user", required=True, help="以哪个用户的身份和权限导出")
    export.add_argument("--id", type=int, action="append", default=[], help="记录编号（可重复）")
    export.add_argument("--unit", help="导出这个单位（如一个班）中的全部记录：完整路径")
    export.add_argument("--output", "-o", required=True, help="档案包文件（.zip）")
    export.set_defaults(func=lambda args: _run(command_export, args, need_selection=True))
    imported = sub.add_parser("import-archive", help="导入其他系统导出的档案包：先预览（字段对应、差异），加 --apply 才导入")
    imported.add_argument("file", help="档案包文件（.zip）")
    imported.add_argument("--user", required=True, help="以哪个用户的身份和权限导入")
    imported.add_argument("--unit", help="新记录放在哪个单位（完整路径，如班级）")
    imported.add_argument("--key", action="append", default=[],
                          help="发送方的签名公钥（PEM，可重复；另外信任 var/keys/trusted/ 中的公钥）")
    imported.add_argument("--map", help="字段映射文件（YAML：forms: {发送方表单: 本系统表单}，fields: {发送方表单: {发送方字段: 本系统字段}}）")
    imported.add_argument("--apply", action="store_true", help="预览无误后导入（全部导入或全部不导入）")
    imported.add_argument("--overwrite", action="store_true", help="用档案包的内容覆盖本系统中已有但有差异的记录")
    imported.set_defaults(func=lambda args: _run(command_import, args))


def _run(command: Any, args: argparse.Namespace, need_selection: bool = False) -> int:
    if need_selection and not args.id and not args.unit:
        print("请用 --id 指定记录，或用 --unit 指定单位", file=sys.stderr)
        return 2
    return command(args, sys.stdout, sys.stderr)
