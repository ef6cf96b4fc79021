"""Accounts: Argon2 password hashes, the strength policy, lockout after repeated failures."""
from __future__ import annotations

import datetime as dt
import re
import secrets
import string
from dataclasses import dataclass
from typing import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session as DbSession

from engine.storage.models import User, UserRole, UserUnit, utcnow

MAX_FAILURES = 5
LOCKOUT = dt.timedelta(minutes=15)
_hasher = PasswordHasher()
# Verifying against this keeps the time of a login for an unknown user like that of a known one.
_DUMMY_HASH = _hasher.hash("dangan-timing-equaliser")


class AccountError(ValueError):
    """A refusal to show the user as it is (Chinese)."""


def password_problems(password: str, username: str = "") -> list[str]:
    problems = []
    if len(password) < 8:
        problems.append("密码至少8位")
    if not re.search(r"[A-Za-z]", password):
        problems.append("密码须包含字母")
    if not re.search(r"[0-9]", password):
        problems.append("密码须包含数字")
    if not re.search(r"[^A-Za-z0-9]", password):
        problems.append("密码须包含符号（如 !@#%）")
    if username and username.lower() in password.lower():
        problems.append("密码不能包含用户名")
    return problems


def generate_password() -> str:
    """A random initial password that satisfies the policy."""
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"{core}{secrets.choice('23456789')}{secrets.choice('!@#%*')}{secrets.choice('abcdefghjk')}"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@dataclass
class LoginOutcome:
    user: User | None
    error: str = ""


def authenticate(s: DbSession, username: str, password: str, now: dt.datetime | None = None) -> LoginOutcome:
    now = now or utcnow()
    user = s.scalar(select(User).where(func.lower(User.username) == username.strip().lower()).with_for_update())
    if user is None or not user.is_active:
        _verify(_DUMMY_HASH, password)
        return LoginOutcome(None, "用户名或密码错误")
    if user.locked_until and user.locked_until > now:
        return LoginOutcome(None, f"登录失败次数过多，账号已锁定，请于 {_local(user.locked_until)} 后再试，或联系系统管理员解锁")
    if not _verify(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILURES:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
            return LoginOutcome(None, f"连续 {MAX_FAILURES} 次密码错误，账号已锁定 {int(LOCKOUT.total_seconds() // 60)} 分钟，请于 {_local(user.locked_until)} 后再试")
        left = MAX_FAILURES - user.failed_logins
        return LoginOutcome(None, f"用户名或密码错误，再错 {left} 次账号将被锁定")
    user.failed_logins = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return LoginOutcome(user)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _local(moment: dt.datetime) -> str:
    # Stored in UTC; schools read Beijing time.
    return (moment + dt.timedelta(hours=8)).strftime("%H:%M")


def change_password(s: DbSession, user: User, current: str, new: str, confirm: str) -> list[str]:
    if not _verify(user.password_hash, current):
        return ["当前密码不正确"]
    if new != confirm:
        return ["两次输入的新密码不一致"]
    if new == current:
        return ["新密码不能与当前密码相同"]
    problems = password_problems(new, user.username)
    if problems:
        return problems
    user.password_hash = hash_password(new)
    user.must_change_password = False
    return []


def create_user(s: DbSession, username: str, password: str, roles: Iterable[str], unit_ids: Iterable[int],
                display_name: str = "", must_change: bool = True) -> User:
    username = username.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{2,40}", username):
        raise AccountError("用户名只能包含字母、数字、下划线、点和减号，长度2-40")
    if s.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        raise AccountError(f"用户名“{username}”已存在")
    problems = password_problems(password, username)
    if problems:
        raise AccountError("；".join(problems))
    user = User(username=username, display_name=display_name or username, password_hash=hash_password(password),
                must_change_password=must_change)
    s.add(user)
    s.flush()
    set_memberships(s, user, roles, unit_ids)
    return user


def set_memberships(s: DbSession, user: User, roles: Iterable[str], unit_ids: Iterable[int]) -> None:
    user.auth_version = (user.auth_version or 0) + 1
    s.execute(delete(UserRole).where(UserRole.user_id == user.id))
    s.execute(delete(UserUnit).where(UserUnit.user_id == user.id))
    for role in sorted(set(roles)):
        s.add(UserRole(user_id=user.id, role_key=role))
    for unit_id in sorted(set(unit_ids)):
        s.add(UserUnit(user_id=user.id, unit_id=unit_id))
    s.flush()


def reset_password(s: DbSession, user: User) -> str:
    password = generate_password()
    user.password_hash = hash_password(password)
    user.must_change_password = True
    user.failed_logins = 0
    user.locked_until = None
    return password
