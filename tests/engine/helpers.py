"""Test helpers: inline YAML definitions loaded like the real ones, two-backend databases, people, sessions, files."""
from __future__ import annotations

import datetime as dt
import os
import re
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path
from textwrap import dedent
from typing import Iterator, Mapping

import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from engine.accounts import set_memberships
from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.org import build_principal, unit_by_path
from engine.permissions import Principal
from engine.sessions import open_session
from engine.spec import Definitions, FormSpec
from engine.storage.models import User
from tests.conftest import pg_schema_url
from tests.support import valid_student
from web.auth import COOKIE
from web.state import AppState

ORG = """
levels:
  - {key: district, label: 区县}
  - {key: school, label: 学校}
  - {key: class, label: 班级}
"""

SMALL_FORM = """
key: t
title: 测试
sections:
  - key: main
    title: 主要
    fields:
      - key: name
        label: 姓名
        type: text
"""


def yaml_text(text: str) -> str:
    """Inline YAML as written in a test: dedented, the first content line is line 1."""
    return dedent(text).lstrip("\n")


def locate(text: str, needle: str, nth: int = 1) -> str:
    """`line:column` (1-based) of the nth occurrence of `needle` in the inline YAML, as an error names it."""
    text = yaml_text(text)
    position = -1
    for _ in range(nth):
        position = text.index(needle, position + 1)
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"{line}:{column}"


def write_definitions(root: Path, *, forms: Mapping[str, str] | None = None, roles: Mapping[str, str] | None = None,
                      options: Mapping[str, str] | None = None, org: str | None = ORG) -> Path:
    """A definitions directory: `forms={"t": yaml}` becomes forms/t.yaml, and so on."""
    root.mkdir(parents=True, exist_ok=True)
    if org is not None:
        (root / "org.yaml").write_text(yaml_text(org), encoding="utf-8")
    for folder, files in (("forms", forms), ("roles", roles), ("options", options)):
        (root / folder).mkdir(exist_ok=True)
        for name, text in (files or {}).items():
            (root / folder / f"{name}.yaml").write_text(yaml_text(text), encoding="utf-8")
    return root


def definition_errors(root: Path) -> list[str]:
    """Every error as printed (`path:line:column: message（提示：…）`), the path relative to `root`."""
    try:
        load_definitions(root)
    except DefinitionErrors as exc:
        prefix = os.path.relpath(root) + os.sep
        lines = [str(error) for error in exc.errors]
        assert all(line.startswith(prefix) for line in lines), lines
        return [line[len(prefix):] for line in lines]
    return []


def assert_definition(root: Path, *, form: str | None = None, forms: Mapping[str, str] | None = None,
                      roles: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None,
                      org: str | None = ORG, errors__contains: tuple[str, ...] | list[str] = (),
                      errors__count: int | None = None) -> list[str]:
    """Write the definitions, load them and check the errors.

    Each `errors__contains` item must be the start of, or appear in, exactly one reported error line, e.g.
    "forms/t.yaml:10:15: 未知的字段类型“txt”". With no expectations the definitions must load cleanly.
    """
    all_forms = dict(forms or {})
    if form is not None:
        all_forms["t"] = form
    write_definitions(root, forms=all_forms, roles=roles, options=options, org=org)
    errors = definition_errors(root)
    if not errors__contains and errors__count is None:
        assert errors == [], "\n".join(errors)
        return errors
    for expected in errors__contains:
        matching = [line for line in errors if expected in line]
        assert len(matching) == 1, f"expected one error containing {expected!r}, got:\n" + "\n".join(errors)
    if errors__count is not None:
        assert len(errors) == errors__count, "\n".join(errors)
    return errors


def compile_form(root: Path, form: str, options: Mapping[str, str] | None = None) -> FormSpec:
    """One inline form, compiled (it must be valid)."""
    write_definitions(root, forms={"form": form}, options=options)
    definitions: Definitions = load_definitions(root)
    (spec,) = definitions.forms.values()
    return spec


# --- databases and people, for tests that run on SQLite and PostgreSQL ----------------------------------

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)]


@contextmanager
def database_url(backend: str, tmp: Path) -> Iterator[str]:
    """A new empty database: a SQLite file in `tmp`, or a fresh PostgreSQL schema dropped afterwards.

    For module-scoped fixtures; function-scoped tests use the `fresh_db_url` fixture instead.
    """
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'dangan.db'}"
    else:
        with pg_schema_url() as url:
            yield url


def principal_of(state: AppState, username: str) -> Principal:
    """The principal a request by `username` would get, built from the database and current definitions."""
    with state.db.read() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None, username
        return build_principal(s, user, state.definitions)


def id_number(born: dt.date, serial: int, region: str = "110105") -> str:
    """A valid 18-digit ID number; `serial` odd for 男, even for 女 (GB 11643 check digit)."""
    first17 = f"{region}{born:%Y%m%d}{serial:03d}"
    total = sum(int(digit) * (2 ** (17 - i) % 11) for i, digit in enumerate(first17))
    return first17 + "0123456789X"[(12 - total % 11) % 11]


def student_values(serial: int, born: dt.date = dt.date(2008, 5, 12), **changes: str) -> dict[str, str]:
    """Form values of a valid student whose ID number agrees with birth date and gender."""
    values = valid_student(id_card=id_number(born, serial), birth_date=born.isoformat(), gender="男" if serial % 2 else "女")
    values.update(changes)
    return values


def remove_field(text: str, key: str) -> str:
    """YAML text with the field `key` (a `      - key: ...` block in a section) cut out, as an editor would."""
    pattern = re.compile(rf"^      - key: {key}\n(?:        .*\n)*", re.MULTILINE)
    edited, count = pattern.subn("", text)
    assert count == 1, key
    return edited


def add_member(state: AppState, username: str, role: str, unit_path: str) -> None:
    """A user with `role` at a unit, without the Argon2 cost of a password: for tests that never log in by form."""
    with state.db.write() as s:
        unit = unit_by_path(s, unit_path)
        assert unit is not None, unit_path
        user = User(username=username, display_name=username, password_hash="!", must_change_password=False)
        s.add(user)
        s.flush()
        set_memberships(s, user, [role], [unit.id])
        s.commit()


# --- web -------------------------------------------------------------------------------------------

def sign_in(client: TestClient, state: AppState, username: str) -> str:
    """A signed-in session for `username`, opened the way /login opens one; returns its CSRF token.

    The login form itself is tested elsewhere; this skips the Argon2 work so that many roles stay cheap.
    """
    with state.db.write() as s:
        user_id = s.scalar(select(User.id).where(User.username == username))
        assert user_id is not None, username
        token, row = open_session(s, user_id)
        csrf = row.csrf_token
        s.commit()
    client.cookies.set(COOKIE, token)
    return csrf


def png_bytes(width: int = 1, height: int = 1) -> bytes:
    """A real, minimal PNG (greyscale, 8 bit)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
