"""The installed `dangan import` as a subprocess on real .xlsx files: preview (--dry-run), then import, on SQLite and
PostgreSQL. Importing web.excel first (as this command does) once failed on a circular import."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from openpyxl import load_workbook
from sqlalchemy import func, select

from engine.messages import MESSAGES
from engine.storage.models import ImportJob

from tests.excel.helpers import new_student, record_by_id_card, xlsx
from tests.support import REPO
from web.state import AppState

DANGAN = REPO / ".venv" / "bin" / "dangan"


def dangan(state: AppState, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DANGAN_DATABASE_URL": state.db.url, "DANGAN_DEFINITIONS": str(state.settings.definitions),
                   "DANGAN_VAR": str(cwd), **env}
    return subprocess.run([str(DANGAN), *args], env=environment, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_import__dry_run_then_import(shared: AppState, tmp_path: Path) -> None:
    rows = [new_student(), new_student(), new_student(民族="火星族")]
    path = tmp_path / "新生.xlsx"
    path.write_bytes(xlsx(rows))

    done = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg", "--dry-run")
    assert done.returncode == 2, done.stderr
    assert "预览" in done.stdout and "新增 2" in done.stdout and "错误 1" in done.stdout
    assert record_by_id_card(shared, rows[0]["身份证号"]) is None
    report = tmp_path / "新生-错误报告.xlsx"
    assert report.is_file()
    sheet = load_workbook(report).worksheets[0]
    assert any("民族" in str(c.value or "") or "火星族" in str(c.value or "") for line in sheet.iter_rows() for c in line)

    done = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg", "--skip-invalid")
    assert done.returncode == 2, done.stderr
    assert "导入（任务" in done.stdout and "新增 2" in done.stdout
    assert record_by_id_card(shared, rows[0]["身份证号"]) is not None
    assert record_by_id_card(shared, rows[2]["身份证号"]) is None


def test_import__all_valid__exit_0(shared: AppState, tmp_path: Path) -> None:
    row = new_student()
    path = tmp_path / "a.xlsx"
    path.write_bytes(xlsx([row]))
    done = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg")
    assert done.returncode == 0, done.stderr
    assert record_by_id_card(shared, row["身份证号"]) is not None


def test_import__file_over_the_size_limit__refused(shared: AppState, tmp_path: Path) -> None:
    path = tmp_path / "a.xlsx"
    path.write_bytes(xlsx([new_student()]) + b"\0" * 2 * 1024 * 1024)
    done = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg", DANGAN_IMPORT_MAX_MB="1")
    assert done.returncode == 1
    assert "文件被拒绝" in done.stderr


def test_import__header_only__no_data_rows_and_no_job(shared: AppState, tmp_path: Path) -> None:
    path = tmp_path / "空.xlsx"
    path.write_bytes(xlsx([[None] * 3, [" "]]))
    with shared.db.read() as s:
        before = s.scalar(select(func.count()).select_from(ImportJob))
    done = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg")
    assert done.returncode == 1
    assert MESSAGES["import_no_data_rows"].format(row=1) in done.stderr
    with shared.db.read() as s:
        assert s.scalar(select(func.count()).select_from(ImportJob)) == before


def test_import__all_or_nothing_refused__says_nothing_was_imported_first(shared: AppState, tmp_path: Path) -> None:
    rows = [new_student(), new_student(民族="火星族")]
    path = tmp_path / "b.xlsx"
    path.write_bytes(xlsx(rows))
    done = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg")
    assert done.returncode == 2, done.stderr
    result = next(line for line in done.stdout.splitlines() if line.startswith("导入（任务"))
    assert "没有导入任何数据" in result and "，新增 1" not in result and "可新增 1" in result
    assert record_by_id_card(shared, rows[0]["身份证号"]) is None


def test_import__on_a_database_no_server_has_opened(fresh_db_url: str, tmp_path: Path) -> None:
    """An administrator sets up the org tree and a user with commands and imports before ever running `dangan serve`:
    the command makes the projection tables itself (it failed with "no such table: p_student")."""
    env = {**os.environ, "DANGAN_DATABASE_URL": fresh_db_url, "DANGAN_DEFINITIONS": str(REPO / "definitions"),
           "DANGAN_VAR": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(DANGAN), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    assert run("org-apply", "--yes").returncode == 0
    made = run("create-user", "--username", "reg1", "--role", "registrar", "--unit", "示范区教育局/示范区第一中学",
               "--password", "Kq7#vLm2-Abc1")
    assert made.returncode == 0, made.stderr
    path = tmp_path / "新生.xlsx"
    path.write_bytes(xlsx([new_student(), new_student()]))
    done = run("import", "student", str(path), "--user", "reg1")
    assert done.returncode == 0, done.stderr
    assert "导入（任务" in done.stdout and "新增 2" in done.stdout
