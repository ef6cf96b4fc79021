"""Reads a definitions directory once: parse → check_shape → compile → frozen `Definitions`."""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.certificates.compiler import compile_certificates
from engine.compiler import (
    FormCompiler, Problems, check_links, compile_options, compile_org_levels, compile_role, create_blockers,
)
from engine.errors import DefinitionErrors
from engine.expressions import ExpressionCompiler
from engine.reports.compiler import compile_dashboards, compile_reports
from engine.metaschema import FORM, OPTIONS, ORG, ROLE
from engine.spec import Definitions, OrgLevel, Origin
from engine.definition_files import display_path, read_definition_files
from engine.workflows.compiler import compile_workflows
from engine.yaml_source import key_origin, load_yaml

DEFAULT_LEVELS = (OrgLevel("unit", "单位"),)
log = logging.getLogger("dangan.definitions")
log.addHandler(logging.NullHandler())  # the application decides where warnings go; `dangan check` prints them


def _read_all(directory: Path, pattern: str, schema: dict, problems: Problems,
              rejected: list[Any] | None = None) -> list[tuple[str, Any]]:
    return [(f.shown, f.data) for f in read_definition_files(directory, pattern, schema, problems, rejected)]


def _unique_keys(items: list[tuple[str, Any]], what: str, problems: Problems) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for shown, data in items:
        key = data["key"]
        if key in result:
            problems.add(key_origin(data, "key"), f"重复的{what}键“{key}”", f"已在 {result[key].origin.path} 中定义")
            continue
        result[key] = data
    return result


def load_definitions(directory: str | os.PathLike) -> Definitions:
    """Compile a definitions directory, or raise DefinitionErrors listing every problem found."""
    root = Path(directory)
    problems = Problems()
    if not root.is_dir():
        problems.add(Origin(str(directory), 1, 1), "定义目录不存在", "用 DANGAN_DEFINITIONS 指向包含 forms/ 和 roles/ 的目录")
        raise DefinitionErrors(problems)

    # Taken before compiling: if a file changes meanwhile, the next reload sees other bytes and a new version, so a
    # cache keyed by the version (principals, rendered forms) never keeps what an older file produced.
    version = files_version(root)
    org_files = _read_all(root, "org.yaml", ORG, problems)
    option_files = _read_all(root, "options/*.yaml", OPTIONS, problems)
    rejected: list[Any] = []
    form_files = _read_all(root, "forms/*.yaml", FORM, problems, rejected)
    role_files = _read_all(root, "roles/*.yaml", ROLE, problems)
    if any(problem.syntax for problem in problems):
        # A file that cannot be read says nothing about what it defines: every form, option list or level it
        # holds would come back as "unknown" wherever another file names it. Report what stopped the reading
        # alone; the cross-references are checked once every file reads.
        raise DefinitionErrors(problems)

    levels = compile_org_levels(org_files[0][1], problems) if org_files else DEFAULT_LEVELS
    level_keys = tuple(level.key for level in levels)

    option_data = _unique_keys(option_files, "选项列表", problems)
    options = {key: compile_options(data) for key, data in option_data.items()}

    expressions = ExpressionCompiler()
    forms, declared = {}, {}
    for key, data in _unique_keys(form_files, "表单", problems).items():
        compiler = FormCompiler(data, options, level_keys, expressions, problems)
        spec = compiler.compile()
        declared[key] = compiler.declared
        if spec is not None:
            forms[key] = spec
    check_links(forms, declared, problems)
    # A form whose file failed its shape check is still declared: roles naming it get no second error.
    declared.update({data["key"]: set() for data in rejected if isinstance(data.get("key"), str) and data["key"] not in declared})
    if not forms and not problems:
        problems.add(Origin(display_path(root / "forms"), 1, 1), "没有任何表单定义", "在 forms/ 下添加至少一个 .yaml 文件")

    roles = {}
    warnings = Problems()
    for key, data in _unique_keys(role_files, "角色", problems).items():
        roles[key] = compile_role(data, forms, level_keys, problems, declared)
        warnings.extend(create_blockers(data, roles[key], forms))

    definitions = Definitions(
        forms=MappingProxyType(forms), roles=MappingProxyType(roles), options=MappingProxyType(options),
        org_levels=levels, source_dir=str(root.resolve()),
    )
    # Workflows refer to forms, roles and org levels, so they compile last, in the same pass.
    workflows = compile_workflows(root, definitions, expressions, problems)
    certificates = compile_certificates(root, definitions, workflows, expressions, problems)
    reports = compile_reports(root, definitions, problems)
    dashboards = compile_dashboards(root, definitions, reports, problems)
    if problems:
        raise DefinitionErrors(problems)
    for warning in warnings:
        log.warning("%s", warning)
    return replace(definitions, workflows=MappingProxyType(workflows), certificates=MappingProxyType(certificates),
                   reports=MappingProxyType(reports), dashboards=MappingProxyType(dashboards),
                   version=version, warnings=tuple(warnings))


def files_version(root: Path) -> str:
    """A digest of every byte of every definition file and of its path: a change to any of them, a role's mask or a
    comment alike, is a new version. Paths are relative, so a copy of the directory has the same version."""
    hashed = hashlib.sha256()
    for file in sorted(f for f in root.rglob("*") if f.is_file() and not any(p.startswith(".") for p in f.relative_to(root).parts)):
        content = file.read_bytes()
        hashed.update(f"{file.relative_to(root).as_posix()}\0{len(content)}\0".encode())
        hashed.update(content)
    return hashed.hexdigest()[:12]


def demo_units(directory: str | os.PathLike) -> list[Any]:
    """The org tree to seed an empty database with (already checked by `load_definitions`)."""
    path = Path(directory) / "org.yaml"
    if not path.exists():
        return []
    data, _ = load_yaml(path.read_text(encoding="utf-8"), str(path))
    return list(data.get("demo_units", [])) if isinstance(data, dict) else []
