"""org.yaml's unit tree applied to a running system (issue 15 item 21): `dangan org-apply` shows what will be added,
renamed, moved and deleted, never deletes or moves a unit that holds records or users (lists it as kept), applies in
one transaction after confirmation, and moves the tree's version so running servers read it again; reload and
server start warn, naming the command."""
from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from engine.loader import demo_units
from engine.org import all_units, tree_version
from engine.org_apply import apply_org, plan_org
from tests.browser_fixtures import DANGAN
from tests.engine.helpers import principal_of
from tests.ops.support import dangan_env
from tests.support import CLASS_1, CLASS_2, add_user, build, copy_definitions, unit_id, valid_student
from web.state import AppState

GRADE = "示范区教育局/示范区第一中学/高一"
HIGH2 = "示范区教育局/示范区第一中学/高二"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _names(state: AppState) -> set[str]:
    with state.db.read() as s:
        return {u.full_name for u in all_units(s)}


def _student_in(state: AppState, path: str) -> None:
    add_user(state, "reg", "registrar", "示范区教育局/示范区第一中学")
    result = state.records.create(state.definitions.forms["student"], principal_of(state, "reg"),
                                  unit_id(state, path), valid_student())
    assert result.ok, result.issues


@pytest.fixture
def world(fresh_db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    directory = copy_definitions(tmp_path / "definitions")
    _app, state = build(fresh_db_url, definitions=directory, tmp=tmp_path)
    yield directory, state
    state.db.dispose()


def _changed_org(directory: Path) -> None:
    """高一(3)班 added; 高一(2)班 renamed to 高一(二)班; 高二(1)班 moved under 高一 as 高一(5)班; 高二 (then empty) and
    示范区实验小学's tree (holding a user) dropped from org.yaml."""
    org = directory / "org.yaml"
    _edit(org, "              - {name: 高一(2)班, level: class}\n",
          "              - {name: 高一(二)班, level: class, renamed_from: 高一(2)班}\n"
          "              - {name: 高一(3)班, level: class}\n"
          f"              - {{name: 高一(5)班, level: class, renamed_from: {HIGH2}/高二(1)班}}\n")
    _edit(org, "          - name: 高二\n            level: grade\n            children:\n"
               "              - {name: 高二(1)班, level: class}\n", "")
    _edit(org, "      - name: 示范区实验小学\n        level: school\n        children:\n          - name: 一年级\n"
               "            level: grade\n            children:\n              - {name: 一年级(1)班, level: class}\n", "")


def test_plan__lists_added_renamed_moved_deleted_and_kept(world) -> None:  # type: ignore[no-untyped-def]
    directory, state = world
    add_user(state, "t_small", "teacher", "示范区教育局/示范区实验小学/一年级/一年级(1)班")
    _changed_org(directory)
    with state.db.read() as s:
        plan = plan_org(s, demo_units(directory))
    assert [c.path for c in plan.of("add")] == [f"{GRADE}/高一(3)班"]
    assert [(c.old, c.path) for c in plan.of("rename")] == [(CLASS_2, f"{GRADE}/高一(二)班")]
    assert [(c.old, c.path) for c in plan.of("move")] == [(f"{HIGH2}/高二(1)班", f"{GRADE}/高一(5)班")]
    assert [c.path for c in plan.of("delete")] == [HIGH2]
    kept = {c.path: c.reason for c in plan.of("keep")}
    assert set(kept) == {"示范区教育局/示范区实验小学", "示范区教育局/示范区实验小学/一年级",
                         "示范区教育局/示范区实验小学/一年级/一年级(1)班"}
    assert all("1名用户" in reason for reason in kept.values())
    assert plan.pending and "新增 1 个" in plan.counts()
    assert f"{HIGH2}/高二(1)班" in _names(state)  # a plan writes nothing


def test_apply__one_transaction_and_the_running_tree_follows(world) -> None:  # type: ignore[no-untyped-def]
    directory, state = world
    add_user(state, "t_small", "teacher", "示范区教育局/示范区实验小学/一年级/一年级(1)班")
    _student_in(state, CLASS_2)
    renamed_id = unit_id(state, CLASS_2)
    assert f"{GRADE}/高一(3)班" not in {u.full_name for u in state.units()}
    with state.db.read() as s:
        before = tree_version(s)
    _changed_org(directory)
    apply_org(state.db, demo_units(directory))
    names = _names(state)
    assert {f"{GRADE}/高一(3)班", f"{GRADE}/高一(二)班", f"{GRADE}/高一(5)班", "示范区教育局/示范区实验小学/一年级/一年级(1)班"} <= names
    assert CLASS_2 not in names and HIGH2 not in names and f"{HIGH2}/高二(1)班" not in names
    assert unit_id(state, f"{GRADE}/高一(二)班") == renamed_id  # renamed in place: its records stay with it
    with state.db.read() as s:
        assert tree_version(s) == before + 1
        moved = next(u for u in all_units(s) if u.full_name == f"{GRADE}/高一(5)班")
        grade = next(u for u in all_units(s) if u.full_name == GRADE)
    assert moved.path == f"{grade.path}{moved.id}/"
    state.org_tree.CHECK_SECONDS = 0  # the server's cached tree reads the new version at its next look
    assert f"{GRADE}/高一(3)班" in {u.full_name for u in state.units()}
    with state.db.read() as s:
        again = plan_org(s, demo_units(directory))
    assert not again.pending and len(again.of("keep")) == 3


def test_apply__a_unit_with_records_is_neither_moved_nor_deleted(world) -> None:  # type: ignore[no-untyped-def]
    directory, state = world
    _student_in(state, f"{HIGH2}/高二(1)班")
    _changed_org(directory)
    plan = apply_org(state.db, demo_units(directory))
    assert [c.path for c in plan.of("stay")] == [f"{HIGH2}/高二(1)班"] and "1条档案记录" in plan.of("stay")[0].reason
    assert not plan.of("move")
    assert {c.path for c in plan.of("keep")} >= {HIGH2}
    assert f"{HIGH2}/高二(1)班" in _names(state)


def test_reload__warns_once_naming_the_command(world) -> None:  # type: ignore[no-untyped-def]
    directory, state = world
    assert not [n for n in state.reload().notes if "org.yaml" in n]
    _changed_org(directory)
    (note,) = [n for n in state.reload().notes if "org.yaml" in n]
    assert "dangan org-apply" in note and "新增 1 个" in note and "高一(3)班" in note


def test_server_start__warns_naming_the_command(world, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    directory, state = world
    _changed_org(directory)
    with caplog.at_level(logging.WARNING, logger="dangan"):
        _app, again = build(state.db.url, definitions=directory, tmp=directory.parent)
    again.db.dispose()
    warnings = [r.getMessage() for r in caplog.records if "org.yaml" in r.getMessage()]
    assert len(warnings) == 1 and "dangan org-apply" in warnings[0]


def _org_apply(state: AppState, directory: Path, *args: str, answer: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([str(DANGAN), "org-apply", *args], input=answer, capture_output=True, text=True, timeout=120,
                          env=dangan_env(state.db.url, directory, directory.parent / "var"), cwd=directory.parent)


def test_command__preview_then_confirmation(world) -> None:  # type: ignore[no-untyped-def]
    directory, state = world
    add_user(state, "t1", "teacher", CLASS_1)
    _changed_org(directory)

    refused = _org_apply(state, directory, answer="n\n")
    assert refused.returncode == 1, refused.stderr
    assert "新增：1 个" in refused.stdout and f"{GRADE}/高一(3)班" in refused.stdout
    assert f"{CLASS_2} → {GRADE}/高一(二)班" in refused.stdout
    assert "删除（空单位）：4 个" in refused.stdout and "未应用任何更改" in refused.stdout
    assert f"{GRADE}/高一(3)班" not in _names(state)

    done = _org_apply(state, directory, answer="y\n")
    assert done.returncode == 0, done.stderr
    assert "已应用" in done.stdout and f"{GRADE}/高一(3)班" in _names(state)

    again = _org_apply(state, directory, "--yes")
    assert again.returncode == 0 and "一致，无需更改" in again.stdout


def test_command__yes_applies_without_asking(world) -> None:  # type: ignore[no-untyped-def]
    directory, state = world
    _edit(directory / "org.yaml", "              - {name: 高一(2)班, level: class}\n",
          "              - {name: 高一(2)班, level: class}\n              - {name: 高一(9)班, level: class}\n")
    done = _org_apply(state, directory, "--yes")
    assert done.returncode == 0, done.stderr
    assert f"{GRADE}/高一(9)班" in _names(state)


def test_command__invalid_definitions__nothing_changed(world) -> None:  # type: ignore[no-untyped-def]
    directory, state = world
    _edit(directory / "org.yaml", "              - {name: 高一(2)班, level: class}\n",
          "              - {name: 高一(2)班, level: clas}\n")
    done = _org_apply(state, directory, "--yes")
    assert done.returncode == 1 and "clas" in done.stderr and "没有更改组织机构" in done.stderr
