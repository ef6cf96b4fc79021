"""Workflow versions: the source each application started with is stored, and old versions compile on demand."""
from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session as DbSession

from engine.errors import DefinitionErrors
from engine.spec import Definitions
from engine.storage.models import WorkflowVersion
from engine.workflows.compiler import compile_source
from engine.workflows.errors import VersionBroken
from engine.workflows.spec import WorkflowSpec

CACHE_SIZE = 64


class VersionCache:
    """Compiled old versions by (version digest, definitions version): a reload recompiles them once."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, str], WorkflowSpec] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> WorkflowSpec | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], spec: WorkflowSpec) -> None:
        with self.lock:
            self.entries[key] = spec
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)


_compiled = VersionCache()


def remember(s: DbSession, spec: WorkflowSpec) -> None:
    """Store this version's source once (concurrent starters may both try; the second insert does nothing)."""
    dialect = s.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    s.execute(insert(WorkflowVersion).values(digest=spec.version, workflow_key=spec.key, path=spec.path, source=spec.source)
              .on_conflict_do_nothing(index_elements=["digest"]))


def spec_for(s: DbSession, definitions: Definitions, key: str, version: str) -> WorkflowSpec:
    """The workflow as it was when the application started: today's spec if unchanged, else its stored source."""
    current = definitions.workflows.get(key)
    if current is not None and current.version == version:
        return current
    cache_key = (version, definitions.version)
    found = _compiled.get(cache_key)
    if found is not None:
        return found
    row = s.get(WorkflowVersion, version)
    if row is None:
        raise VersionBroken(detail=f"找不到版本 {version}")
    try:
        spec = compile_source(row.source, f"{row.path}@{version}", definitions)
    except DefinitionErrors as exc:
        raise VersionBroken(detail=str(exc.errors[0]) if exc.errors else "未知错误") from exc
    _compiled.put(cache_key, spec)
    return spec
