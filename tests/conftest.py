"""Shared fixtures for the database backends.

* ``sqlite_url``  – session-scoped SQLite file URL in a temp dir.
* ``pg_url``      – session-scoped PostgreSQL URL bound to a fresh schema
                    (every connection gets ``search_path=<schema>``); the
                    schema is dropped at the end.
* ``db_url``      – session-scoped, parametrised: ``sqlite`` and ``pg``.
                    A test using it runs once per backend.
* ``fresh_db_url`` – like ``db_url`` but a new empty database/schema for
                    each test (function scope).

PostgreSQL comes from ``DANGAN_TEST_PG_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). If it is unreachable
the fixtures fail the test: PostgreSQL tests are never skipped.

Works under pytest-xdist: every worker has its own session, temp dir and
uniquely named schemas.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

DEFAULT_TEST_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def pg_admin_url() -> str:
    """The configured PostgreSQL URL (its default schema, no isolation)."""
    return os.environ.get("DANGAN_TEST_PG_URL") or DEFAULT_TEST_PG_URL


def _url_str(url: sa.URL) -> str:
    return url.render_as_string(hide_password=False)


def _pg_engine(url: str) -> sa.Engine:
    return sa.create_engine(url, connect_args={"connect_timeout": 5}, poolclass=sa.NullPool)


@contextmanager
def pg_schema_url(prefix: str = "t_") -> Iterator[str]:
    """Create a fresh schema, yield a URL whose connections use it, drop it."""
    admin = pg_admin_url()
    engine = _pg_engine(admin)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect is fatal
        engine.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {admin!r} (DANGAN_TEST_PG_URL): {exc}. "
            "PostgreSQL tests are required; they are never skipped.",
            pytrace=False,
        )
    schema = f"{prefix}{uuid.uuid4().hex[:10]}_{_worker_id()}".lower()
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(admin).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield _url_str(url)
    finally:
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            engine.dispose()


def _sqlite_file_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _sqlite_file_url(tmp_path_factory.mktemp("sqlite") / "dangan.db")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with pg_schema_url() as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"], ids=["sqlite", "pg"])
def db_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "pg"])
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield _sqlite_file_url(tmp_path / "dangan.db")
    else:
        with pg_schema_url() as url:
            yield url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every PostgreSQL-parametrised test with ``pg`` (so ``-m 'not pg'`` works)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (
            params.get("db_url") == "postgresql"
            or params.get("fresh_db_url") == "postgresql"
            or "pg_url" in getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.pg)


# One definition of the browser fixtures for every test folder: a module that imported them itself would start a
# second session-scoped Playwright in the same worker, which Playwright's sync API refuses.
from tests.browser_fixtures import browser, shot, start_server  # noqa: E402,F401
