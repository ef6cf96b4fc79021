"""忘记密码: one-time reset codes — sent by e-mail (a link) or SMS where a sender is configured, or issued by an
administrator or a role with `issue_reset_codes` to a user in its scope. No answer tells whether an account exists."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session as DbSession

from engine import throttle
from engine.accounts import AccountInvalid, AccountService, UserNotFound
from engine.org import build_principal
from engine.permissions import Principal
from engine.refusals import NotPermitted, Refused
from engine.sessions import close_user_sessions
from engine.spec import Definitions
from engine.storage.models import OrgUnit, ResetCode, User, UserUnit, holds_id, utcnow

log = logging.getLogger("dangan")
SENT_LIFETIME = dt.timedelta(minutes=30)
MAX_ATTEMPTS = 5  # wrong tries on one code before it is void
_ISSUED_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # read aloud or off paper: no 0/O, 1/I/L
# Requests for a code per typed name: a few an hour, so that nobody fills a mailbox or a phone.
REQUESTS = throttle.Rule(free=3, first=600, longest=3600)


CONTACT = {"email": "email", "sms": "phone"}  # the users column each channel sends to


class ResetCodeInvalid(Refused):
    code, kind = "reset_code_invalid", "invalid"


class Sender(Protocol):
    """Sends a message to one address or number. `channel`: "email" or "sms" (CONTACT: the user column it reads)."""

    channel: str

    def send(self, to: str, subject: str, text: str) -> None: ...


@dataclass(frozen=True)
class SmtpSender:
    host: str
    port: int = 25
    sender: str = "dangan@localhost"
    user: str = ""
    password: str = ""
    starttls: bool = False
    channel: str = "email"

    def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(text)
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(message)


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().upper().replace("-", "").replace(" ", "").encode()).hexdigest()


def _sent_code(channel: str) -> str:
    # A link carries a long code; an SMS one short enough to type (MAX_ATTEMPTS and the lifetime bound guessing).
    return secrets.token_urlsafe(24) if channel == "email" else f"{secrets.randbelow(10**6):06d}"


def _issued_code() -> str:
    raw = "".join(secrets.choice(_ISSUED_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


class RecoveryService:
    def __init__(self, accounts: AccountService, senders: tuple[Sender, ...] = (), base_url: str = "",
                 issued_lifetime: dt.timedelta = dt.timedelta(hours=24)) -> None:
        self.accounts, self.db = accounts, accounts.db
        self.senders, self.base_url, self.issued_lifetime = senders, base_url.rstrip("/"), issued_lifetime

    @property
    def self_service(self) -> bool:
        """Whether a user can get a code sent without asking anyone."""
        return bool(self.senders)

    def request(self, username: str, address: str) -> None:
        """Sends a code to the account's e-mail address or phone, if it has one and a sender is configured; does
        nothing otherwise. The caller answers the same whatever happened, and runs this off the request (sending mail
        takes as long as the mail server likes, which would tell a real account from an invented one)."""
        now = utcnow()
        key = "reset:" + throttle.account_key(username)
        with self.db.write() as s:
            if throttle.wait_seconds(s, [key], now):
                return
            throttle.record_failure(s, key, REQUESTS, now)  # every request counts, found or not
            user = s.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))
            targets = [(sender, getattr(user, CONTACT[sender.channel])) for sender in self.senders
                       if user is not None and user.is_active and getattr(user, CONTACT[sender.channel], "")]
            codes = [(sender, to, _sent_code(sender.channel)) for sender, to in targets]
            for sender, _to, code in codes:
                s.add(ResetCode(user_id=user.id, code_hash=_digest(code), channel=sender.channel,  # type: ignore[union-attr]
                                expires_at=now + SENT_LIFETIME))
            s.commit()
        for sender, to, code in codes:
            try:
                sender.send(to, *self._message(sender.channel, user.username, code))  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 — a mail server down must not become an answer that differs
                log.exception("重置密码的%s未能发出", "邮件" if sender.channel == "email" else "短信")

    def _message(self, channel: str, username: str, code: str) -> tuple[str, str]:
        minutes = int(SENT_LIFETIME.total_seconds() // 60)
        if channel == "email":
            link = f"{self.base_url}/reset?user={username}&code={code}"
            return ("Dangan 学生电子档案：重置密码", f"您好，{username}：\n\n有人（可能是您自己）申请重置 Dangan 的登录密码。"
                    f"请在 {minutes} 分钟内打开下面的链接设置新密码：\n\n{link}\n\n如果不是您本人申请，请忽略本邮件，您的密码不会改变。")
        return "Dangan 重置密码", f"【Dangan】您的重置密码验证码是 {code}，{minutes} 分钟内有效。如非本人操作请忽略。"

    def issue(self, principal: Principal, definitions: Definitions, user_id: int) -> tuple[User, str]:
        """A code for a user who asks in person (no sender configured, or no e-mail on file): an administrator for
        anyone, a role with `issue_reset_codes` for users in its scope who hold no such power themselves."""
        with self.db.write() as s:
            user = s.get(User, user_id) if holds_id(User, user_id) else None
            if user is None:
                raise UserNotFound()
            if not principal.is_admin:
                self._check_issuer(s, principal, definitions, user)
            code = _issued_code()
            s.add(ResetCode(user_id=user.id, code_hash=_digest(code), channel="issued", issued_by=principal.user_id,
                            expires_at=utcnow() + self.issued_lifetime))
            s.commit()
        return user, code

    def _check_issuer(self, s: DbSession, principal: Principal, definitions: Definitions, user: User) -> None:
        issuers = [role for role in principal.roles if role.issue_reset_codes]
        if not issuers:
            raise NotPermitted()
        target = build_principal(s, user, definitions)
        # Nobody hands out a way into an account with more power than their own.
        if target.is_admin or any(role.issue_reset_codes for role in target.roles):
            raise NotPermitted()
        reach = set()
        for role in issuers:
            reach |= set(principal.unit_paths) if role.scope == "subtree" else set(principal.anchors.get(role.scope, ()))
        paths = s.scalars(select(OrgUnit.path).join(UserUnit, UserUnit.unit_id == OrgUnit.id).where(UserUnit.user_id == user.id))
        if not any(role.scope == "all" for role in issuers) and not any(
                any(path.startswith(p) for p in reach) for path in paths):
            raise NotPermitted()

    def issuable_users(self, principal: Principal, definitions: Definitions, username: str) -> User | None:
        """The user named `username` if this principal may issue them a code, else None (the same for absent)."""
        with self.db.read() as s:
            user = s.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))
            if user is None:
                return None
            try:
                if not principal.is_admin:
                    self._check_issuer(s, principal, definitions, user)
            except NotPermitted:
                return None
            return user

    def reset(self, username: str, code: str, new: str, confirm: str, address: str) -> None:
        """Sets a new password with a live code: every session of the user ends and every other code is void.
        ResetCodeInvalid (the same for an unknown name) or AccountInvalid for the password. Blocking (Argon2)."""
        now = utcnow()
        key = "resetcode:" + throttle.account_key(username)
        with self.db.read() as s:
            if throttle.wait_seconds(s, [key, throttle.address_key(address)], now):
                raise ResetCodeInvalid()
        with self.db.write() as s:
            user = s.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))
            live = [] if user is None or not user.is_active else list(s.scalars(select(ResetCode).where(
                ResetCode.user_id == user.id, ResetCode.used_at.is_(None), ResetCode.expires_at > now,
                ResetCode.attempts < MAX_ATTEMPTS).with_for_update()))
            match = next((c for c in live if secrets.compare_digest(c.code_hash, _digest(code))), None)
            if match is None:
                for c in live:
                    c.attempts += 1
                throttle.record_failure(s, key, throttle.ACCOUNT, now)
                throttle.record_failure(s, throttle.address_key(address), throttle.ADDRESS, now)
                s.commit()
                raise ResetCodeInvalid()
            s.commit()
        if new != confirm:
            raise AccountInvalid(["两次输入的新密码不一致"])
        self.accounts.set_new_password(user, new)  # type: ignore[arg-type]
        with self.db.write() as s:
            s.execute(update(ResetCode).where(ResetCode.user_id == user.id, ResetCode.used_at.is_(None))  # type: ignore[union-attr]
                      .values(used_at=now))
            close_user_sessions(s, user.id)  # type: ignore[union-attr]
            throttle.clear(s, throttle.account_key(username))
            throttle.clear(s, key)
            s.commit()
