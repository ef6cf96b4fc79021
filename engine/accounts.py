"""Accounts: signing in (throttled, the same answer for every refusal), passwords (policy, history, age), sessions
ended when a password changes, and the administration of users. Every rule is here, whoever calls: a page,
`dangan create-user` or `unlock-user` (as the system principal), or the first start."""
from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session as DbSession

from engine import challenge, throttle
from engine.passwords import generate_password, hash_password, needs_rehash, password_problems, verify
from engine.org import all_units
from engine.permissions import Principal
from engine.refusals import NotFound, NotPermitted, Refused
from engine.sessions import SessionPolicy, close_session, close_user_sessions, open_session, purge_expired, touch
from engine.spec import Definitions
from engine.storage.db import Database
from engine.storage.models import OrgUnit, PasswordHistory, User, UserRole, UserUnit, holds_id, utcnow

USERNAME = re.compile(r"[A-Za-z0-9_.\-]{2,40}")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,150}\.[^@\s.]{2,30}")
PHONE = re.compile(r"1[3-9][0-9]{9}")
PURGE_EVERY = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class AccountPolicy:
    """What web/settings.py makes configurable."""

    sessions: SessionPolicy = SessionPolicy()
    password_max_age: dt.timedelta | None = None  # off unless configured
    password_history: int = 5  # a new password may not be any of the last N (the current one included)

    def password_expired(self, changed_at: dt.datetime | None, now: dt.datetime) -> bool:
        return self.password_max_age is not None and changed_at is not None and changed_at + self.password_max_age < now


# --- refusals ------------------------------------------------------------------------------------------------------
class SignInFailed(Refused):
    """Wrong name, wrong password, an inactive account: one answer for all, so that none tells an account exists."""

    code, kind = "signin_failed", "invalid"


class SignInDelayed(Refused):
    code, kind = "signin_delayed", "invalid"


class ChallengeRequired(Refused):
    """This address failed several times: the picture's sum must be answered first (engine/challenge.py)."""

    code, kind = "signin_challenge", "invalid"


class AccountInvalid(Refused):
    """What a form asked for breaks rules; `problems` are the sentences to show, all of them."""

    code, kind = "account_invalid", "invalid"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(problems="；".join(problems))


class UserNotFound(NotFound):
    code = "user_not_found"


# --- results ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedIn:
    """A new session: `token` for the cookie, `csrf` its form token."""

    token: str
    csrf: str
    user_id: int
    must_change_password: bool
    second_factor: bool = False  # the session waits for the authenticator's code (engine/twofactor.py)


@dataclass(frozen=True)
class UserRow:
    user: User
    roles: list[str]  # the roles' names
    units: list[str]  # the units' full names
    locked: bool  # waiting out a sign-in delay


@dataclass(frozen=True)
class UserChanges:
    """What the user form sets; `password` only when creating (empty: generate one)."""

    display_name: str
    roles: tuple[str, ...]
    unit_ids: tuple[int, ...]
    active: bool = True
    email: str = ""
    phone: str = ""


def system_principal(definitions: Definitions) -> Principal:
    """Who a server-side command acts as (`dangan create-user`, `unlock-user`, the first start): every admin role of
    the definitions, no account of its own (user id 0). Whoever can run the command can already read the database."""
    admin_roles = tuple(role for role in definitions.roles.values() if role.admin)
    if not admin_roles:
        raise RuntimeError("定义中没有 admin: true 的角色")
    return Principal(user_id=0, username="system", display_name="系统命令", roles=admin_roles)


# Failures from one address in an hour after which its sign-ins must answer a challenge too.
CHALLENGE_AFTER = 5


