"""Passwords: the strength policy (length, character kinds, zxcvbn's estimate of how guessable it is), Argon2 hashes,
and generated passwords that pass the policy."""
from __future__ import annotations

import re
import secrets
import string
from functools import cache
from typing import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

MIN_LENGTH, MAX_LENGTH = 8, 128  # zxcvbn's work grows with the square of the length: no essays
# zxcvbn's score 3 means about 10^8 guesses or more: "Passw0rd!" (1), "P@ssw0rd" (0), "12345678a!" (1) and the like,
# which its dictionaries of common and breached passwords and its l33t and keyboard patterns find, are refused.
MIN_SCORE = 3
_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verifying against this keeps the time of a login for an unknown user like that of a known one. Made at the
    first login, not at import: every command imports this module, and one Argon2 hash costs tens of milliseconds."""
    return _hasher.hash("dangan-timing-equaliser")


def password_problems(password: str, username: str = "", also_personal: Iterable[str] = ()) -> list[str]:
    """What is wrong with a new password, in Chinese; empty if it may be used."""
    if len(password) > MAX_LENGTH:
        return [f"密码不能超过{MAX_LENGTH}位"]
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"密码至少{MIN_LENGTH}位")
    if not re.search(r"[A-Za-z]", password):
        problems.append("密码须包含字母")
    if not re.search(r"[0-9]", password):
        problems.append("密码须包含数字")
    if not re.search(r"[^A-Za-z0-9]", password):
        problems.append("密码须包含符号（如 !@#%）")
    if username and username.lower() in password.lower():
        problems.append("密码不能包含用户名")
    if not problems and zxcvbn(password, user_inputs=[username, *also_personal])["score"] < MIN_SCORE:
        problems.append("密码太常见或太容易猜到（如 Passw0rd!、P@ssw0rd 这类常见密码的变形），请换一个更难猜的密码，"
                        "例如几个不相关的词加数字和符号")
    return problems


def generate_password() -> str:
    """A random initial password that satisfies the policy."""
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"{core}{secrets.choice('23456789')}{secrets.choice('!@#%*')}{secrets.choice('abcdefghjk')}"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored`; with no stored hash (no such user) the same work is done and fails."""
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)
