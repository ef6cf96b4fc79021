"""Settings from environment variables, read once at start-up."""
from __future__ import annotations

import datetime as dt
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from engine.excel.limits import Limits
from engine.fields.files import MB

if TYPE_CHECKING:  # the methods import these when called: every `dangan` command reads Settings, few need backups
    from engine.accounts import AccountPolicy
    from engine.backup.schedule import Schedule
    from engine.recovery import Sender
    from engine.storage.db import ServerTimeouts

ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=lambda: _env("DANGAN_DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'dangan.db'}"))
    definitions: Path = field(default_factory=lambda: Path(_env("DANGAN_DEFINITIONS", "definitions")))
    # htmx comes from the npm package pinned in package-lock.json, served by the app itself.
    assets: Path = field(default_factory=lambda: Path(_env("DANGAN_ASSETS", str(ROOT / "node_modules"))))
    # "auto" (the default): cookies are Secure when the request came over HTTPS, directly or through a trusted proxy
    # (X-Forwarded-Proto); "1": always (HTTPS ends at a proxy that does not say so); "0": never.
    secure_cookies: str = field(default_factory=lambda: _env("DANGAN_SECURE_COOKIES", "auto"))
    # Addresses whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's forwarded_allow_ips): the reverse
    # proxy in front of Dangan. Comma-separated; "*" believes anyone, which is only right behind a firewall.
    trusted_proxies: str = field(default_factory=lambda: _env("DANGAN_TRUSTED_PROXIES", "127.0.0.1"))
    max_upload_bytes: int = field(default_factory=lambda: _int("DANGAN_MAX_UPLOAD_MB", 20) * 1024 * 1024)
    # A request body that stops coming for this many seconds is answered 408 and its connection closed.
    body_timeout_seconds: float = field(default_factory=lambda: float(os.environ.get("DANGAN_BODY_TIMEOUT_SECONDS") or 20))
    var_dir: Path = field(default_factory=lambda: Path(_env("DANGAN_VAR", str(ROOT / "var"))))
    # 会话与密码 (docs/operations.md): sign-out after this many idle minutes; no session lasts longer than session_hours.
    idle_timeout_minutes: int = field(default_factory=lambda: _int("DANGAN_IDLE_TIMEOUT_MINUTES", 30))
    session_hours: int = field(default_factory=lambda: _int("DANGAN_SESSION_HOURS", 8))
    # A password older than this many days must be changed at the next sign-in; 0 (the default) turns it off.
    password_max_age_days: int = field(default_factory=lambda: _int("DANGAN_PASSWORD_MAX_AGE_DAYS", 0))
    # A new password may not be any of the last N.
    password_history: int = field(default_factory=lambda: _int("DANGAN_PASSWORD_HISTORY", 5))

    # 忘记密码 (docs/operations.md): an SMTP server sends reset links by e-mail; an SMS sender is a plug-in named
    # "module:attribute" (a Sender, or a callable returning one: engine/recovery.py). Without either, the login page
    # tells users whom to ask (password_help), and administrators or registrars issue one-time codes.
    smtp_host: str = field(default_factory=lambda: _env("DANGAN_SMTP_HOST", ""))
    smtp_port: int = field(default_factory=lambda: _int("DANGAN_SMTP_PORT", 25))
    smtp_from: str = field(default_factory=lambda: _env("DANGAN_SMTP_FROM", "dangan@localhost"))
    smtp_user: str = field(default_factory=lambda: _env("DANGAN_SMTP_USER", ""))
    smtp_password: str = field(default_factory=lambda: _env("DANGAN_SMTP_PASSWORD", ""))
    smtp_starttls: bool = field(default_factory=lambda: _env("DANGAN_SMTP_STARTTLS", "") == "1")
    sms_sender: str = field(default_factory=lambda: _env("DANGAN_SMS_SENDER", ""))
    # The address users reach the app at (e.g. https://dangan.example.edu.cn): the link in a reset e-mail, the
    # address in certificates' QR codes. "" = the request's own where there is a request, else http://localhost:8000.
    public_url: str = field(default_factory=lambda: _env("DANGAN_PUBLIC_URL", ""))
    password_help: str = field(default_factory=lambda: _env(
        "DANGAN_PASSWORD_HELP", "忘记密码时，请联系本校学籍管理员或系统管理员，当面领取一次性重置码。"))
    reset_code_hours: int = field(default_factory=lambda: _int("DANGAN_RESET_CODE_HOURS", 24))

    # Backups (docs/operations.md): where `dangan backup` and the schedule write, how often the schedule runs (0: never)
    # and how many scheduled archives it keeps; DANGAN_PG_BIN: the directory of pg_dump/pg_restore/psql if not on PATH.
    backup_dir: Path = field(default_factory=lambda: Path(
        os.environ.get("DANGAN_BACKUP_DIR") or Path(_env("DANGAN_VAR", str(ROOT / "var"))) / "backups"))
    backup_every_hours: float = field(default_factory=lambda: float(os.environ.get("DANGAN_BACKUP_EVERY_HOURS", "24")))
    backup_keep: int = field(default_factory=lambda: int(os.environ.get("DANGAN_BACKUP_KEEP", "7")))
    pg_bin: Path | None = field(default_factory=lambda: Path(os.environ["DANGAN_PG_BIN"]) if os.environ.get("DANGAN_PG_BIN") else None)

    # Imports (docs/excel.md): DANGAN_IMPORT_MAX_MB caps a file (0: the request limit on the web, 200 MB for
    # `dangan import`, which has no request); DANGAN_IMPORT_MAX_ROWS caps data rows in a file and records in an export.
    import_max_mb: int = field(default_factory=lambda: _int("DANGAN_IMPORT_MAX_MB", 0))
    import_max_rows: int = field(default_factory=lambda: _int("DANGAN_IMPORT_MAX_ROWS", Limits.max_rows))
    # After a definition change (a formula, a field), start-up or a reload recomputes a form's stored rows at once when
    # there are at most this many; more are recomputed in the background while the server serves (docs/operations.md).
    recompute_inline_rows: int = field(default_factory=lambda: _int("DANGAN_RECOMPUTE_INLINE_ROWS", 2000))

    def import_limits(self) -> Limits:
        """An upload's limits: the file limit never exceeds the request limit."""
        wanted = self.import_max_mb * MB if self.import_max_mb else self.max_upload_bytes
        return Limits(max_file_bytes=min(wanted, self.max_upload_bytes), max_rows=self.import_max_rows)

    def command_import_limits(self, no_size_limit: bool = False) -> Limits:
        """`dangan import`'s limits: no request, so DANGAN_IMPORT_MAX_MB or 200 MB, or none at all."""
        size = 10**13 if no_size_limit else (self.import_max_mb or 200) * MB
        return Limits(max_file_bytes=size, max_rows=self.import_max_rows)
    # What PostgreSQL ends by itself (engine/storage/db.py:ServerTimeouts, docs/operations.md); 0 = no limit.
    pg_statement_timeout_seconds: float = field(default_factory=lambda: float(os.environ.get("DANGAN_PG_STATEMENT_TIMEOUT_SECONDS") or 300))
    pg_lock_timeout_seconds: float = field(default_factory=lambda: float(os.environ.get("DANGAN_PG_LOCK_TIMEOUT_SECONDS") or 30))
    pg_idle_in_transaction_seconds: float = field(default_factory=lambda: float(os.environ.get("DANGAN_PG_IDLE_IN_TRANSACTION_SECONDS") or 60))

    def database_timeouts(self) -> ServerTimeouts:
        from engine.storage.db import ServerTimeouts  # noqa: PLC0415

        return ServerTimeouts(self.pg_statement_timeout_seconds, self.pg_lock_timeout_seconds,
                              self.pg_idle_in_transaction_seconds)

    def backup_schedule(self) -> Schedule:
        from engine.backup.schedule import Schedule  # noqa: PLC0415

        return Schedule(self.backup_dir, self.backup_every_hours, self.backup_keep, self.definitions, self.pg_bin)
    def senders(self) -> tuple[Sender, ...]:
        from engine.recovery import SmtpSender  # noqa: PLC0415

        found: list[Sender] = []
        if self.smtp_host:
            found.append(SmtpSender(self.smtp_host, self.smtp_port, self.smtp_from, self.smtp_user, self.smtp_password,
                                    self.smtp_starttls))
        if self.sms_sender:
            module, _, attribute = self.sms_sender.partition(":")
            plugin = getattr(importlib.import_module(module), attribute)
            found.append(plugin() if isinstance(plugin, type) or not hasattr(plugin, "send") else plugin)
        return tuple(found)

    def account_policy(self) -> AccountPolicy:
        from engine.accounts import AccountPolicy  # noqa: PLC0415
        from engine.sessions import SessionPolicy  # noqa: PLC0415

        return AccountPolicy(
            sessions=SessionPolicy(lifetime=dt.timedelta(hours=self.session_hours),
                                   idle=dt.timedelta(minutes=self.idle_timeout_minutes)),
            password_max_age=dt.timedelta(days=self.password_max_age_days) if self.password_max_age_days > 0 else None,
            password_history=max(1, self.password_history),
        )
