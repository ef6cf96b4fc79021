"""Settings from environment variables, read once at start-up."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
    # The address printed in certificates' QR codes (e.g. https://dangan.example.edu.cn); "" = the request's own.
    public_url: str = field(default_factory=lambda: os.environ.get("DANGAN_PUBLIC_URL", ""))
