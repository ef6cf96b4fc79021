"""Accounts linked to records, made in bulk from the records themselves: a school creates its parents' accounts from
the students' guardian data (which field holds the account name and which the person's name is the definitions'
and the caller's choice; nothing here knows about students).

Each record of the form in the caller's update scope with a value in `username_field` gets an account of that name
with a role whose scope is `linked` (engine/permissions.py), linked to the record (`user_records`); a name already
held by such an account gets the new record linked too (a parent of two children); a name held by a staff account
is refused for that record. New accounts get a generated initial password that must be changed at the first
sign-in; the caller prints the sheet (`sheet()`) and hands each family its line.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from sqlalchemy import select

from engine.accounts import store_user
from engine.passwords import generate_password
from engine.permissions import Principal, can, policy
from engine.records import ListQuery
from engine.records.service import RecordService
from engine.refusals import NotPermitted, Refused
from engine.spec import Definitions, FormSpec
from engine.storage.db import Database
from engine.storage.models import User, UserRecord, UserRole, UserUnit

PAGE = 500


class NotALinkedRole(Refused):
    code, kind = "not_linked_role", "invalid"


@dataclass
class LinkedAccount:
    record_title: str
    username: str
    display_name: str
    password: str  # the initial password of a new account; "" for an account that existed
    note: str


class LinkedAccounts:
    def __init__(self, db: Database, records: RecordService) -> None:
        self.db, self.records = db, records

    def create(self, principal: Principal, definitions: Definitions, form: FormSpec, role_key: str,
               username_field: str, name_field: str = "") -> list[LinkedAccount]:
        role = definitions.roles.get(role_key)
        if role is None or role.scope != "linked":
            raise NotALinkedRole(role=role_key)
        found = policy(principal, form)
        if not can(principal, "update", form) or found is None or username_field not in form.fields \
                or username_field in found.hidden or (name_field and name_field in found.hidden):
            raise NotPermitted()
        made: list[LinkedAccount] = []
        page = 1
        while True:
            result = self.records.list(form, principal, ListQuery(per_page=PAGE, page=page))
            with self.db.write() as s:
                for record in result.records:
                    made.append(self._link(s, form, role_key, record, username_field, name_field))
                s.commit()
            if not result.has_next:
                return made
            page += 1

    def _link(self, s: Any, form: FormSpec, role_key: str, record: Any, username_field: str, name_field: str) -> LinkedAccount:
        title = str(record.values.get(form.title_field) or f"#{record.id}")
        username = str(record.values.get(username_field) or "").strip()
        display = str(record.values.get(name_field) or "").strip() if name_field else ""
        if not username:
            return LinkedAccount(title, "", display, "", f"未填写{form.fields[username_field].label}，未创建账号")
        user = s.scalar(select(User).where(User.username == username))
        password = ""
        if user is None:
            password = generate_password()
            user = store_user(s, username, password, [role_key], [record.unit_id], display_name=display or username, must_change=True)
            note = "新账号，首次登录须修改密码"
        else:
            roles = set(s.scalars(select(UserRole.role_key).where(UserRole.user_id == user.id)))
            if roles != {role_key}:
                return LinkedAccount(title, username, display, "", "该用户名已被其他账号使用，未关联")
            if s.get(UserUnit, (user.id, record.unit_id)) is None:
                s.add(UserUnit(user_id=user.id, unit_id=record.unit_id))
            note = "已有账号，已关联"
        if s.get(UserRecord, (user.id, form.key, record.id)) is None:
            s.add(UserRecord(user_id=user.id, form_key=form.key, record_id=record.id))
        else:
            note = "已关联"
        s.flush()
        return LinkedAccount(title, username, user.display_name, password, note)


def sheet(accounts: list[LinkedAccount], title: str) -> bytes:
    """A printable workbook: one line per record with the account and its initial password."""
    book = Workbook()
    page = book.active
    page.title = "账号"
    page.append([title])
    page["A1"].font = Font(bold=True, size=14)
    page.append(["记录", "账号", "姓名", "初始密码", "说明"])
    for cell in page[2]:
        cell.font = Font(bold=True)
    for account in accounts:
        page.append([account.record_title, account.username, account.display_name, account.password, account.note])
    for column, width in zip("ABCDE", (16, 16, 12, 22, 28)):
        page.column_dimensions[column].width = width
    for row in page.iter_rows(min_row=3):
        for cell in row:
            cell.alignment = Alignment(vertical="center")
    page.print_title_rows = "2:2"
    page.page_setup.orientation = "portrait"
    page.page_setup.fitToWidth = 1
    page.sheet_properties.pageSetUpPr.fitToPage = True
    page.page_setup.fitToHeight = 0
    data = io.BytesIO()
    book.save(data)
    return data.getvalue()
