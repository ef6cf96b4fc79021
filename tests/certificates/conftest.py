"""Fixtures for certificate tests: a fresh app on each database (SQLite and PostgreSQL) with the people asked for."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.certificates.support import PEOPLE
from tests.workflows.support import World, make_world


@pytest.fixture
def world(fresh_db_url: str, tmp_path: Path) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def factory(*usernames: str, definitions: Path | None = None) -> World:
        var = tmp_path / f"var{len(made)}"
        var.mkdir()
        built = make_world(fresh_db_url, var, {u: PEOPLE[u] for u in usernames}, definitions)
        made.append(built)
        return built

    yield factory
    for built in made:
        built.state.db.dispose()
