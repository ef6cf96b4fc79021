"""What a backup archive declares about itself: the manifest (counts, checksums, versions) and its JSON form."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

FORMAT = "dangan-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.json.sha256"  # the manifest cannot hold its own checksum
SQLITE_MEMBER = "database.sqlite3"
POSTGRES_MEMBER = "database.pgdump"
DATABASE_MEMBERS = {"sqlite": SQLITE_MEMBER, "postgresql": POSTGRES_MEMBER}
DEFINITIONS = "definitions/"
KINDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}

_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
_SCHEMA = Draft202012Validator({
    "type": "object",
    "required": ["format", "format_version", "created_at", "database", "alembic_revision", "definitions_version",
                 "counts", "members"],
    "properties": {
        "created_at": {"type": "string"},
        "database": {"enum": list(DATABASE_MEMBERS)},
        "alembic_revision": {"type": "string"},
        "definitions_version": {"type": "string"},
        "counts": {"type": "object", "required": ["tables", "records_by_form"],
                   "properties": {"tables": _COUNTS, "records_by_form": _COUNTS}},
        "members": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["sha256", "size"],
            "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "size": {"type": "integer", "minimum": 0}}}},
        "postgresql": {"type": "object"},
        "notes": {"type": "array", "items": {"type": "string"}},
    },
})


class BackupError(Exception):
    """A backup or restore that was refused or failed; the text is the operator's Chinese message. A restore that
    raises it has changed nothing."""


@dataclass(frozen=True)
class Counts:
    """Rows per table, and records per form: what a restore must find again."""

    tables: dict[str, int]
    records_by_form: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"tables": dict(sorted(self.tables.items())), "records_by_form": dict(sorted(self.records_by_form.items()))}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Counts":
        return cls(dict(data.get("tables", {})), dict(data.get("records_by_form", {})))

    @property
    def holds_data(self) -> bool:
        """Anything besides the schema's own bookkeeping (alembic_version)."""
        return any(n for name, n in self.tables.items() if name != "alembic_version")

    def summary(self) -> str:
        t = self.tables
        forms = "、".join(f"{key} {n}" for key, n in sorted(self.records_by_form.items()))
        return (f"记录 {t.get('records', 0)} 条{f'（{forms}）' if forms else ''}，审计 {t.get('audit_log', 0)} 条，"
                f"附件 {t.get('attachments', 0)} 个，用户 {t.get('users', 0)} 个，流程申请 {t.get('wf_applications', 0)} 个")


@dataclass(frozen=True)
class Member:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    created_at: dt.datetime  # UTC, naive like every time the engine stores
    database: str  # sqlite | postgresql
    alembic_revision: str  # the revisions in alembic_version, sorted and joined with ","
    definitions_version: str  # "" when the definitions directory did not compile
    counts: Counts
    members: dict[str, Member]
    postgresql: dict[str, Any] = field(default_factory=dict)  # schema, server and pg_dump versions
    notes: tuple[str, ...] = ()

    @property
    def database_member(self) -> str:
        return DATABASE_MEMBERS[self.database]

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "created_at": self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "database": self.database, "alembic_revision": self.alembic_revision,
            "definitions_version": self.definitions_version, "counts": self.counts.to_json(),
            "members": {name: {"sha256": m.sha256, "size": m.size} for name, m in self.members.items()},
            "notes": list(self.notes),
        }
        if self.postgresql:
            data["postgresql"] = self.postgresql
        return json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest of an archive whose checksum already matched; an unknown format or shape raises BackupError."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BackupError(f"备份清单（{MANIFEST}）不是有效的 JSON：{exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"未知的备份格式：{MANIFEST} 不是 Dangan 备份清单")
    if data.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"未知的备份格式版本 {data.get('format_version')!r}（本程序读取版本 {FORMAT_VERSION}）："
                          "请用生成该备份的 Dangan 版本恢复")
    problems = sorted(_SCHEMA.iter_errors(data), key=lambda e: list(e.absolute_path))
    if problems:
        where = "/".join(str(p) for p in problems[0].absolute_path) or "（顶层）"
        raise BackupError(f"备份清单不完整或格式不对：{where}：{problems[0].message}")
    try:
        created = dt.datetime.strptime(data["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    except ValueError as exc:
        raise BackupError(f"备份清单的创建时间无法识别：{data['created_at']!r}") from exc
    members = {name: Member(m["sha256"], m["size"]) for name, m in data["members"].items()}
    manifest = Manifest(created, data["database"], data["alembic_revision"], data["definitions_version"],
                        Counts.from_json(data["counts"]), members, data.get("postgresql", {}),
                        tuple(data.get("notes", ())))
    for name in members:
        if not member_name_ok(name, manifest.database):
            raise BackupError(f"备份清单列出了不该有的文件“{name}”")
    if manifest.database_member not in members:
        raise BackupError(f"备份清单缺少数据库文件 {manifest.database_member}")
    return manifest


def member_name_ok(name: str, database: str) -> bool:
    """The database file, or a relative path under definitions/ that cannot climb out of where it is extracted."""
    if name == DATABASE_MEMBERS[database]:
        return True
    parts = name.split("/")
    return (name.startswith(DEFINITIONS) and len(parts) > 1 and "\\" not in name
            and all(part not in ("", ".", "..") for part in parts[1:]))
