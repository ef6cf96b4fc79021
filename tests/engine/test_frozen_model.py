"""The compiled model stays frozen: the validator's plan is built with the form, and field types never reach up."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from engine.loader import load_definitions
from engine.spec import FormSpec
from engine.validation import clean_record
from tests.engine.helpers import compile_form
from tests.support import DEFINITIONS

ENGINE = Path(__file__).resolve().parents[2] / "engine"
FORM = """
key: f
title: 表
sections:
  - key: main
    title: 主要
    fields:
      - {key: name, label: 姓名, type: text, required: true, max_length: 4}
      - {key: kind, label: 类别, type: choice, options: [甲, 乙]}
      - key: note
        label: 说明
        type: text
        required_if: "kind == '乙'"
      - key: members
        label: 成员
        type: table
        columns:
          - {key: who, label: 姓名, type: text, required: true, max_length: 2}
"""


@pytest.fixture
def form(tmp_path: Path) -> FormSpec:
    return compile_form(tmp_path, FORM)


def test_plan__built_with_the_form(form: FormSpec) -> None:
    assert [step.key for step in form.plan.steps] == list(form.fields)
    assert [step.key for step in form.plan.conditional] == ["name", "note"]


def test_plan__no_run_time_cache_on_the_spec(form: FormSpec) -> None:
    assert not hasattr(form, "derived")
    clean_record(form, {"name": "张三"})
    assert [f.name for f in dataclasses.fields(form) if isinstance(getattr(form, f.name), dict)] == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        form.plan = None  # type: ignore[misc]


def test_plan__copy_with_other_fields_has_its_own(form: FormSpec) -> None:
    extra = dataclasses.replace(form.fields["name"], key="nickname", label="昵称", required=True)
    copy = dataclasses.replace(form, fields=MappingProxyType({**form.fields, "nickname": extra}))
    assert [step.key for step in copy.plan.steps][-1] == "nickname"
    assert "nickname" in {i.path for i in clean_record(copy, {"name": "张三"}).issues}
    assert "nickname" not in {i.path for i in clean_record(form, {"name": "张三"}).issues}


def test_table_cells__cleaned_by_their_column_spec(form: FormSpec) -> None:
    issues = clean_record(form, {"name": "张三", "members": [{"who": "王小明"}, {"who": ""}]}).issues
    assert {(i.code, i.path) for i in issues} == {("max_length", "members.0.who")}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("module", sorted(p.name for p in (ENGINE / "fields").glob("*.py")))
def test_field_types__never_import_the_validator(module: str) -> None:
    """Even inside a function: the arrows run from the validator to the types, never back."""
    assert not {m for m in _imports(ENGINE / "fields" / module) if m.startswith("engine.validation")}


def _module_containers(path: Path) -> list[str]:
    """Module-level names bound to a mutable container: state a process would fill at run time."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        mutable = isinstance(value, (ast.Dict, ast.List, ast.Set)) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in {"dict", "list", "set"})
        found += [t.id for t in targets if mutable and isinstance(t, ast.Name)]
    return found


def test_workflow_service__keeps_nothing_per_process() -> None:
    assert _module_containers(ENGINE / "workflows" / "service.py") == []


def test_workflow_target__compiled_with_its_effect_fields_writable() -> None:
    definitions = load_definitions(DEFINITIONS)
    student = definitions.forms["student"]
    graduate = definitions.workflows["graduate"]
    assert student.fields["status"].readonly
    assert not graduate.target.fields["status"].readonly
    # Exactly the readonly fields its on_approve writes (set: status; compute: the graduation fields).
    written = ["status", "graduation_date", "graduation_destination", "next_school"]
    assert [k for k in student.fields if student.fields[k].readonly != graduate.target.fields[k].readonly] == written
    # The same object on every look: nothing is rebuilt per decision.
    assert definitions.workflows["graduate"].target is graduate.target
    with pytest.raises(dataclasses.FrozenInstanceError):
        graduate.target = student  # type: ignore[misc]


def test_workflow_target__is_the_form_itself_when_nothing_is_readonly() -> None:
    definitions = load_definitions(DEFINITIONS)
    change_info = definitions.workflows["change_info"]
    written = set(change_info.effects.set) | set(change_info.changes)
    assert not any(definitions.forms["student"].fields[k].readonly for k in written)
    assert change_info.target is definitions.forms["student"]
