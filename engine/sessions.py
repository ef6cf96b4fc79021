"""Server-side sessions in the database, so several app processes share them; they end after a while idle, after
a fixed lifetime, at sign-out, and when the password changes."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session as DbSession

from engine.storage.models import Session, User, utcnow
from engine.storage.statements import Read


@dataclass(frozen=True)
class SessionPolicy:
    """`idle`: a session unused this long has ended (web/settings.py: idle_timeout_minutes); `lifetime`: no session
    lasts longer, however busy. `touch_after`: how stale the recorded activity may get before a request refreshes it
    — one write per session a minute, not one per request."""

    lifetime: dt.timedelta = dt.timedelta(hours=8)
    idle: dt.timedelta = dt.timedelta(minutes=30)
    touch_after: dt.timedelta = dt.timedelta(minutes=1)

    def expiry(self, created_at: dt.datetime, now: dt.datetime) -> dt.datetime:
        return min(created_at + self.lifetime, now + self.idle)


PENDING_LIFETIME = dt.timedelta(minutes=5)  # to type the code from the phone


def token_digest(token: str) -> str:
    """The session table stores only this digest of the cookie token."""
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(s: DbSession, user_id: int, policy: SessionPolicy = SessionPolicy(),
                 pending: str | None = None) -> tuple[str, Session]:
    """A new session for a signed-in user; the cookie gets the token, the table only its digest. `pending="2fa"`: the
    password was right and the second factor is still to come — such a session opens no page but that step's."""
    token, now = secrets.token_urlsafe(32), utcnow()
    row = Session(id=token_digest(token), user_id=user_id, csrf_token=secrets.token_urlsafe(32), created_at=now,
                  expires_at=policy.expiry(now, now) if pending is None else now + PENDING_LIFETIME, pending=pending)
    s.add(row)
    s.flush()
    return token, row


SESSION_USER = (
    Session.csrf_token, Session.user_id, Session.expires_at, Session.created_at.label("session_created_at"),
    Session.pending, User.id, User.username, User.display_name, User.must_change_password, User.is_active,
    User.auth_version, User.created_at, User.password_changed_at, User.totp_secret.is_not(None).label("has_totp"),
)


# Compiled once and run on the driver's cursor (engine/storage/statements.py): every request runs it.
_SESSION_USER_QUERY = Read(
    select(*SESSION_USER).outerjoin(User, User.id == Session.user_id).where(Session.id == bindparam("digest")))


def find_session_user(connection: Connection, token: str | None) -> Any | None:
    """The live session and its user's columns in one Core query: the per-request hot path, so no
    ORM identity-map work. The row carries `id`, `username`, ... and serves where a User is read."""
    if not token:
        return None
    row = _SESSION_USER_QUERY.first(connection, {"digest": token_digest(token)})
    if row is None or row.expires_at < utcnow():
        return None
    return row


def needs_touch(row: Any, policy: SessionPolicy, now: dt.datetime) -> bool:
    """Whether this request should push the session's idle expiry on (see SessionPolicy.touch_after)."""
    return row.pending is None and row.expires_at < policy.expiry(row.session_created_at, now) - policy.touch_after


def touch(s: DbSession, token: str, policy: SessionPolicy) -> None:
    """Activity: the session now ends `idle` from now (never past its lifetime)."""
    now = utcnow()
    row = s.get(Session, token_digest(token))
    if row is not None and row.expires_at >= now:
        row.expires_at = max(row.expires_at, policy.expiry(row.created_at, now))


def close_session(s: DbSession, token: str | None) -> None:
    if token:
        s.execute(delete(Session).where(Session.id == token_digest(token)))


def close_user_sessions(s: DbSession, user_id: int, keep: str | None = None) -> int:
    """End every session of a user (a password change or reset, a deactivation), but the one with token `keep`."""
    query = delete(Session).where(Session.user_id == user_id)
    if keep:
        query = query.where(Session.id != token_digest(keep))
    return s.execute(query).rowcount or 0


def purge_expired(s: DbSession) -> int:
    return s.execute(delete(Session).where(Session.expires_at < utcnow())).rowcount or 0


def user_sessions(s: DbSession, user_id: int) -> list[Session]:
    return list(s.scalars(select(Session).where(Session.user_id == user_id)))
