"""Settings from environment variables, read once at start-up."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.backup.schedule import Schedule

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=lambda: os.environ.get("DANGAN_DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'dangan.db'}"))
    definitions: Path = field(default_factory=lambda: Path(os.environ.get("DANGAN_DEFINITIONS", "definitions")))
    # htmx comes from the npm package pinned in package-lock.json, served by the app itself.
    assets: Path = field(default_factory=lambda: Path(os.environ.get("DANGAN_ASSETS", ROOT / "node_modules")))
    secure_cookies: bool = field(default_factory=lambda: os.environ.get("DANGAN_SECURE_COOKIES", "") == "1")
    max_upload_bytes: int = field(default_factory=lambda: int(os.environ.get("DANGAN_MAX_UPLOAD_MB", "20")) * 1024 * 1024)
    var_dir: Path = field(default_factory=lambda: Path(os.environ.get("DANGAN_VAR", ROOT / "var")))
    # Backups (docs/operations.md): where `dangan backup` and the schedule write, how often the schedule runs (0: never)
    # and how many scheduled archives it keeps; DANGAN_PG_BIN: the directory of pg_dump/pg_restore/psql if not on PATH.
    backup_dir: Path = field(default_factory=lambda: Path(
        os.environ.get("DANGAN_BACKUP_DIR") or Path(os.environ.get("DANGAN_VAR", ROOT / "var")) / "backups"))
    backup_every_hours: float = field(default_factory=lambda: float(os.environ.get("DANGAN_BACKUP_EVERY_HOURS", "24")))
    backup_keep: int = field(default_factory=lambda: int(os.environ.get("DANGAN_BACKUP_KEEP", "7")))
    pg_bin: Path | None = field(default_factory=lambda: Path(os.environ["DANGAN_PG_BIN"]) if os.environ.get("DANGAN_PG_BIN") else None)

    def backup_schedule(self) -> Schedule:
        return Schedule(self.backup_dir, self.backup_every_hours, self.backup_keep, self.definitions, self.pg_bin)
    # The address printed in certificates' QR codes (e.g. https://dangan.example.edu.cn); "" = the request's own.
    public_url: str = field(default_factory=lambda: os.environ.get("DANGAN_PUBLIC_URL", ""))
