"""A workflow refusal that reaches no page of its own (a stored workflow version that no longer compiles, met deep in
a service) is answered with its message and its status, never a 500."""
from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient

from engine.reports.service import ReportService
from engine.workflows.errors import VersionBroken
from tests.support import SCHOOL, add_user, build, login


def test_workflow_error_anywhere__its_message_not_a_500(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app, state = build(f"sqlite:///{tmp_path / 'd.db'}", tmp=tmp_path)
    add_user(state, "reg", "registrar", SCHOOL)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise VersionBroken(detail="找不到版本 v0")

    try:
        with TestClient(app=app, base_url="http://testserver.local") as client:
            login(client, "reg")
            monkeypatch.setattr(ReportService, "dashboard_for", broken)
            page = client.get("/")
            assert page.status_code == VersionBroken.status
            assert VersionBroken(detail="找不到版本 v0").message in page.text
    finally:
        state.db.dispose()
