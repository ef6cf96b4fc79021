"""The compiled model stays frozen: the validator's plan is built with the form, and field types never reach up."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from engine.spec import FormSpec
from engine.validation import clean_record
from tests.engine.helpers import compile_form

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
