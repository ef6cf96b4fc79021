"""Report and dashboard files are compiled like forms: every mistake located at file:line:column in Chinese, with
a hint; `dangan check` reports them."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine.loader import load_definitions
from tests.browser_fixtures import DANGAN, REPO
from tests.engine.helpers import definition_errors, locate, yaml_text
from tests.support import copy_definitions


def _with_report(tmp_path: Path, text: str, folder: str = "reports") -> Path:
    root = copy_definitions(tmp_path / "definitions")
    (root / folder / "t.yaml").write_text(yaml_text(text), encoding="utf-8")
    return root


def _errors(tmp_path: Path, text: str, folder: str = "reports") -> list[str]:
    return definition_errors(_with_report(tmp_path, text, folder))


def test_shipped_reports__compile() -> None:
    definitions = load_definitions(REPO / "definitions")
    assert {"students_grade_gender", "students_by_school", "completeness_student"} <= set(definitions.reports)
    assert {"school", "district"} <= set(definitions.dashboards)


REPORT = """
key: t
title: 测试报表
form: student
rows: gendr
"""


def test_unknown_field__located_with_hint(tmp_path: Path) -> None:
    assert _errors(tmp_path, REPORT) == [f"reports/t.yaml:{locate(REPORT, 'gendr')}: 表单“学生档案”没有字段“gendr”（提示：是不是“gender”？）"]


@pytest.mark.parametrize(("text", "needle", "message"), [
    ("key: t\ntitle: T\nform: studnt\nrows: gender\n", "studnt", "未知的表单“studnt”（提示：是不是“student”？）"),
    ("key: t\ntitle: T\nform: student\nrows: id_card\n", "id_card", "字段“身份证号”是敏感字段，不能作为报表的分组（提示：报表只按非敏感字段分组）"),
    ("key: t\ntitle: T\nform: student\nrows: {level: shcool}\n", "{level", "未知的组织层级“shcool”（提示：是不是“school”？）"),
    ("key: t\ntitle: T\nform: student\nrows: birth_date\n", "birth_date", "日期字段“出生日期”须写按年还是按月分组（提示：加上 by: year、by: term（学期）或 by: month）"),
    ("key: t\ntitle: T\nform: student\nrows: gender\nfilters:\n  status: 在校\n", "在校", "字段“学籍状态”的筛选值“在校”无效"),
    ("key: t\ntitle: T\nform: student\nrows: gender\nmeasures:\n  - {avg: name}\n", "{avg", "平均须用数字字段，“姓名”是"),
    ("key: t\ntitle: T\nform: student\nrows: gender\nmeasures:\n  - {rate: enrol_year}\n", "{rate", "达标率（rate）须写达标的分数"),
    ("key: t\ntitle: T\nform: student\nrows: {field: enrol_year, bands: [80, 60]}\n", "{field", "bands 的分段点应从小到大排列且不重复"),
    ("key: t\ntitle: T\nform: student\nrows: gender\nchart: pies\n", "pies", "取值“pies”无效（提示：是不是“pie”？）"),
    ("key: t\ntitle: T\nform: student\nrows: gender\nroles: [bureu]\n", "bureu", "未知的角色“bureu”（提示：是不是“bureau”？）"),
])
def test_mistakes__located(tmp_path: Path, text: str, needle: str, message: str) -> None:
    errors = _errors(tmp_path, text)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"reports/t.yaml:{locate(text, needle)}: {message}"), errors


def test_dashboard_unknown_report__located(tmp_path: Path) -> None:
    text = "key: t\ntitle: T\nroles: [registrar]\ncharts: [students_grade_gendr]\n"
    errors = _errors(tmp_path, text, "dashboards")
    assert errors == [f"dashboards/t.yaml:{locate(text, 'students_grade_gendr')}: 未知的报表“students_grade_gendr”"
                      "（提示：是不是“students_grade_gender”？）"]


@pytest.mark.parametrize(("card", "needle", "message"), [
    ("{label: X, form: student, current: {field: gender, period: month}}", "gender",
     "字段“性别”不是日期字段，不能按本月/本年计数（提示：写日期字段，例如 birth_date"),
    ("{label: X, form: student, current: {field: brith_date, period: month}}", "brith_date",
     "表单“学生档案”没有字段“brith_date”（提示：是不是“birth_date”？）"),
])
def test_dashboard_card_current_period__mistakes_located(tmp_path: Path, card: str, needle: str, message: str) -> None:
    text = f"key: t\ntitle: T\nroles: [registrar]\ncards:\n  - {card}\n"
    errors = _errors(tmp_path, text, "dashboards")
    assert len(errors) == 1 and errors[0].startswith(f"dashboards/t.yaml:{locate(text, needle)}: {message}"), errors


def test_dangan_check__reports_a_broken_report(tmp_path: Path) -> None:
    root = _with_report(tmp_path, REPORT)
    done = subprocess.run([str(DANGAN), "check", str(root)], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))
    assert done.returncode != 0
    assert f"reports/t.yaml:{locate(REPORT, 'gendr')}: 表单“学生档案”没有字段“gendr”" in done.stdout + done.stderr
