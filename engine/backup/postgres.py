"""PostgreSQL: pg_dump of the app's schema in one exported snapshot; a restore that psql runs as one transaction.

The backup: a REPEATABLE READ transaction exports its snapshot, counts every table in it, and pg_dump dumps from that
same snapshot (--snapshot), so the manifest's counts describe exactly what the dump holds while the server goes on
writing. pg_dump takes only ACCESS SHARE locks, which no save or approval waits for.

The restore: pg_restore writes the archive as an SQL script (it cannot put objects into another schema than the one
they were dumped from) and psql runs it inside one transaction that we open and close around it: the target schema is
renamed aside, the script creates the backed-up schema afresh, a DO block compares every count with the manifest,
then the new schema takes the target's name and the old one is dropped, and only then COMMIT. Any failure (a
refused statement, a count that differs, pg_restore stopping half-way) ends in ROLLBACK: the target is untouched.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable

from psycopg.conninfo import make_conninfo
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from engine.backup.counting import count_rows, revision_of
from engine.backup.manifest import BackupError, Counts, Manifest
from engine.backup.sqlite import Contents

CHUNK = 1 << 20
LOCK_WAIT = "60s"  # how long pg_dump, or the restore's swap, waits for another session's table lock before giving up
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")
_COPY = re.compile(r'^COPY (.+) \((.*)\) FROM stdin;$')
_IDENTIFIER = re.compile(r'"((?:[^"]|"")*)"|([^.",\s]+)')
_COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
# Columns whose values the manifest needs from the dump itself: records per form, the schema revision.
_WATCHED = {"records": "form_key", "alembic_version": "version_num"}


@dataclass(frozen=True)
class Tools:
    pg_dump: str
    pg_restore: str
    psql: str


def tools(pg_bin: Path | None) -> Tools:
    """The client programs, from `pg_bin` (DANGAN_PG_BIN) or PATH."""
    found = {}
    for name in ("pg_dump", "pg_restore", "psql"):
        path = str(pg_bin / name) if pg_bin else shutil.which(name)
        if not path or not os.access(path, os.X_OK):
            where = f"目录 {pg_bin} 中" if pg_bin else "PATH 中"
            raise BackupError(f"{where}找不到 {name}：请安装 PostgreSQL 客户端（Debian：apt-get install "
                              "postgresql-client），或用 DANGAN_PG_BIN 指向与服务器同版本或更新的客户端的 bin 目录")
        found[name] = path
    return Tools(**found)


def client_major(program: str) -> int:
    done = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    match = _VERSION.search(done.stdout)
    if match is None:
        raise BackupError(f"无法识别 {program} 的版本：{done.stdout.strip() or done.stderr.strip()}")
    return int(match[1])


@dataclass(frozen=True)
class Libpq:
    """How the client programs reach the database: a conninfo string, and the password in their environment
    only (a command line is visible to every user of the machine)."""

    conninfo: str
    env: dict[str, str]


def libpq(url: str) -> Libpq:
    parsed = make_url(url)
    params = {"host": parsed.host, "port": parsed.port, "user": parsed.username, "dbname": parsed.database}
    params.update({key: value if isinstance(value, str) else value[-1] for key, value in parsed.query.items()})
    env = {**os.environ, "PGAPPNAME": "dangan-backup"}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return Libpq(make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None}), env)


def _engine(url: str) -> Engine:
    """One short-lived connection at a time, outside any pool of the server's."""
    return create_engine(url, poolclass=NullPool)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --- backup -------------------------------------------------------------------------------------------------------
def snapshot(url: str, dump: Path, pg_bin: Path | None) -> tuple[Contents, dict[str, object]]:
    """Dump the URL's schema into `dump` (pg_dump's custom format) and count it, both in one snapshot."""
    programs = tools(pg_bin)
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                # The exported snapshot lives as long as this transaction, which waits idle for pg_dump meanwhile.
                connection.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                snapshot_id = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
                schema, server = _schema_and_server(connection)
                found = Contents(count_rows(connection), revision_of(connection))
                client = client_major(programs.pg_dump)
                if client < server // 10000:
                    raise BackupError(f"pg_dump 的版本（{client}）低于数据库服务器（{server // 10000}），无法备份："
                                      "请安装同版本或更新的 PostgreSQL 客户端，并用 DANGAN_PG_BIN 指向它的 bin 目录")
                target = libpq(url)
                _run([programs.pg_dump, "--format=custom", f"--schema={quote(schema)}", "--no-owner", "--no-privileges",
                      f"--snapshot={snapshot_id}", f"--lock-wait-timeout={LOCK_WAIT}", f"--file={dump}",
                      f"--dbname={target.conninfo}"], target.env, "pg_dump")
    except DBAPIError as exc:
        raise BackupError(f"连接或读取 PostgreSQL 失败：{exc.orig}") from exc
    finally:
        engine.dispose()
    return found, {"schema": schema, "server_version": server, "pg_dump_version": client}


