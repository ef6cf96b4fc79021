"""The DB fixtures themselves: PostgreSQL schema isolation and SQLite files."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import pg_admin_url
from tests.support import REPO


def _create_and_roundtrip(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        t = sa.Table(
            "infra_probe",
            meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50), nullable=False),
        )
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(t.insert().values(name="学生档案"))
        with engine.connect() as conn:
            assert conn.execute(sa.select(t.c.name)).scalar_one() == "学生档案"
        meta.drop_all(engine)
    finally:
        engine.dispose()


def test_pg_search_path_isolation(pg_url: str) -> None:
    schema = make_url(pg_url).query["options"].removeprefix("-csearch_path=")
    assert schema.startswith("t_")

    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("select current_schema()")).scalar_one() == schema
            conn.execute(sa.text("create table isolation_probe (id integer primary key)"))
            conn.execute(sa.text("insert into isolation_probe values (1)"))
        # Unqualified name resolved in the schema; visible in information_schema there.
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "select table_schema from information_schema.tables "
                    "where table_name = 'isolation_probe'"
                )
            ).scalars().all()
            assert found == [schema]
            assert sa.inspect(conn).get_table_names() == ["isolation_probe"]
        # Not visible through the plain URL's default (public) schema.
        admin = sa.create_engine(pg_admin_url())
        try:
            with admin.connect() as conn:
                assert "isolation_probe" not in sa.inspect(conn).get_table_names()
                assert "isolation_probe" in sa.inspect(conn).get_table_names(schema=schema)
        finally:
            admin.dispose()
        with engine.begin() as conn:
            conn.execute(sa.text("drop table isolation_probe"))
    finally:
        engine.dispose()


def test_sqlite_url_is_a_file(sqlite_url: str) -> None:
    url = make_url(sqlite_url)
    assert url.get_backend_name() == "sqlite"
    assert url.database and url.database.endswith("dangan.db")
    _create_and_roundtrip(sqlite_url)
    assert Path(url.database).is_file()


def test_db_url_both_backends(db_url: str) -> None:
    _create_and_roundtrip(db_url)


def test_fresh_db_url_is_empty(fresh_db_url: str) -> None:
    engine = sa.create_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()
    _create_and_roundtrip(fresh_db_url)


def test_two_processes_upgrading_a_new_database_at_once__both_succeed(fresh_db_url: str, tmp_path: Path) -> None:
    """`dangan serve` and a command (or another server) starting on a new database both create the tables: one
    waits for the other and then finds them made; neither fails on "alembic_version already exists"."""
    import subprocess
    import sys
    import time

    go = tmp_path / "go"
    script = ("import pathlib, sys, time\n"
              "from engine.storage.db import Database\n"
              "database = Database(sys.argv[1], checkpoint=False)\n"
              "while not pathlib.Path(sys.argv[2]).exists():\n"
              "    time.sleep(0.002)\n"
              "database.upgrade()\n")
    processes = [subprocess.Popen([sys.executable, "-c", script, fresh_db_url, str(go)], cwd=REPO,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    time.sleep(3)  # every process imported and waiting at the line
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], errors
    engine = sa.create_engine(fresh_db_url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() >= 1
    finally:
        engine.dispose()


def test_head_revision_constant_is_alembics_head() -> None:
    """`upgrade` skips alembic for a database at HEAD_REVISIONS: they must be the migrations' heads."""
    from alembic.script import ScriptDirectory

    from engine.storage.db import HEAD_REVISIONS, alembic_config

    assert set(ScriptDirectory.from_config(alembic_config()).get_heads()) == HEAD_REVISIONS


def test_upgrade_of_an_older_database__still_migrates(fresh_db_url: str) -> None:
    """A database one revision behind is not taken for one at head: alembic runs and brings it to the heads."""
    from alembic import command

    from engine.storage.db import HEAD_REVISIONS, Database, alembic_config, at_head

    db = Database(fresh_db_url)
    try:
        db.upgrade()
        assert at_head(db.engine)
        config = alembic_config()
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0020")  # the newest migration undone
        assert not at_head(db.engine)
        db.upgrade()
        with db.engine.connect() as connection:
            assert {r[0] for r in connection.exec_driver_sql("SELECT version_num FROM alembic_version")} == HEAD_REVISIONS
    finally:
        db.dispose()
