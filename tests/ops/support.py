"""Backup test helpers: a form defined only here (with a file field), records written in threads, tables read back."""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, select
from sqlalchemy.pool import NullPool

from engine.fields import UploadedFile
from engine.permissions import Principal
from engine.storage.models import Base
from tests.conftest import pg_schema_url
from tests.engine.helpers import ORG, add_member, principal_of, write_definitions
from tests.support import REPO, build, unit_id
from web.state import AppState

DANGAN = REPO / ".venv" / "bin" / "dangan"
DOSSIER = """
key: dossier
title: 卷宗
unit: {level: class}
sections:
  - key: main
    title: 基本
    fields:
      - key: title
        label: 标题
        type: text
        required: true
      - key: scan
        label: 扫描件
        type: file
        accept: [.pdf]
        max_size: 1MB
"""
CLERK = "key: clerk\nname: 档案员\nscope: all\nadmin: true\nforms:\n  '*':\n    actions: [create, read, update, delete]\n"
ORG_UNITS = ORG + """
demo_units:
  - name: 区
    level: district
    children:
      - name: 学校
        level: school
        children:
          - {name: 一班, level: class}
"""
CLASS = "区/学校/一班"


def dossier_definitions(root: Path) -> Path:
    return write_definitions(root, forms={"dossier": DOSSIER}, roles={"clerk": CLERK}, org=ORG_UNITS)


@dataclass
class Archive:
    """A database of dossiers with scans, the principal who writes them, and where it all lives."""

    state: AppState
    clerk: Principal
    unit: int
    definitions: Path

    @property
    def url(self) -> str:
        return self.state.db.url

    def add(self, title: str) -> int:
        scan = UploadedFile(f"{title}.pdf", "application/pdf", b"%PDF-1.4 " + os.urandom(3000))
        result = self.state.records.create(self.state.definitions.forms["dossier"], self.clerk, self.unit,
                                           {"title": title, "scan": scan})
        assert result.ok, result.issues
        assert result.record_id is not None
        return result.record_id


def open_archive(url: str, tmp: Path, clerks: int = 1) -> Archive:
    definitions = dossier_definitions(tmp / "definitions")
    _app, state = build(url, definitions=definitions, tmp=tmp)
    for n in range(clerks):
        add_member(state, f"clerk{n}", "clerk", CLASS)
    return Archive(state, principal_of(state, "clerk0"), unit_id(state, CLASS), definitions)


@contextmanager
def two_databases(backend: str, tmp: Path) -> Iterator[tuple[str, str]]:
    """(source, target): two SQLite files, or two fresh schemas of the test PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'source.db'}", f"sqlite:///{tmp / 'target' / 'restored.db'}"
        return
    with pg_schema_url("bk_src_") as source, pg_schema_url("bk_dst_") as target:
        yield source, target


@dataclass
class Writers:
    """Threads that keep creating records through RecordService until stopped."""

    archive: Archive
    threads: int = 2
    made: list[int] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    running: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=self._write, args=(n,), daemon=True)
            thread.start()
            self.running.append(thread)

    def _write(self, n: int) -> None:
        count = 0
        while not self.stopping.is_set():
            try:
                self.made.append(self.archive.add(f"写入{n}-{count}"))
            except BaseException as exc:  # noqa: BLE001 — reported by stop()
                self.failures.append(exc)
                return
            count += 1

    def wait_for(self, total: int) -> None:
        for _ in range(6000):
            if len(self.made) >= total or self.failures:
                return
            threading.Event().wait(0.01)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.running:
            thread.join(timeout=30)
        assert not self.failures, self.failures


def table_rows(url: str) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every row (column → value) of every engine table and alembic_version, by primary key."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            rows: dict[str, dict[Any, dict[str, Any]]] = {}
            for table in Base.metadata.sorted_tables:
                assert table.name in present, table.name
                keys = [c.name for c in table.primary_key.columns]
                rows[table.name] = {tuple(getattr(r, k) for k in keys): dict(r._mapping)
                                    for r in connection.execute(select(table))}
            rows["alembic_version"] = {r[0]: {"version_num": r[0]}
                                       for r in connection.exec_driver_sql("SELECT version_num FROM alembic_version")}
            return rows
    finally:
        engine.dispose()


def dangan_env(url: str, definitions: Path, var: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DANGAN_DATABASE_URL": url, "DANGAN_DEFINITIONS": str(definitions), "DANGAN_VAR": str(var),
            "DANGAN_BACKUP_DIR": str(var / "backups"), "PYTHONUNBUFFERED": "1", **extra}
