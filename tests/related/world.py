"""Definitions that exist only in these tests: a parent form (pupil), a form to link to (exam) and a child form
(mark) with a link, computed fields and figures across records — nothing of the shipped definitions."""
from __future__ import annotations

from tests.engine.helpers import ORG

PUPIL = """
key: pupil
title: 学员
title_field: name
natural_key: [code]
list:
  columns: [code, name]
  search: [name, code]
sections:
  - key: main
    title: 基本
    fields:
      - {key: code, label: 编号, type: text, required: true, unique: true}
      - {key: name, label: 姓名, type: text, required: true}
"""
EXAM = """
key: exam
title: 测验
title_field: name
unit: {level: school}
list:
  columns: [name]
sections:
  - key: main
    title: 测验
    fields:
      - {key: name, label: 名称, type: text, required: true, unique: true}
"""
MARK = """
key: mark
title: 得分
belongs_to: pupil
title_field: exam
list:
  columns: [pupil, exam, total, class_rank, school_rank, class_avg]
  filters: [exam]
  sort: -total
sections:
  - key: main
    title: 得分
    fields:
      - {key: pupil, label: 学员, type: link, form: pupil, required: true}
      - {key: exam, label: 测验, type: link, form: exam, required: true}
      - {key: a, label: 甲, type: decimal, places: 1}
      - {key: b, label: 乙, type: decimal, places: 1}
      - {key: total, label: 合计, type: decimal, places: 1, compute: "sum(a, b)"}
grid: {rows: pupil, fixed: [exam], columns: [a, b]}
figures:
  - {key: class_rank, label: 班内名次, rank: total, within: [exam, class]}
  - {key: school_rank, label: 校内名次, rank: total, within: [exam, school]}
  - {key: class_avg, label: 班平均, avg: total, within: [exam, class]}
  - {key: class_best, label: 班最高, max: total, within: [exam, class]}
  - {key: pass_rate, label: 及格率, pass_rate: total, at_least: 120, within: [exam, class]}
"""
ADMIN = "key: admin\nname: 管理员\nscope: all\nadmin: true\nforms:\n  '*':\n    actions: [create, read, update, delete, import]\n"
TEACHER = """
key: teacher
name: 教师
scope: class
forms:
  pupil: {actions: [read]}
  exam: {actions: [read], scope: school}
  mark: {actions: [create, read, update, delete, import, export]}
"""
SHY = """
key: shy
name: 看不到分数的人
scope: all
forms:
  pupil: {actions: [read]}
  mark: {actions: [read], hidden: [a, b, total]}
"""
UNITS = ORG + """
demo_units:
  - name: 区
    level: district
    children:
      - name: 一校
        level: school
        children:
          - {name: 一班, level: class}
          - {name: 二班, level: class}
      - name: 二校
        level: school
        children:
          - {name: 甲班, level: class}
"""
FORMS = {"pupil": PUPIL, "exam": EXAM, "mark": MARK}
ROLES = {"admin": ADMIN, "teacher": TEACHER, "shy": SHY}
