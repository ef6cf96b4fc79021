"""Server-side sessions in the database, so several app processes share them."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session as DbSession

from engine.storage.models import Session, User, utcnow
from engine.storage.statements import Read

LIFETIME = dt.timedelta(hours=8)


def token_digest(token: str) -> str:
    """The session table stores only this digest of the cookie token."""
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(s: DbSession, user_id: int | None) -> tuple[str, Session]:
    """A new session; the cookie gets the token, the table only its digest."""
    token = secrets.token_urlsafe(32)
    row = Session(id=token_digest(token), user_id=user_id, csrf_token=secrets.token_urlsafe(32),
                  expires_at=utcnow() + LIFETIME)
    s.add(row)
    s.flush()
    return token, row


def find_session(s: DbSession, token: str | None) -> Session | None:
    if not token:
        return None
    row = s.get(Session, token_digest(token))
    if row is None or row.expires_at < utcnow():
        return None
    return row


SESSION_USER = (
    Session.csrf_token, Session.user_id, Session.expires_at,
    User.id, User.username, User.display_name, User.must_change_password, User.is_active,
    User.auth_version, User.created_at,
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


def close_session(s: DbSession, token: str | None) -> None:
    if token:
        s.execute(delete(Session).where(Session.id == token_digest(token)))


def purge_expired(s: DbSession) -> None:
    s.execute(delete(Session).where(Session.expires_at < utcnow()))


def user_sessions(s: DbSession, user_id: int) -> list[Session]:
    return list(s.scalars(select(Session).where(Session.user_id == user_id)))