def _schema_and_server(connection: Connection) -> tuple[str, int]:
    schema = connection.exec_driver_sql("SELECT current_schema()").scalar_one()
    if schema is None:
        raise BackupError("数据库连接的 search_path 中没有已存在的 schema：请检查 DANGAN_DATABASE_URL")
    return schema, int(connection.exec_driver_sql("SHOW server_version_num").scalar_one())


def _run(command: list[str], env: dict[str, str], name: str) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{name} 失败：{_errors(done.stderr)}")


def _errors(stderr: str) -> str:
    """The lines that say what went wrong, without psql's "psql:<stdin>:123:" prefixes."""
    lines = [re.sub(r"^psql:[^:]*:\d+: ", "", line) for line in stderr.splitlines()]
    wanted = [line for line in lines if "ERROR" in line or "FATAL" in line or "error" in line] or lines
    return "；".join(line.strip() for line in wanted[:3] if line.strip()) or "（没有错误信息）"


# --- reading a dump back --------------------------------------------------------------------------------------------
def dump_contents(dump: Path, pg_bin: Path | None) -> Contents:
    """The rows a dump holds, counted from its data as pg_restore reads it back (no database needed)."""
    programs = tools(pg_bin)
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([programs.pg_restore, "--data-only", "--file=-", str(dump)],
                                   stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        with process.stdout:
            tables, watched = count_copy_data(process.stdout)
        if process.wait() != 0:
            errors.seek(0)
            raise BackupError(f"pg_restore 读不了备份中的数据库：{_errors(errors.read().decode(errors='replace'))}")
    by_form: dict[str, int] = {}
    for key in watched.get("records", []):
        by_form[key] = by_form.get(key, 0) + 1
    return Contents(Counts(tables, by_form), ",".join(sorted(watched.get("alembic_version", []))))


def count_copy_data(lines: Iterable[bytes]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Rows per table in a script's COPY blocks (one line per row: COPY's text format escapes newlines), and the
    values of the _WATCHED columns."""
    tables: dict[str, int] = {}
    watched: dict[str, list[str]] = {}
    current, column = "", -1
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if not current:
            header = _COPY.match(line)
            if header:
                current = _identifiers(header[1])[-1]
                columns = _identifiers(header[2])
                tables[current] = 0
                wanted = _WATCHED.get(current)
                column = columns.index(wanted) if wanted in columns else -1
                if column >= 0:
                    watched[current] = []
            continue
        if line == "\\.":
            current = ""
            continue
        tables[current] += 1
        if column >= 0:
            watched[current].append(_copy_value(line.split("\t")[column]))
    return tables, watched


def _identifiers(text_: str) -> list[str]:
    return [plain or quoted.replace('""', '"') for quoted, plain in _IDENTIFIER.findall(text_)]


def _copy_value(raw: str) -> str:
    return re.sub(r"\\(.)", lambda m: _COPY_ESCAPES.get(m[1], m[1]), raw)


# --- restore ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    schema: str
    counts: Counts
    schemas: frozenset[str]  # every schema of the database


def present(url: str) -> Target:
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            schema, _server = _schema_and_server(connection)
            schemas = frozenset(connection.execute(text("SELECT nspname FROM pg_namespace")).scalars())
            return Target(schema, count_rows(connection), schemas)
    except DBAPIError as exc:
        raise BackupError(f"连接或读取 PostgreSQL 失败：{exc.orig}") from exc
    finally:
        engine.dispose()


def restore(url: str, dump: Path, manifest: Manifest, target: Target, pg_bin: Path | None) -> None:
    programs = tools(pg_bin)
    source = str(manifest.postgresql.get("schema", ""))
    if not source:
        raise BackupError("备份清单没有记录 PostgreSQL schema 名称，无法恢复")
    before, after = swap_sql(source, target, f"dangan_restore_{secrets.token_hex(4)}", manifest.counts)
    _run_in_one_transaction(programs, dump, libpq(url), before, after)


def swap_sql(source: str, target: Target, hold: str, counts: Counts) -> tuple[str, str]:
    """What psql runs before pg_restore's script, and after it (before COMMIT).

    The script creates schema `source`, so that name must be free: the target is renamed aside first, and so is
    another schema of that name (the live source, when a backup is restored into another schema of the same database),
    which gets its name back at the end. Renames and drops are transactional: before COMMIT nobody sees any of it."""
    old, aside = f"{hold}_old", f"{hold}_aside"
    moved = source != target.schema and source in target.schemas
    before = [f"ALTER SCHEMA {quote(target.schema)} RENAME TO {quote(old)};"]
    if moved:
        before.append(f"ALTER SCHEMA {quote(source)} RENAME TO {quote(aside)};")
    after = [verify_sql(source, counts), f"SET LOCAL lock_timeout = {literal(LOCK_WAIT)};"]
    if source != target.schema:
        after.append(f"ALTER SCHEMA {quote(source)} RENAME TO {quote(target.schema)};")
    if moved:
        after.append(f"ALTER SCHEMA {quote(aside)} RENAME TO {quote(source)};")
    after.append(f"DROP SCHEMA {quote(old)} CASCADE;")
    return "\n".join(before) + "\n", "\n".join(after) + "\n"


def verify_sql(schema: str, counts: Counts) -> str:
    """A DO block that raises unless `schema` holds exactly `counts` (an exception aborts the transaction)."""
    pairs = [f"{literal(name)}, (SELECT count(*) FROM {quote(schema)}.{quote(name)})" for name in sorted(counts.tables)]
    # jsonb_build_object takes at most 100 arguments; objects are merged with ||.
    tables = " || ".join(f"jsonb_build_object({', '.join(pairs[i:i + 40])})" for i in range(0, len(pairs), 40)) \
        or "'{}'::jsonb"
    by_form = "'{}'::jsonb"
    if "records" in counts.tables:
        by_form = (f"(SELECT coalesce(jsonb_object_agg(form_key, n), '{{}}'::jsonb) FROM (SELECT form_key, count(*) AS n "
                   f"FROM {quote(schema)}.records GROUP BY form_key) AS c)")
    expected = literal(json.dumps(counts.to_json(), ensure_ascii=False))
    return (f"DO $dangan$\nDECLARE found jsonb := jsonb_build_object('tables', {tables}, "
            f"'records_by_form', {by_form});\nBEGIN\n  IF found <> {expected}::jsonb THEN\n"
            f"    RAISE EXCEPTION 'dangan: 恢复出的行数与备份清单不符：%', found;\n  END IF;\nEND\n$dangan$;")


def _run_in_one_transaction(programs: Tools, dump: Path, target: Libpq, before: str, after: str) -> None:
    """psql reads BEGIN, `before`, pg_restore's script, then `after` and COMMIT — or ROLLBACK if pg_restore failed.
    With ON_ERROR_STOP psql quits at the first error, and the server rolls the open transaction back."""
    with tempfile.TemporaryFile() as restore_errors, tempfile.TemporaryFile() as psql_errors:
        psql = subprocess.Popen([programs.psql, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--file=-",
                                 f"--dbname={target.conninfo}"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_errors, env=target.env)
        script = subprocess.Popen([programs.pg_restore, "--no-owner", "--no-privileges", "--file=-", str(dump)],
                                  stdout=subprocess.PIPE, stderr=restore_errors, env=target.env)
        assert psql.stdin is not None and script.stdout is not None
        produced = _pump(script.stdout, psql.stdin, before, after, script)
        code = psql.wait()
        if produced != 0:
            restore_errors.seek(0)
            raise BackupError(f"pg_restore 失败，数据库没有改变：{_errors(restore_errors.read().decode(errors='replace'))}")
        if code != 0:
            psql_errors.seek(0)
            raise BackupError(f"恢复失败，数据库没有改变：{_errors(psql_errors.read().decode(errors='replace'))}")


def _pump(script: IO[bytes], psql: IO[bytes], before: str, after: str, producer: subprocess.Popen) -> int:
    """Feed psql; returns pg_restore's exit code. COMMIT is written only after pg_restore ended well."""
    try:
        with psql:
            psql.write(("BEGIN;\n" + before).encode())
            shutil.copyfileobj(script, psql, CHUNK)
            produced = producer.wait()
            psql.write((after + "COMMIT;\n" if produced == 0 else "ROLLBACK;\n").encode())
    except BrokenPipeError:  # psql stopped at an error and rolled back; its stderr says why
        producer.kill()
        produced = producer.wait()
        # Killed here: psql's error is the one to report. pg_restore's own failure still is.
        return 0 if produced in (0, -signal.SIGKILL) else produced
    finally:
        script.close()
    return produced
