"""What the running app holds: the database and the live, swappable compiled definitions."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field

from markupsafe import Markup

from engine.accounts import AccountService
from engine.recovery import RecoveryService
from engine.twofactor import TwoFactorService
from engine.errors import DefinitionErrors
from engine.loader import demo_units, load_definitions
from engine.org import OrgTree, Unit
from engine.org_apply import org_note
from engine.records import RecordService
from engine.records.grid import GridService
from engine.spec import Definitions
from engine.storage.db import Database
from engine.storage.projection import IndexConflict, Prepared, prepare_projections
from web import generations
from web.settings import Settings
from web.writes import WriteRunner

log = logging.getLogger("dangan")


@dataclass
class ReloadOutcome:
    ok: bool
    errors: list[str] = field(default_factory=list)
    version: str = ""
    notes: list[str] = field(default_factory=list)  # what the new definitions recomputed (records per form)


class AppState:
    """Requests read `definitions` once; a reload swaps the whole object, never edits it."""

    def __init__(self, settings: Settings, definitions: Definitions, db: Database, secret: bytes | None = None) -> None:
        """`secret`: the server's secret for signing sign-in challenges; a worker process gets its parent's."""
        self.settings = settings
        self.definitions = definitions
        self.db = db
        self.writes = WriteRunner(db)  # where a request's write transactions run (web/writes.py)
        self.records = RecordService(db, lambda: self.definitions.forms)
        self.grids = GridService(self.records, lambda: self.definitions.forms)
        self.accounts = AccountService(db, settings.account_policy(), secret or secrets.token_bytes(32))
        self.recovery = RecoveryService(self.accounts, settings.senders(), settings.public_url or "http://localhost:8000",
                                        dt.timedelta(hours=settings.reset_code_hours))
        self.two_factor = TwoFactorService(db, self.accounts.policy)
        self._lock = threading.Lock()
        self.org_tree = OrgTree(db, lambda: generations.org_units.value)
        self.records.org_tree = self.org_tree
        # The reload generation these definitions answer to; a process forked later inherits both.
        self._definitions_seen = generations.definitions.value
        # Rendered blank forms by (definitions version, form, policy); a reload changes the version.
        self.blank_forms: dict[tuple, Markup] = {}

    def units(self) -> list[Unit]:
        """The org tree, kept until it changes (engine/org.py OrgTree): every form page needs it.

        The admin pages call `units_changed()`, which every worker of this server sees at once (a shared counter);
        a change by another server or command shows within OrgTree.CHECK_SECONDS (the tree's version in the
        database). The whole tree is read again only after a change, never on a timer.
        """
        return self.org_tree.units()

    def units_changed(self) -> None:
        generations.org_units.bump()

    def reload(self) -> ReloadOutcome:
        """Re-read the definitions; an invalid set is refused and the last good one stays live. A valid one moves the
        shared generation, so every worker process of this server re-reads them before its next request."""
        with self._lock:
            outcome = self._load()
            if outcome.ok:
                generations.definitions.bump()
                self._definitions_seen = generations.definitions.value
            return outcome

    def follow_reloads(self) -> None:
        """Called before each request: a reload checked in another process (the supervisor on `dangan reload`, another
        worker's admin page) is applied here first, so no request is answered with the old roles and masks."""
        if generations.definitions.value == self._definitions_seen:
            return
        with self._lock:
            generation = generations.definitions.value
            if generation == self._definitions_seen:
                return
            self._definitions_seen = generation
            outcome = self._load(sync=False)
            if outcome.ok:
                log.warning("定义已重新加载，版本 %s", outcome.version)
            else:  # the files changed again since they were checked: keep serving the last good set
                log.error("定义有错误，未加载，仍使用版本 %s：\n%s", outcome.version, "\n".join(outcome.errors))

    def _load(self, sync: bool = True) -> ReloadOutcome:
        """Load the definitions; `sync`: also make the projection tables follow them (the process that checks a
        reload does that, once, before the others follow it)."""
        prepared = Prepared({}, {})
        try:
            candidate = load_definitions(self.settings.definitions)
            if sync:
                prepared = prepare_projections(self.db, candidate, self.settings.recompute_inline_rows)
        except DefinitionErrors as exc:
            return ReloadOutcome(False, [str(e) for e in exc.errors], self.definitions.version)
        except IndexConflict as exc:
            return ReloadOutcome(False, [str(exc)], self.definitions.version)
        self.definitions = candidate
        log.info("definitions reloaded: version %s", candidate.version)
        notes = [f"表单“{candidate.forms[key].title}”：{count} 条记录按新定义重新计算（计算字段、完整性、索引数据）"
                 for key, count in prepared.recomputed.items() if count and key in candidate.forms]
        notes += [f"表单“{candidate.forms[key].title}”：{count} 条记录将在后台按新定义重新计算（计算字段、完整性、索引数据），"
                  f"进度见系统管理页；完成前，列表中这些记录的计算值和筛选结果仍按旧定义"
                  for key, count in prepared.pending.items() if key in candidate.forms]
        notes += self._org_notes()
        return ReloadOutcome(True, [], candidate.version, notes)

    def _org_notes(self) -> list[str]:
        note = org_note(self.db, demo_units(self.settings.definitions))
        return [note] if note else []


def reload_ack_name(pid: int) -> str:
    """Where the server with this pid (the one in its pid file) says what it made of a `dangan reload`."""
    return f"reload-outcome-{pid}.json"


def acknowledge_reload(settings: Settings, outcome: ReloadOutcome) -> None:
    """What the server made of a `dangan reload` (SIGHUP), for the command that is waiting for it (web/cli.py)."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    target = settings.var_dir / reload_ack_name(os.getpid())
    partial = target.with_suffix(".tmp")
    partial.write_text(json.dumps({"ok": outcome.ok, "version": outcome.version, "errors": outcome.errors,
                                   "notes": outcome.notes,
                                   "at": time.time_ns()}, ensure_ascii=False), encoding="utf-8")
    partial.replace(target)  # the command never reads half a file
