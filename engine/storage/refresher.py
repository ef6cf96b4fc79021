"""The background recompute after a definition change (engine/storage/projection.py `refresh_pending`): one thread
in one process of a server, as the scheduled backups are. It looks every few seconds whether any form has rows
left to recompute, which start-up or a reload left when there were more than `Settings.recompute_inline_rows`, and
recomputes them in small batches. A restarted server carries on where the last one stopped: what is left is read
from the database (the `projections` table), never kept in memory."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from engine.spec import Definitions
from engine.storage.projection import refresh_pending

log = logging.getLogger("dangan")


class ProjectionRefresher:
    def __init__(self, db: object, definitions: Callable[[], Definitions], every_seconds: float = 2.0) -> None:
        self.db, self.definitions, self.every = db, definitions, every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dangan-recompute", daemon=True)

    def start(self) -> "ProjectionRefresher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # The definitions are asked for each round: a reload since the last one is followed first, and
                # forms whose rows another definition owns are left to whoever holds it.
                refresh_pending(self.db, self.definitions(), self._stop.is_set)
            except Exception:  # noqa: BLE001 — logged; the next round tries again
                log.exception("后台重新计算失败，稍后重试")
            self._stop.wait(self.every)