class AccountService:
    def __init__(self, db: Database, policy: AccountPolicy = AccountPolicy(), secret: bytes | None = None) -> None:
        """`secret`: signs the sign-in challenges; a server creates it before forking its workers, which share it."""
        self.db, self.policy = db, policy
        self.secret = secret or secrets.token_bytes(32)
        self._purged_at = dt.datetime.min

    def challenge_for(self, address: str) -> challenge.Challenge | None:
        """A challenge for the login form if this address has failed often lately, else None."""
        now = utcnow()
        with self.db.read() as s:
            failed = throttle.failures(s, throttle.address_key(address), now, throttle.ADDRESS)
        return challenge.make(self.secret, address, now) if failed >= CHALLENGE_AFTER else None

    # --- signing in ------------------------------------------------------------------------------------------------
    def sign_in(self, username: str, password: str, address: str, previous: str | None = None,
                challenge_token: str = "", challenge_answer: str = "") -> SignedIn:
        """A session for the account, or SignInFailed / SignInDelayed / ChallengeRequired; the session of token
        `previous` (one fixed before signing in) ends. With two-factor sign-in on, the session waits for the code
        (`SignedIn.second_factor`). Blocking (Argon2, the database): call it from a thread, never on the event loop."""
        now = utcnow()
        keys = [throttle.address_key(address), throttle.account_key(username)]
        with self.db.read() as s:
            wait = throttle.wait_seconds(s, keys, now)
            failed = throttle.failures(s, keys[0], now, throttle.ADDRESS)
            user = s.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))
        if wait:
            raise SignInDelayed(seconds=wait)
        if failed >= CHALLENGE_AFTER and not challenge.check(self.secret, challenge_token, challenge_answer, address, now):
            raise ChallengeRequired()
        # An unknown or inactive name is checked against a stand-in hash: the same Argon2 work, the same answer.
        live = user if user is not None and user.is_active else None
        if not verify(live.password_hash if live else None, password) or live is None:
            with self.db.write() as s:
                throttle.record_failure(s, keys[0], throttle.ADDRESS, now)
                throttle.record_failure(s, keys[1], throttle.ACCOUNT, now)
                s.commit()
            raise SignInFailed()
        with self.db.write() as s:
            throttle.clear(s, keys[1])
            stored = s.get(User, live.id)
            if stored is None or not stored.is_active:
                raise SignInFailed()
            if needs_rehash(stored.password_hash):
                stored.password_hash = hash_password(password)
            close_session(s, previous)
            second = stored.totp_secret is not None
            token, row = open_session(s, stored.id, self.policy.sessions, pending="2fa" if second else None)
            must_change = stored.must_change_password or self.policy.password_expired(stored.password_changed_at, now)
            self._purge(s, now)
            s.commit()
        return SignedIn(token, row.csrf_token, live.id, must_change, second_factor=second)

    def sign_out(self, token: str | None) -> None:
        with self.db.write() as s:
            close_session(s, token)
            s.commit()

    def touch_session(self, token: str) -> None:
        """Activity on a session: its idle expiry moves on (blocking; the session guard calls it in a thread)."""
        with self.db.write() as s:
            touch(s, token, self.policy.sessions)
            s.commit()

    def _purge(self, s: DbSession, now: dt.datetime) -> None:
        # Expired sessions and forgotten failures go at a sign-in, at most once a minute per process.
        if now - self._purged_at >= PURGE_EVERY:
            purge_expired(s)
            throttle.purge(s, now)
            self._purged_at = now

    # --- the user's own password ---------------------------------------------------------------------------------
    def change_password(self, principal: Principal, token: str, current: str, new: str, confirm: str) -> SignedIn:
        """The signed-in user's new password. Every other session of theirs ends, and this one continues under a new
        id (and CSRF token). AccountInvalid lists what is wrong. Blocking: call it from a thread."""
        with self.db.read() as s:
            user = s.get(User, principal.user_id) if holds_id(User, principal.user_id) else None
            history = self._history(s, user) if user is not None else []
        if user is None or not user.is_active:
            raise UserNotFound()
        if not verify(user.password_hash, current):
            raise AccountInvalid(["当前密码不正确"])
        if new != confirm:
            raise AccountInvalid(["两次输入的新密码不一致"])
        self._check_new(user, history, new)
        with self.db.write() as s:
            stored = s.get(User, user.id)
            if stored is None:
                raise UserNotFound()
            self._set_password(s, stored, new, must_change=False)
            close_user_sessions(s, stored.id)
            new_token, row = open_session(s, stored.id, self.policy.sessions)
            s.commit()
        return SignedIn(new_token, row.csrf_token, user.id, False)

    def set_new_password(self, user: User, new: str) -> None:
        """A password the user chose without the current one (a reset code's page): the policy and the history
        apply; the next sign-in needs no change. Blocking (Argon2)."""
        with self.db.read() as s:
            history = self._history(s, user)
        self._check_new(user, history, new)
        with self.db.write() as s:
            stored = s.get(User, user.id)
            if stored is None:
                raise UserNotFound()
            self._set_password(s, stored, new, must_change=False)
            s.commit()

    def _check_new(self, user: User, history: list[str], new: str) -> None:
        problems = password_problems(new, user.username, [user.display_name])
        if not problems and any(verify(old, new) for old in history):
            problems = [f"新密码不能与最近 {self.policy.password_history} 次使用过的密码相同"]
        if problems:
            raise AccountInvalid(problems)

    def _history(self, s: DbSession, user: User) -> list[str]:
        """The current hash and the earlier ones, newest first: as many as the policy remembers."""
        keep = max(self.policy.password_history, 1)
        older = s.scalars(select(PasswordHistory.password_hash).where(PasswordHistory.user_id == user.id)
                          .order_by(PasswordHistory.id.desc()).limit(keep - 1)).all()
        return [user.password_hash, *older]

    def _set_password(self, s: DbSession, user: User, password: str, must_change: bool) -> None:
        s.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash))
        s.flush()
        # Only the last few are kept: more would be hashes of old passwords kept for nothing.
        keep = select(PasswordHistory.id).where(PasswordHistory.user_id == user.id).order_by(
            PasswordHistory.id.desc()).limit(max(self.policy.password_history - 1, 0))
        s.execute(delete(PasswordHistory).where(PasswordHistory.user_id == user.id,
                                                PasswordHistory.id.not_in(keep.scalar_subquery())))
        user.password_hash = hash_password(password)
        user.password_changed_at = utcnow()
        user.must_change_password = must_change

    # --- administration ------------------------------------------------------------------------------------------
    def _admin(self, principal: Principal) -> None:
        if not principal.is_admin:
            raise NotPermitted()

    def _user(self, s: DbSession, user_id: int) -> User:
        user = s.get(User, user_id) if holds_id(User, user_id) else None
        if user is None:
            raise UserNotFound()
        return user

    def get_user(self, principal: Principal, user_id: int) -> tuple[User, list[str], list[int]]:
        """A user with their role keys and unit ids, for the edit form."""
        self._admin(principal)
        with self.db.read() as s:
            user = self._user(s, user_id)
            roles = list(s.scalars(select(UserRole.role_key).where(UserRole.user_id == user_id).order_by(UserRole.role_key)))
            units = list(s.scalars(select(UserUnit.unit_id).where(UserUnit.user_id == user_id)))
        return user, roles, units

    def create_user(self, principal: Principal, definitions: Definitions, username: str, password: str,
                    changes: UserChanges, must_change: bool = True) -> User:
        """A new account; AccountInvalid lists every problem with what was asked."""
        self._admin(principal)
        username = username.strip()
        with self.db.write() as s:
            problems = self._username_problems(s, username) + self._membership_problems(s, definitions, changes)
            problems += password_problems(password, username, [changes.display_name])
            if problems:
                raise AccountInvalid(problems)
            user = store_user(s, username, password, changes.roles, changes.unit_ids,
                              display_name=changes.display_name or username, must_change=must_change)
            user.email, user.phone = changes.email, changes.phone
            s.commit()
        return user

    def update_user(self, principal: Principal, definitions: Definitions, user_id: int, changes: UserChanges) -> User:
        """New name, roles, units, activity. A deactivated user is signed out at once; an administrator may neither
        deactivate themselves nor give up their own administrator role."""
        self._admin(principal)
        with self.db.write() as s:
            user = self._user(s, user_id)
            problems = self._membership_problems(s, definitions, changes)
            if user.id == principal.user_id:
                if not changes.active:
                    problems.append("不能停用自己的账号")
                if not any(definitions.roles[r].admin for r in changes.roles if r in definitions.roles):
                    problems.append("不能取消自己的系统管理员角色")
            if problems:
                raise AccountInvalid(problems)
            user.display_name = changes.display_name or user.username
            user.email, user.phone = changes.email, changes.phone
            set_memberships(s, user, changes.roles, changes.unit_ids)
            if user.is_active and not changes.active:
                close_user_sessions(s, user.id)
            user.is_active = changes.active
            s.commit()
        return user

    def reset_password(self, principal: Principal, user_id: int, keep_token: str | None = None) -> tuple[User, str]:
        """A random one-time password the user must change at their next sign-in; whoever held the old one is signed
        out (all the user's sessions but `keep_token`, the administrator's own), and their sign-in delays end."""
        self._admin(principal)
        password = generate_password()
        with self.db.write() as s:
            user = self._user(s, user_id)
            self._set_password(s, user, password, must_change=True)
            close_user_sessions(s, user.id, keep=keep_token)
            throttle.clear(s, throttle.account_key(user.username))
            s.commit()
        return user, password

    def unlock(self, principal: Principal, username: str) -> bool:
        """End the sign-in delay of a user name (its failures are forgotten); False if it had none. Unknown names
        are refused, so that a typing mistake in `dangan unlock-user` is not reported as done."""
        self._admin(principal)
        with self.db.write() as s:
            if s.scalar(select(User.id).where(func.lower(User.username) == username.strip().lower())) is None:
                raise UserNotFound()
            cleared = throttle.clear(s, throttle.account_key(username))
            s.commit()
        return cleared

    def delayed(self, usernames: Iterable[str]) -> set[str]:
        """Which of these user names wait out a sign-in delay now (for the administrator's list)."""
        names = {throttle.account_key(name): name for name in usernames}
        with self.db.read() as s:
            keys = throttle.delayed_accounts(s, list(names), utcnow())
        return {names[key] for key in keys}

    def listing(self, principal: Principal, definitions: Definitions, search: str) -> list[UserRow]:
        """Users whose name contains `search`, with their roles' names, their units' full names and whether their
        sign-in waits out a delay."""
        self._admin(principal)
        query = select(User).order_by(User.username)
        if search:
            # Typed text, not a pattern: "%" and "_" in a name match themselves.
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", search.lower()) + "%"
            query = query.where(or_(func.lower(User.username).like(pattern, escape="\\"),
                                    func.lower(User.display_name).like(pattern, escape="\\")))
        with self.db.read() as s:
            users = list(s.scalars(query))
            roles: dict[int, list[str]] = {}
            for user_id, key in s.execute(select(UserRole.user_id, UserRole.role_key).order_by(UserRole.role_key)):
                role = definitions.roles.get(key)
                roles.setdefault(user_id, []).append(role.name if role else f"{key}（已不在定义中）")
            names = {u.id: u.full_name for u in all_units(s)}
            units: dict[int, list[str]] = {}
            for user_id, unit_id in s.execute(select(UserUnit.user_id, UserUnit.unit_id)):
                units.setdefault(user_id, []).append(names.get(unit_id, "?"))
        delayed = self.delayed(u.username for u in users)
        return [UserRow(u, roles.get(u.id, []), sorted(units.get(u.id, [])), u.username in delayed) for u in users]

    def _username_problems(self, s: DbSession, username: str) -> list[str]:
        if not USERNAME.fullmatch(username):
            return ["用户名只能包含字母、数字、下划线、点和减号，长度2-40"]
        if s.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
            return [f"用户名“{username}”已存在"]
        return []

    def _membership_problems(self, s: DbSession, definitions: Definitions, changes: UserChanges) -> list[str]:
        problems = []
        if len(changes.display_name) > 100:
            problems.append("姓名不能超过100个字")
        if changes.email and not EMAIL.fullmatch(changes.email):
            problems.append("邮箱格式不正确，例如 zhangsan@school.edu.cn")
        if changes.phone and not PHONE.fullmatch(changes.phone):
            problems.append("手机号格式不正确，应为11位数字（1开头）")
        unknown = [r for r in changes.roles if r not in definitions.roles]
        if unknown:
            problems.append(f"未知的角色：{'、'.join(unknown)}（可用：{'、'.join(r.name for r in definitions.roles.values())}）")
        elif not changes.roles:
            problems.append("请至少选择一个角色")
        wanted = {i for i in changes.unit_ids if holds_id(OrgUnit, i)}
        found = set(s.scalars(select(OrgUnit.id).where(OrgUnit.id.in_(wanted)))) if wanted else set()
        if len(found) != len(set(changes.unit_ids)):
            problems.append("所选单位不存在，请刷新页面后重新选择")
        elif not found:
            problems.append("请至少选择一个所属单位")
        return problems


# --- storage, without rules: AccountService above, the first start, and tests and benches seeding data ---------------
def store_user(s: DbSession, username: str, password: str, roles: Iterable[str], unit_ids: Iterable[int],
               display_name: str = "", must_change: bool = True) -> User:
    user = User(username=username, display_name=display_name or username, password_hash=hash_password(password),
                must_change_password=must_change, password_changed_at=utcnow())
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


def create_user(s: DbSession, username: str, password: str, roles: Iterable[str], unit_ids: Iterable[int],
                display_name: str = "", must_change: bool = True) -> User:
    """For tests and benches that seed accounts inside their own transaction: the password policy still applies,
    permissions do not (there is no principal). The app and the CLI use AccountService."""
    problems = password_problems(password, username)
    if problems:
        raise AccountInvalid(problems)
    return store_user(s, username.strip(), password, roles, unit_ids, display_name, must_change)


__all__ = ["AccountInvalid", "AccountPolicy", "AccountService", "SignInDelayed", "SignInFailed", "SignedIn",
           "UserChanges", "UserNotFound", "UserRow", "create_user", "generate_password", "set_memberships", "store_user",
           "system_principal"]
