"""Two-factor sign-in with TOTP (RFC 6238, pyotp): enrolling an authenticator app, the second step of signing in,
recovery codes for a lost phone. Optional per user; a role whose YAML says `require_2fa: true` makes it required."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Iterable

import pyotp
from sqlalchemy import delete, select
from sqlalchemy.orm import Session as DbSession

from engine import throttle
from engine.accounts import AccountInvalid, AccountPolicy, SignedIn, SignInDelayed, UserNotFound
from engine.permissions import Principal
from engine.refusals import NotPermitted, Refused
from engine.sessions import close_session, open_session, token_digest
from engine.spec import RoleSpec
from engine.storage.db import Database
from engine.storage.models import RecoveryCode, Session, User, holds_id, utcnow

ISSUER = "Dangan 学生电子档案"
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper


class SecondFactorFailed(Refused):
    code, kind = "second_factor_failed", "invalid"


@dataclass(frozen=True)
class Enrollment:
    secret: str  # base32, to type into the app by hand
    uri: str  # otpauth://, what a QR code would carry


def required(roles: Iterable[RoleSpec]) -> bool:
    return any(role.require_2fa for role in roles)


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").replace(" ", "").encode()).hexdigest()


def _recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _matching_step(secret: str, code: str, after: int, now: dt.datetime) -> int | None:
    """The time step (this one, or one either side for a phone's clock) whose code is `code`, if later than `after`:
    a code that signed in once does not sign in again."""
    code = code.strip().replace(" ", "")
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now.replace(tzinfo=dt.timezone.utc))
    for step in (current - 1, current, current + 1):
        if step > after and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


class TwoFactorService:
    def __init__(self, db: Database, policy: AccountPolicy = AccountPolicy()) -> None:
        self.db, self.policy = db, policy

    def _user(self, s: DbSession, user_id: int) -> User:
        user = s.get(User, user_id) if holds_id(User, user_id) else None
        if user is None or not user.is_active:
            raise UserNotFound()
        return user

    def enabled(self, principal: Principal) -> bool:
        with self.db.read() as s:
            return self._user(s, principal.user_id).totp_secret is not None

    def begin(self, principal: Principal) -> Enrollment:
        """A new secret for the signed-in user's app, kept pending until a code from the app confirms it."""
        secret = pyotp.random_base32()
        with self.db.write() as s:
            user = self._user(s, principal.user_id)
            user.totp_pending = secret
            s.commit()
        return Enrollment(secret, pyotp.TOTP(secret).provisioning_uri(name=principal.username, issuer_name=ISSUER))

    def pending(self, principal: Principal) -> Enrollment | None:
        with self.db.read() as s:
            secret = self._user(s, principal.user_id).totp_pending
        if secret is None:
            return None
        return Enrollment(secret, pyotp.TOTP(secret).provisioning_uri(name=principal.username, issuer_name=ISSUER))

    def confirm(self, principal: Principal, code: str) -> list[str]:
        """Turns two-factor sign-in on once `code` comes from the app; returns the recovery codes, shown once."""
        now = utcnow()
        with self.db.write() as s:
            user = self._user(s, principal.user_id)
            step = _matching_step(user.totp_pending, code, 0, now) if user.totp_pending else None
            if step is None:
                raise AccountInvalid(["验证码不正确：请输入验证器 App 中当前显示的 6 位数字（手机时间须准确）"])
            user.totp_secret, user.totp_pending, user.totp_last_step = user.totp_pending, None, step
            codes = self._new_recovery_codes(s, user.id)
            s.commit()
        return codes

    def _new_recovery_codes(self, s: DbSession, user_id: int) -> list[str]:
        s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
        s.add_all(RecoveryCode(user_id=user_id, code_hash=_digest(code)) for code in codes)
        return codes

    def disable(self, principal: Principal, user_id: int) -> None:
        """Turns it off: the user themselves, or an administrator for a user whose phone is lost. A user whose role
        requires it enrolls again at their next sign-in."""
        if principal.user_id != user_id and not principal.is_admin:
            raise NotPermitted()
        with self.db.write() as s:
            user = s.get(User, user_id) if holds_id(User, user_id) else None
            if user is None:
                raise UserNotFound()
            user.totp_secret = user.totp_pending = None
            s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
            s.commit()

    def remaining_recovery_codes(self, principal: Principal) -> int:
        with self.db.read() as s:
            return len(s.scalars(select(RecoveryCode.id).where(RecoveryCode.user_id == principal.user_id,
                                                              RecoveryCode.used_at.is_(None))).all())

    def complete_sign_in(self, token: str, code: str, address: str) -> SignedIn:
        """The second step: the session that passed the password becomes a full one, under a new id. `code` is the
        app's current code or an unused recovery code. Wrong codes count like wrong passwords (engine/throttle.py).
        Blocking: call it from a thread."""
        now = utcnow()
        with self.db.read() as s:
            session = s.get(Session, token_digest(token))
            user = s.get(User, session.user_id) if session is not None and session.user_id is not None else None
        if session is None or session.pending != "2fa" or session.expires_at < now or user is None or not user.is_active \
                or user.totp_secret is None:
            raise SecondFactorFailed()
        keys = [throttle.address_key(address), "second:" + throttle.account_key(user.username)]
        with self.db.read() as s:
            wait = throttle.wait_seconds(s, keys, now)
        if wait:
            raise SignInDelayed(seconds=wait)
        with self.db.write() as s:
            stored = s.get(User, user.id)
            step = _matching_step(stored.totp_secret, code, stored.totp_last_step, now) if stored else None
            recovery = None if step is not None else s.scalar(select(RecoveryCode).where(
                RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _digest(code), RecoveryCode.used_at.is_(None)))
            if stored is None or (step is None and recovery is None):
                throttle.record_failure(s, keys[0], throttle.ADDRESS, now)
                throttle.record_failure(s, keys[1], throttle.ACCOUNT, now)
                s.commit()
                raise SecondFactorFailed()
            if step is not None:
                stored.totp_last_step = step
            else:
                recovery.used_at = now  # type: ignore[union-attr]
            throttle.clear(s, keys[1])
            close_session(s, token)
            new_token, row = open_session(s, stored.id, self.policy.sessions)
            must_change = stored.must_change_password or self.policy.password_expired(stored.password_changed_at, now)
            s.commit()
        return SignedIn(new_token, row.csrf_token, stored.id, must_change)
