"""The installed `dangan check` and `dangan reload` as subprocesses: warnings, and one pid file per port."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.browser_fixtures import DANGAN, DEFINITIONS, REPO, _free_port, _wait_healthy, stop_process
from tests.engine.helpers import write_definitions

FORM = """
key: award
title: 奖惩记录
sections:
  - key: main
    title: 奖惩
    fields:
      - {key: student_no, label: 学籍号, type: text, required: true, sensitive: true}
      - {key: title, label: 名称, type: text, required: true}
"""
ROLE = "key: head_teacher\nname: 班主任\nscope: all\nforms:\n  award:\n    actions: [create, read]\n"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(DANGAN), *args], env=env or dict(os.environ), cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def test_check__warns_about_a_role_that_cannot_fill_a_required_sensitive_field(tmp_path: Path) -> None:
    root = write_definitions(tmp_path / "definitions", forms={"award": FORM}, roles={"head_teacher": ROLE})
    done = run("check", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    first, summary = done.stdout.splitlines()
    assert first.endswith("roles/head_teacher.yaml:5:3: 警告：角色“班主任”可以新建“奖惩记录”，但不能填写必填字段“学籍号”"
                          "（敏感字段，而该角色没有 reveal_sensitive: true），因此无法新建任何记录（提示：给该角色加上 reveal_sensitive: true）")
    assert summary.startswith("定义检查通过：") and summary.endswith("1 处警告")


def test_check__shipped_definitions_without_warnings() -> None:
    done = run("check", str(DEFINITIONS))
    assert done.returncode == 0 and "警告" not in done.stdout, done.stdout


def test_two_servers_from_one_checkout__own_pid_files_reload_by_port(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    servers = []
    try:
        for number in range(2):
            env = {**os.environ, "DANGAN_VAR": str(var), "DANGAN_DEFINITIONS": str(DEFINITIONS), "PYTHONUNBUFFERED": "1",
                   "DANGAN_DATABASE_URL": f"sqlite:///{tmp_path / f'db{number}.sqlite'}"}
            port, log = _free_port(), tmp_path / f"server{number}.log"
            with log.open("wb") as out:
                process = subprocess.Popen([str(DANGAN), "serve", "--port", str(port), "--workers", "1"], env=env,
                                           cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            servers.append((process, port, log, env))
            _wait_healthy(f"http://127.0.0.1:{port}", process, log)
        for process, port, _log, _env in servers:
            assert (var / f"dangan-{port}.pid").read_text() == str(process.pid)

        _, port, log, env = servers[1]
        done = run("reload", "--port", str(port), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"端口 {port}" in done.stdout
        deadline = time.monotonic() + 20
        while "定义已重新加载" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "定义已重新加载" in log.read_text(errors="replace")
        assert "定义已重新加载" not in servers[0][2].read_text(errors="replace")

        missing = run("reload", "--port", str(_free_port()), env=env)
        assert missing.returncode == 1 and "--port" in missing.stderr
    finally:
        for process, *_ in servers:
            stop_process(process, timeout=30)
