"""What every `dangan` subcommand starts with."""
from __future__ import annotations

import sys
from typing import TextIO

from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.spec import Definitions
from engine.storage.db import Database
from web.settings import Settings


def definitions_for_command(settings: Settings, err: TextIO | None = None) -> Definitions | None:
    """The definitions a command acts on; None when they do not load (each error printed as path:line:column)."""
    try:
        return load_definitions(settings.definitions)
    except DefinitionErrors as exc:
        print(exc, file=err or sys.stderr)
        return None


def prepare_database(db: Database, definitions: Definitions) -> None:
    """What a command that reads or writes records does first, as `dangan serve` does at start: the tables at the
    newest migration and every form's projection (lists, unique checks, links) made to follow these definitions,
    all stale rows recomputed now. Without it a command on a database no server has opened yet (or since the
    definitions changed) fails on a missing or outdated projection table."""
    from engine.storage.projection import prepare_projections  # noqa: PLC0415

    db.upgrade()
    prepare_projections(db, definitions)
