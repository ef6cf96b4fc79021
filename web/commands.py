"""What every `dangan` subcommand starts with."""
from __future__ import annotations

import sys
from typing import TextIO

from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.spec import Definitions
from web.settings import Settings


def definitions_for_command(settings: Settings, err: TextIO | None = None) -> Definitions | None:
    """The definitions a command acts on; None when they do not load (each error printed as path:line:column)."""
    try:
        return load_definitions(settings.definitions)
    except DefinitionErrors as exc:
        print(exc, file=err or sys.stderr)
        return None
