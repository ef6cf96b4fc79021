"""SQLite: snapshots through the online backup API, and restores that replace the target in one write transaction."""
from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from engine.backup.counting import count_rows, revision_of
from engine.backup.manifest import BackupError, Counts
from engine.storage.db import BUSY_TIMEOUT_MS


@dataclass(frozen=True)
class Contents:
    counts: Counts
    revision: str


def snapshot(database: Path, copy: Path) -> Contents:
    """Copy the live database into `copy` and count the copy.

    sqlite3's backup with pages=-1 copies every page in one step under one read transaction, so the copy is one
    consistent moment even while the server writes (WAL: the writers do not wait for it). In several steps a write
    in between would restart it. Counting the copy, not the source, makes the manifest describe exactly the copy."""
    if not database.is_file():
        raise BackupError(f"找不到 SQLite 数据库文件 {database}")
    with closing(sqlite3.connect(database, timeout=BUSY_TIMEOUT_MS / 1000)) as source, \
            closing(sqlite3.connect(copy)) as target:
        source.backup(target)
        # One self-contained file in the archive, without a -wal beside it.
        target.execute("PRAGMA journal_mode=DELETE")
    return contents(copy, check=False)


def contents(path: Path, check: bool = True) -> Contents:
    """Counts and revision of a database file that nobody else uses (a copy). `check`: run SQLite's integrity check
    first (every page, every index against its table), for a file read back from an archive; a damaged file raises
    BackupError."""
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            problems = connection.exec_driver_sql("PRAGMA integrity_check").scalars().all() if check else ["ok"]
            if problems != ["ok"]:
                raise BackupError(f"SQLite 数据库文件已损坏：{'；'.join(str(p) for p in problems[:3])}")
            return Contents(count_rows(connection), revision_of(connection))
    except (DBAPIError, sqlite3.DatabaseError) as exc:
        raise BackupError(f"不是可读的 SQLite 数据库文件：{exc}") from exc
    finally:
        engine.dispose()


def present(database: Path) -> Counts | None:
    """What the restore target holds now; None when there is no database file yet."""
    if not database.exists() or database.stat().st_size == 0:
        return None
    engine = create_engine(f"sqlite:///{database}", poolclass=NullPool,
                           connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    try:
        with engine.connect() as connection:
            return count_rows(connection)
    except (DBAPIError, sqlite3.DatabaseError) as exc:
        raise BackupError(f"目标 {database} 不是可读的 SQLite 数据库（{exc}），没有做任何更改") from exc
    finally:
        engine.dispose()


def restore(staging: Path, database: Path, expected: Counts) -> None:
    """Replace `database` with the verified `staging` copy.

    The backup API writes the whole copy into the target in one write transaction: a failure (or a crash) leaves the
    target as it was, and connections that have the target open see the old or the new database, never a mix. An
    os.replace of the file would leave open connections on the old inode and a stale -wal beside the new file."""
    database.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(staging)) as source, \
            closing(sqlite3.connect(database, timeout=BUSY_TIMEOUT_MS / 1000)) as target:
        try:
            target.execute("PRAGMA journal_mode=WAL")  # as the app opens it; a new file starts out in rollback mode
            source.backup(target)
        except sqlite3.Error as exc:
            raise BackupError(f"写入 {database} 失败，目标数据库没有改变：{exc}") from exc
    found = contents(database, check=False).counts  # the copy was checked whole before it was written here
    if found != expected:
        raise BackupError(f"恢复后的行数与备份清单不符：{found.summary()}；清单：{expected.summary()}")
