"""Excel fixtures: one app per backend for a whole test module (imports use fresh ID numbers), or per test."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import pg_schema_url
from tests.support import SCHOOL, add_user, build, copy_definitions
from web.state import AppState

OTHER_SCHOOL = "示范区教育局/示范区实验小学"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)], ids=["sqlite", "pg"])
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('excel-db') / 'dangan.db'}"
    else:
        with pg_schema_url("x_") as url:
            yield url


@pytest.fixture(scope="module")
def shared(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppState]:
    """An app state with registrars of two schools; tests import through the engine, never the worker."""
    _app, state = build(module_db_url, tmp=tmp_path_factory.mktemp("excel-var"))
    add_user(state, "reg", "registrar", SCHOOL)
    add_user(state, "reg_b", "registrar", OTHER_SCHOOL)
    yield state
    state.db.dispose()


@pytest.fixture
def tmp_definitions(tmp_path: Path) -> Path:
    return copy_definitions(tmp_path / "definitions")
