"""Fixtures for workflow tests: a fresh app on each database with just the people a test needs."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.workflows.support import PEOPLE, Person, World, make_world


@pytest.fixture
def world(fresh_db_url: str, tmp_path: Path) -> Iterator[Callable[..., World]]:
    """world("reg", "bureau", ...) → an app on a fresh database (SQLite and PostgreSQL) with those users."""
    made: list[World] = []

    def factory(*usernames: str, definitions: Path | None = None) -> World:
        built = make_world(fresh_db_url, tmp_path, {u: PEOPLE[u] for u in usernames}, definitions)
        made.append(built)
        return built

    yield factory
    for built in made:
        built.state.db.dispose()


__all__ = ["Person"]
