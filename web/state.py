"""What the running app holds: the database and the live, swappable compiled definitions."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from markupsafe import Markup

from engine.errors import DefinitionErrors
from engine.loader import load_definitions
from engine.org import Unit, all_units
from engine.records import RecordService
from engine.spec import Definitions
from engine.storage.db import Database
from engine.storage.projection import IndexConflict, prepare_projections
from web import generations
from web.settings import Settings

log = logging.getLogger("dangan")
UNITS_TTL = 30.0


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
        self._units: tuple[int, float, list[Unit]] | None = None
        # Rendered blank forms by (definitions version, form, policy); a reload changes the version.
        self.blank_forms: dict[tuple, Markup] = {}

    def units(self) -> list[Unit]:
        """The org tree, cached: it changes rarely and every form page needs it.

        The admin pages call `units_changed()`, which every worker of this server sees at once (a shared counter);
        a change by another server or command shows within UNITS_TTL.
        """
        cached, generation = self._units, generations.org_units.value
        if cached is not None and cached[0] == generation and time.monotonic() - cached[1] < UNITS_TTL:
            return cached[2]
        with self.db.read() as s:
            units = all_units(s)
        self._units = (generation, time.monotonic(), units)
        return units

    def units_changed(self) -> None:
        generations.org_units.bump()

    def reload(self) -> ReloadOutcome:
        """Re-read the definitions; an invalid set is refused and the last good one stays live."""
        with self._lock:
            try:
                candidate = load_definitions(self.settings.definitions)
                prepare_projections(self.db, candidate)
            except DefinitionErrors as exc:
                return ReloadOutcome(False, [str(e) for e in exc.errors], self.definitions.version)
            except IndexConflict as exc:
                return ReloadOutcome(False, [str(exc)], self.definitions.version)
            self.definitions = candidate
            log.info("definitions reloaded: version %s", candidate.version)
            return ReloadOutcome(True, [], candidate.version)
