"""Mistakes in links, child forms and figures are reported once, at their file:line:column, in Chinese, with a hint."""
from __future__ import annotations

from pathlib import Path

from tests.engine.helpers import assert_definition, locate
from tests.related.world import EXAM, MARK, PUPIL

FIGURES_BAD = MARK.replace("""  - {key: class_best, label: 班最高, max: total, within: [exam, class]}""",
                           """  - {key: class_best, label: 班最高, max: exam, within: [exam, class]}
  - {key: both, label: 两种, rank: total, avg: total}
  - {key: odd, label: 分组错, rank: total, within: [exam, classs]}
  - {key: a, label: 重名, rank: total}
  - {key: nopass, label: 及格率, pass_rate: total}""")


def test_figure_mistakes_are_located(tmp_path: Path) -> None:
    assert_definition(tmp_path, forms={"pupil": PUPIL, "exam": EXAM, "mark": FIGURES_BAD}, errors__count=5, errors__contains=[
        f"forms/mark.yaml:{locate(FIGURES_BAD, 'exam, within: [exam, class]}' + chr(10) + '  - {key: both')}: 统计项“class_best”只能统计数字字段（integer、decimal），“exam”是 link",
        f"forms/mark.yaml:{locate(FIGURES_BAD, '{key: both')}: 统计项“both”须写且只写一种",
        f"forms/mark.yaml:{locate(FIGURES_BAD, 'classs')}: within 引用了不存在的字段或组织层级“classs”（提示：是不是“class”？）",
        f"forms/mark.yaml:{locate(FIGURES_BAD, 'a, label: 重名')}: 统计项的键“a”与字段重名",
        f"forms/mark.yaml:{locate(FIGURES_BAD, '{key: nopass')}: 达标率“nopass”需要 at_least",
    ])


def test_belongs_to_must_name_a_required_link(tmp_path: Path) -> None:
    not_link = MARK.replace("belongs_to: pupil", "belongs_to: a")
    assert_definition(tmp_path, forms={"pupil": PUPIL, "exam": EXAM, "mark": not_link}, errors__count=1, errors__contains=[
        f"forms/mark.yaml:{locate(not_link, 'a' + chr(10) + 'title_field')}: belongs_to 须是关联字段（type: link），“a”是 decimal"])


def test_a_link_to_an_unknown_form_is_reported_with_a_hint(tmp_path: Path) -> None:
    unknown = MARK.replace("form: exam", "form: exams")
    errors = assert_definition(tmp_path, forms={"pupil": PUPIL, "exam": EXAM, "mark": unknown}, errors__count=1)
    assert "exams" in errors[0] and "exam" in errors[0].split("exams", 1)[1], errors
