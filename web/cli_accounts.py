"""`dangan link-accounts`: accounts linked to records, made in bulk (engine/linked_accounts.py), and the printable
sheet of their initial passwords."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import select

from engine.linked_accounts import LinkedAccounts, sheet
from engine.org import build_principal
from engine.records import RecordService
from engine.refusals import Refused
from engine.storage.db import Database
from engine.storage.models import User
from web.commands import definitions_for_command, prepare_database
from web.settings import Settings


def cmd_link_accounts(args: argparse.Namespace) -> int:
    settings = Settings()
    definitions = definitions_for_command(settings)
    if definitions is None:
        return 1
    form = definitions.forms.get(args.form)
    if form is None:
        print(f"没有表单“{args.form}”", file=sys.stderr)
        return 1
    output = Path(args.output)
    if output.exists():
        print(f"文件 {output} 已存在；请换一个文件名（不覆盖已打印的密码单）", file=sys.stderr)
        return 1
    db = Database(settings.database_url, timeouts=settings.database_timeouts())
    try:
        prepare_database(db, definitions)
        with db.read() as s:
            user = s.scalar(select(User).where(User.username == args.user, User.is_active.is_(True)))
            if user is None:
                print(f"没有用户“{args.user}”（或已停用）", file=sys.stderr)
                return 1
            principal = build_principal(s, user, definitions)
        service = LinkedAccounts(db, RecordService(db, lambda: definitions.forms))
        try:
            accounts = service.create(principal, definitions, form, args.role, args.username_field, args.name_field or "")
        except Refused as exc:
            print(exc.message, file=sys.stderr)
            return 1
    finally:
        db.dispose()
    output.write_bytes(sheet(accounts, f"{definitions.roles[args.role].name}账号（{form.title}）"))
    created = sum(1 for a in accounts if a.password)
    print(f"已处理 {len(accounts)} 条{form.title}：新建账号 {created} 个，其余见说明列；账号和初始密码已写入 {output}，"
          "请打印后分发，首次登录须修改密码")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    link = sub.add_parser("link-accounts", help="按记录批量创建关联账号（如家长账号），并生成初始密码单")
    link.add_argument("form", help="表单，如 student")
    link.add_argument("--role", required=True, help="账号的角色（须为 scope: linked 的角色，如 parent）")
    link.add_argument("--username-field", required=True, help="作为账号的字段，如 guardian_phone")
    link.add_argument("--name-field", help="作为账号姓名的字段，如 guardian_name")
    link.add_argument("--user", required=True, help="以哪个用户的身份和权限（须能修改这些记录）")
    link.add_argument("--output", "-o", required=True, help="写入账号和初始密码的 .xlsx 文件（用于打印）")
    link.set_defaults(func=cmd_link_accounts)
