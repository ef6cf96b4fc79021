"""Fixtures for handover tests (升学衔接): a fresh app on each database with the people of a graduation."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.workflows.support import PEOPLE, World, make_world


@pytest.fixture
def world(fresh_db_url: str, tmp_path: Path) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def factory(*usernames: str) -> World:
        built = make_world(fresh_db_url, tmp_path, {u: PEOPLE[u] for u in usernames})
        made.append(built)
        return built

    yield factory
    for built in made:
        built.state.db.dispose()
