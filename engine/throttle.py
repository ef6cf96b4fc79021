"""Failed sign-ins slow the next try down, by client address and by typed user name, with delays that grow with the
failures and forget them after a quiet hour: no lock that an attacker who knows a user name can keep shut."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session as DbSession

from engine.storage.models import LoginThrottle


@dataclass(frozen=True)
class Rule:
    """After `free` failures, each further one makes the next try wait `first` seconds, doubled per failure up to
    `longest`; failures older than `forget` no longer count."""

    free: int
    first: float
    longest: float
    forget: dt.timedelta = dt.timedelta(hours=1)

    def delay(self, failures: int) -> dt.timedelta:
        if failures <= self.free:
            return dt.timedelta(0)
        return dt.timedelta(seconds=min(self.longest, self.first * 2 ** (failures - self.free - 1)))


# A user name: 3 free tries, then 2 s, 4 s, … at most a minute; about 60 guesses an hour at most, while its owner
# waits a minute at worst. A school's address (often one NAT address for all its staff): 20 free failures an hour.
ACCOUNT = Rule(free=3, first=2, longest=60)
ADDRESS = Rule(free=20, first=2, longest=300)


def account_key(username: str) -> str:
    # A digest: a password typed into the name box by mistake is not kept in clear.
    return "account:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()[:40]


def address_key(address: str) -> str:
    return "address:" + address[:60]


def wait_seconds(s: DbSession, keys: list[str], now: dt.datetime) -> int:
    """How long the next try must wait for the most delayed of `keys`; 0 if it may go ahead."""
    until = s.scalars(select(LoginThrottle.blocked_until).where(LoginThrottle.key.in_(keys),
                                                                LoginThrottle.blocked_until > now)).all()
    return max((int((moment - now).total_seconds()) + 1 for moment in until), default=0)


def failures(s: DbSession, key: str, now: dt.datetime, rule: Rule) -> int:
    row = s.get(LoginThrottle, key)
    return row.failures if row is not None and row.last_failure_at > now - rule.forget else 0


def record_failure(s: DbSession, key: str, rule: Rule, now: dt.datetime) -> int:
    """Count one failure for `key` (in the caller's write transaction); returns the failures now counted."""
    insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    s.execute(insert(LoginThrottle).values(key=key, failures=0, last_failure_at=now).on_conflict_do_nothing())
    row = s.scalars(select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()).one()
    if row.last_failure_at <= now - rule.forget:
        row.failures = 0
    row.failures += 1
    row.last_failure_at = now
    wait = rule.delay(row.failures)
    row.blocked_until = now + wait if wait else None
    return row.failures


def clear(s: DbSession, key: str) -> bool:
    """Forget the failures of `key` (a successful sign-in, `dangan unlock-user`); True if there were any."""
    return bool(s.execute(delete(LoginThrottle).where(LoginThrottle.key == key)).rowcount)


def purge(s: DbSession, now: dt.datetime) -> None:
    """Rows nobody needs any more: forgotten failures whose delay is over."""
    oldest = now - max(ACCOUNT.forget, ADDRESS.forget)
    s.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < oldest,
                                          or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until < now)))


def delayed_accounts(s: DbSession, keys: list[str], now: dt.datetime) -> set[str]:
    """Which of these account keys are waiting out a delay now (the admin's user list shows them)."""
    return set(s.scalars(select(LoginThrottle.key).where(LoginThrottle.key.in_(keys), LoginThrottle.blocked_until > now)))
