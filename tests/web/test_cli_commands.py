"""Every subcommand of the installed `dangan` starts: `--help` of each, run as the user runs it.

What each command does is tested on real files where it lives (check: test_cli_definitions.py, create-user and
reload: test_reload.py, unlock-user: test_sign_in.py, backup/restore: tests/ops/test_backup_cli.py,
verify-certificate: tests/certificates/test_cli.py, serve: test_serving.py); this one catches a command that no
longer starts at all, e.g. a module that cannot be imported. `import` is Excel's (tests/excel)."""
from __future__ import annotations

import argparse
import subprocess

import pytest

from tests.support import REPO
from web.cli import parser

DANGAN = REPO / ".venv" / "bin" / "dangan"


def _commands() -> list[str]:
    found = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(found.choices)


def test_every_command__is_listed_in_the_top_level_help() -> None:
    done = subprocess.run([str(DANGAN), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(command in done.stdout for command in _commands())


@pytest.mark.parametrize("command", [c for c in _commands() if c != "import"])
def test_command__starts(command: str) -> None:
    done = subprocess.run([str(DANGAN), command, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: dangan {command}")
