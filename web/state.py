"""What the running app holds: the database and the live, swappable compiled definitions."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.records import RecordService
from engine.spec import Definitions
from engine.storage.db import Database
from engine.storage.fieldsql import IndexConflict, sync_indexes
from web.settings import Settings

log = logging.getLogger("dangan")


@dataclass
class ReloadOutcome:
    ok: bool
    errors: list[str] = field(default_factory=list)
    version: str = ""


class AppState:
    """Requests read `definitions` once; a reload swaps the whole object, never edits it."""

    def __init__(self, settings: Settings, definitions: Definitions, db: Database) -> None:
        self.settings = settings
        self.definitions = definitions
        self.db = db
        self.records = RecordService(db)
        self._lock = threading.Lock()

    def reload(self) -> ReloadOutcome:
        """Re-read the definitions; an invalid set is refused and the last good one stays live."""
        with self._lock:
            try:
                candidate = load_definitions(self.settings.definitions)
                with self.db.engine.begin() as connection:
                    sync_indexes(connection, candidate.forms)
            except DefinitionErrors as exc:
                return ReloadOutcome(False, [str(e) for e in exc.errors], self.definitions.version)
            except IndexConflict as exc:
                return ReloadOutcome(False, [str(exc)], self.definitions.version)
            self.definitions = candidate
            log.info("definitions reloaded: version %s", candidate.version)
            return ReloadOutcome(True, [], candidate.version)
