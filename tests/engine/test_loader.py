"""Definition errors are located at `path:line:column`, explained in Chinese, and reported all at once."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from engine.loader import load_definitions
from tests.engine.helpers import ORG, SMALL_FORM, assert_definition, definition_errors, locate, write_definitions
from tests.support import DEFINITIONS
from web.cli import main as dangan


def form_with(fields: str, extra: str = "") -> str:
    """A form `t` whose one section holds `fields` (YAML list items indented by six spaces)."""
    return f"key: t\ntitle: 测试\n{extra}sections:\n  - key: main\n    title: 主要\n    fields:\n{fields}"


# --- YAML itself --------------------------------------------------------------------------------

def test_yaml_syntax_error__located(tmp_path: Path) -> None:
    form = form_with("      - key: name\n        label: 姓名: 张三\n        type: text\n")
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, ': 张三')}: YAML 语法错误：这里不能出现“: ”（提示：值中含有冒号加空格时，请用引号",
    ])


def test_yaml_unclosed_quote__names_where_it_opened(tmp_path: Path) -> None:
    form = 'key: t\ntitle: "测试\nsections: []\n'
    (error,) = assert_definition(tmp_path, form=form, errors__count=1, errors__contains=["forms/t.yaml:4:1: YAML 语法错误"])
    assert f"开始于第 {locate(form, chr(34) + '测试').replace(':', ' 行第 ')} 列" in error


def test_duplicate_key__located_at_second_key(tmp_path: Path) -> None:
    form = "key: t\ntitle: 测试\ntitle:\n  其他\n" + SMALL_FORM.split("title: 测试\n", 1)[1]
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'title', nth=2)}: 重复的键“title”（提示：第一次出现在第 2 行）",
    ])


def test_top_level_not_a_mapping__error(tmp_path: Path) -> None:
    assert_definition(tmp_path, form="- key: t\n", errors__count=1, errors__contains=[
        "forms/t.yaml:1:1: 文件的顶层应为键值映射",
    ])


# --- shape (meta-schema) ------------------------------------------------------------------------

def test_unknown_top_level_key__located_at_key_with_hint(tmp_path: Path) -> None:
    form = SMALL_FORM.replace("title: 测试\n", "title: 测试\ntitel: 学生\n", 1)
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'titel')}: 不认识的键“titel”（提示：是不是“title”？）",
    ])


def test_missing_required_key__error(tmp_path: Path) -> None:
    form = "key: t\nsections: []\n"
    errors = assert_definition(tmp_path, form=form, errors__contains=["forms/t.yaml:1:1: 缺少必填的键“title”"])
    assert any("“sections”不能为空" in e for e in errors)


def test_bad_identifier__error_with_hint(tmp_path: Path) -> None:
    form = SMALL_FORM.replace("key: name", "key: Name")
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'Name')}: “Name”不是合法的标识符（提示：只用小写英文字母",
    ])


def test_wrong_value_type__error(tmp_path: Path) -> None:
    form = SMALL_FORM + "        required: 是的\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, '是的')}: “required”应为true/false",
    ])


# --- fields ---------------------------------------------------------------------------------------

def test_unknown_field_type__error_with_hint(tmp_path: Path) -> None:
    form = SMALL_FORM.replace("type: text", "type: txt")
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'txt')}: 未知的字段类型“txt”（提示：是不是“text”？）",
    ])


def test_param_of_another_type__located_at_key(tmp_path: Path) -> None:
    form = form_with("      - key: born\n        label: 出生日期\n        type: date\n        max_length: 10\n")
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'max_length')}: 类型 date（日期）的字段不支持“max_length”（提示：该类型可用：max、min）",
    ])


def test_misspelt_field_key__located_at_key_with_hint(tmp_path: Path) -> None:
    form = SMALL_FORM + "        min_lenght: 2\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'min_lenght')}: 不认识的键“min_lenght”（提示：是不是“min_length”？）",
    ])


def test_bad_regex__error(tmp_path: Path) -> None:
    form = SMALL_FORM + "        pattern: '[a-'\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, chr(39) + '[a-')}: 正则表达式无效：",
    ])


def test_unknown_option_list__located_at_options(tmp_path: Path) -> None:
    form = form_with("      - key: grade\n        label: 年级\n        type: choice\n        options: grades\n")
    assert_definition(tmp_path, form=form, options={"grade": "key: grade\noptions: [高一, 高二]\n"}, errors__count=1,
                      errors__contains=[f"forms/t.yaml:{locate(form, 'grades')}: 字段“grade”的参数有误：未知的选项列表“grades”"])


def test_shared_option_list__ok(tmp_path: Path) -> None:
    form = form_with("      - key: grade\n        label: 年级\n        type: choice\n        options: grade\n")
    assert_definition(tmp_path, form=form, options={"grade": "key: grade\noptions: [高一, {value: '2', label: 高二}]\n"})
    assert [o.label for o in load_definitions(tmp_path).forms["t"].fields["grade"].kind.options] == ["高一", "高二"]


def test_duplicate_field_key__error_names_first_line(tmp_path: Path) -> None:
    form = SMALL_FORM + "      - key: name\n        label: 又一个姓名\n        type: text\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'name', nth=2)}: 重复的字段键“name”（提示：第一次定义在第 {locate(form, 'name').split(':')[0]} 行）",
    ])


def test_bad_default_value__error(tmp_path: Path) -> None:
    form = form_with("      - key: year\n        label: 年份\n        type: integer\n        default: 二〇二四\n")
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, '二〇二四')}: 默认值“二〇二四”对字段“year”无效（提示：错误代码：integer）",
    ])


def test_default_value__converted(tmp_path: Path) -> None:
    form = form_with("      - key: year\n        label: 年份\n        type: integer\n        default: '2024'\n")
    assert_definition(tmp_path, form=form)
    assert load_definitions(tmp_path).forms["t"].fields["year"].default == 2024


def test_generated_pattern_unknown_field__error(tmp_path: Path) -> None:
    form = SMALL_FORM + "      - key: code\n        label: 编号\n        type: generated\n        pattern: '{nmae}{seq:3}'\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'code')}: 编号规则引用了不存在的字段“nmae”（提示：是不是“name”？）",
    ])


# --- conditions and rules -------------------------------------------------------------------------

def test_unknown_field_in_condition__error(tmp_path: Path) -> None:
    form = SMALL_FORM + "      - key: note\n        label: 说明\n        type: text\n        visible_if: \"nmae == '张三'\"\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, chr(34) + 'nmae')}: 表达式引用了不存在的字段“nmae”（提示：是不是“name”？）",
    ])


def test_unknown_field_in_condition__reported_beside_a_broken_field_with_a_similar_name(tmp_path: Path) -> None:
    # `d` fails to compile; the condition's own mistake (`nod`) is still reported.
    form = form_with("      - key: d\n        label: D\n        type: dat\n"
                     "      - key: e\n        label: E\n        type: text\n        visible_if: \"nod == '1'\"\n")
    errors = assert_definition(tmp_path, form=form, errors__count=2, errors__contains=[
        f"forms/t.yaml:{locate(form, 'dat')}: 未知的字段类型“dat”",
        f"forms/t.yaml:{locate(form, chr(34) + 'nod')}: 表达式引用了不存在的字段“nod”",
    ])
    assert errors[0].startswith(f"forms/t.yaml:{locate(form, 'dat')}")


def test_condition_on_broken_field__not_reported_twice(tmp_path: Path) -> None:
    form = form_with("      - key: d\n        label: D\n        type: dat\n"
                     "      - key: e\n        label: E\n        type: text\n        visible_if: \"d == '1'\"\n")
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=["未知的字段类型“dat”"])


def test_condition_not_boolean__error(tmp_path: Path) -> None:
    form = form_with("      - key: gender\n        label: 性别\n        type: choice\n        options: [男, 女]\n"
                     "      - key: note\n        label: 说明\n        type: text\n        visible_if: gender\n")
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'gender', nth=2)}: 表达式的结果应为“是/否”，实际得到 str",
    ])


def test_condition_in_braces__error_with_hint(tmp_path: Path) -> None:
    form = SMALL_FORM + "      - key: note\n        label: 说明\n        type: text\n        required_if: \"{{ name == '张三' }}\"\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, chr(34) + '{{')}: 表达式不要用 {{{{ }}}} 或 {{% %}} 包起来（提示：直接写 name == '张三'）",
    ])


def test_condition_empty__error(tmp_path: Path) -> None:
    form = SMALL_FORM + "      - key: note\n        label: 说明\n        type: text\n        visible_if: ' '\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, chr(39) + ' ')}: 表达式不能为空",
    ])


def test_condition_syntax_error__error(tmp_path: Path) -> None:
    form = SMALL_FORM + "      - key: note\n        label: 说明\n        type: text\n        visible_if: \"name = '张三'\"\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, chr(34) + 'name =')}: 表达式语法错误",
    ])


def test_rule_referencing_unknown_field__error(tmp_path: Path) -> None:
    form = SMALL_FORM + "rules:\n  - key: r\n    check: \"nickname != name\"\n    message: 昵称不能与姓名相同\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, chr(34) + 'nickname')}: 表达式引用了不存在的字段“nickname”",
    ])


def test_rule_fields_unknown__error(tmp_path: Path) -> None:
    form = SMALL_FORM + "rules:\n  - key: r\n    check: \"name != '无名'\"\n    message: 请填写真实姓名\n    fields: [name, nmae]\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'nmae')}: “fields”引用了不存在的字段“nmae”（提示：是不是“name”？）",
    ])


# --- list, title, unit ---------------------------------------------------------------------------

def test_list_column_unknown__located_at_item(tmp_path: Path) -> None:
    form = SMALL_FORM + "list:\n  columns:\n    - name\n    - nmae\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'nmae')}: “columns”引用了不存在的字段“nmae”（提示：是不是“name”？）",
    ])


def test_list_sort_unknown__error(tmp_path: Path) -> None:
    form = SMALL_FORM + "list:\n  sort: -nmae\n"
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, '-nmae')}: “sort”引用了不存在的字段“nmae”",
    ])


def test_title_field_unknown__error(tmp_path: Path) -> None:
    form = SMALL_FORM.replace("sections:", "title_field: title\nsections:")
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'title', nth=3)}: “title_field”引用了不存在的字段“title”",
    ])


def test_unknown_org_level_in_form_unit__error_with_hint(tmp_path: Path) -> None:
    form = SMALL_FORM.replace("sections:", "unit:\n  level: klass\nsections:")
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'klass')}: 未知的组织层级“klass”（提示：是不是“class”？）",
    ])


# --- roles and org ----------------------------------------------------------------------------------

ROLE = "key: r\nname: 角色\nscope: school\nforms:\n  t:\n    actions: [read]\n"


def test_role_unknown_form__error_with_hint(tmp_path: Path) -> None:
    role = ROLE.replace("  t:", "  tt:")
    assert_definition(tmp_path, form=SMALL_FORM, roles={"r": role}, errors__count=1, errors__contains=[
        f"roles/r.yaml:{locate(role, 'tt')}: 未知的表单“tt”（提示：是不是“t”？）",
    ])


def test_role_unknown_field__located_at_item(tmp_path: Path) -> None:
    role = ROLE + "    hidden:\n      - name\n      - nmae\n"
    assert_definition(tmp_path, form=SMALL_FORM, roles={"r": role}, errors__count=1, errors__contains=[
        f"roles/r.yaml:{locate(role, 'nmae')}: 表单“t”没有字段“nmae”（提示：是不是“name”？）",
    ])


def test_role_unknown_scope__error_with_choices(tmp_path: Path) -> None:
    role = ROLE.replace("scope: school", "scope: schools")
    assert_definition(tmp_path, form=SMALL_FORM, roles={"r": role}, errors__count=1, errors__contains=[
        f"roles/r.yaml:{locate(role, 'schools')}: 未知的数据范围“schools”（提示：是不是“school”？）",
    ])


def test_role_unknown_action__error_with_hint(tmp_path: Path) -> None:
    role = ROLE.replace("[read]", "[read, updte]")
    assert_definition(tmp_path, form=SMALL_FORM, roles={"r": role}, errors__count=1, errors__contains=[
        f"roles/r.yaml:{locate(role, 'updte')}: 取值“updte”无效（提示：是不是“update”？）",
    ])


def test_role_naming_a_broken_form__no_second_error(tmp_path: Path) -> None:
    form = SMALL_FORM.replace("title: 测试\n", "title: 测试\ntitel: 学生\n", 1)
    assert_definition(tmp_path, form=form, roles={"r": ROLE}, errors__count=1, errors__contains=["不认识的键“titel”"])


def test_org_unknown_level_in_demo_units__error(tmp_path: Path) -> None:
    org = ORG + "demo_units:\n  - name: 示范区\n    level: distric\n"
    assert_definition(tmp_path, form=SMALL_FORM, org=org, errors__count=1, errors__contains=[
        f"org.yaml:{locate(org, 'distric' + chr(10))}: 未知的组织层级“distric”（提示：是不是“district”？）",
    ])


def test_duplicate_form_key_across_files__error(tmp_path: Path) -> None:
    errors = assert_definition(tmp_path, forms={"a": SMALL_FORM, "b": SMALL_FORM}, errors__count=1,
                               errors__contains=["forms/b.yaml:1:6: 重复的表单键“t”"])
    assert "forms/a.yaml" in errors[0]


# --- all at once ------------------------------------------------------------------------------------

def test_several_errors_in_several_files__all_reported_sorted(tmp_path: Path) -> None:
    student = SMALL_FORM.replace("type: text", "type: txt") + "list:\n  columns: [nmae]\n"
    award = SMALL_FORM.replace("key: t", "key: a").replace("title: 测试", "title: 奖励\ntitle: 重复")
    role = ROLE.replace("scope: school", "scope: planet") + "    masked: [ghost]\n"
    options = {"o": "key: o\noptions: []\n"}
    errors = assert_definition(tmp_path, forms={"student": student, "award": award}, roles={"r": role}, options=options,
                               errors__count=6, errors__contains=[
                                   "forms/award.yaml:3:1: 重复的键“title”",
                                   f"forms/student.yaml:{locate(student, 'txt')}: 未知的字段类型“txt”",
                                   # `name` failed to compile, so `nmae` gets no "did you mean" hint but is still reported
                                   f"forms/student.yaml:{locate(student, 'nmae')}: “columns”引用了不存在的字段“nmae”",
                                   "options/o.yaml:2:10: “options”不能为空",
                                   f"roles/r.yaml:{locate(role, 'planet')}: 未知的数据范围“planet”",
                                   f"roles/r.yaml:{locate(role, 'ghost')}: 表单“t”没有字段“ghost”",
                               ])
    keys = [(e.split(":")[0], int(e.split(":")[1]), int(e.split(":")[2])) for e in errors]
    assert keys == sorted(keys)


# --- the shipped definitions and `dangan check` -------------------------------------------------------

def test_shipped_definitions__load() -> None:
    definitions = load_definitions(DEFINITIONS)
    assert {"student", "award"} <= set(definitions.forms)
    assert {"sysadmin", "registrar", "head_teacher", "teacher", "bureau"} <= set(definitions.roles)


def test_check_command__errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    student = SMALL_FORM.replace("type: text", "type: txt")
    write_definitions(tmp_path, forms={"student": student}, roles={"r": ROLE.replace("scope: school", "scope: planet")})
    assert dangan(["check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [str(e) for e in _errors(tmp_path)]
    assert "未知的字段类型“txt”" in out and "未知的数据范围“planet”" in out
    assert "共 2 处错误" in err


def test_check_command__summary_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(DEFINITIONS, tmp_path / "definitions")
    assert dangan(["check", str(tmp_path / "definitions")]) == 0
    out, _ = capsys.readouterr()
    definitions = load_definitions(tmp_path / "definitions")
    assert out.startswith("定义检查通过：")
    assert f"{len(definitions.forms)} 个表单" in out and f"{len(definitions.roles)} 个角色" in out
    assert definitions.version in out


def _errors(root: Path) -> list[str]:
    return [os.path.relpath(root) + os.sep + line for line in definition_errors(root)]


# --- issue 15 item 23: syntax errors alone and in Chinese; hints that name the real mistake ----------------------

def test_yaml_syntax_error__in_chinese_without_english(tmp_path: Path) -> None:
    form = form_with("      - key: name\n        label: 姓名\n\ttype: text\n")
    (error,) = assert_definition(tmp_path, form=form, errors__count=1, errors__contains=["forms/t.yaml:"])
    assert "YAML 语法错误：缩进中有制表符（Tab）" in error
    assert not {"found", "token", "character", "expected"} & set(error.replace("（", " ").split())


def test_yaml_syntax_error__follow_on_errors_suppressed(tmp_path: Path) -> None:
    broken = SMALL_FORM.replace("title: 测试", "title: 测试: 二", 1)
    role = ROLE + "  award:\n    actions: [read]\n"
    errors = assert_definition(tmp_path, forms={"t": broken, "award": SMALL_FORM.replace("key: t", "key: award", 1)},
                               roles={"r": role}, errors__count=1, errors__contains=["forms/t.yaml:2:10: YAML 语法错误"])
    assert not any("未知的表单" in e for e in errors)


def test_yaml_syntax_error_in_options__no_unknown_list_errors(tmp_path: Path) -> None:
    form = form_with("      - key: grade\n        label: 年级\n        type: choice\n        options: grade\n")
    assert_definition(tmp_path, form=form, options={"grade": "key: grade\noptions: [高一, 高二\n"}, errors__count=1,
                      errors__contains=["options/grade.yaml:3:1: YAML 语法错误：应为“,”或“]”，却出现了文件结尾（这个方括号列表开始于第 2 行"])


def test_unknown_option_list__did_you_mean(tmp_path: Path) -> None:
    form = form_with("      - key: grade\n        label: 年级\n        type: choice\n        options: grades\n")
    assert_definition(tmp_path, form=form, options={"grade": "key: grade\noptions: [高一, 高二]\n"}, errors__count=1,
                      errors__contains=["未知的选项列表“grades”（提示：是不是“grade”？）"])


def test_unknown_function__reported_as_function_listing_the_available(tmp_path: Path) -> None:
    form = form_with("      - key: score\n        label: 分数\n        type: decimal\n"
                     "      - key: note\n        label: 说明\n        type: text\n        visible_if: 'floor(score) > 60'\n")
    (error,) = assert_definition(tmp_path, form=form, errors__count=1, errors__contains=["表达式调用了不存在的函数“floor()”"])
    assert "可用函数：" in error and "age()" in error and "不存在的字段" not in error


@pytest.mark.parametrize("limit", ["2010-03-05", "'2010-03-05'", "today"])
def test_date_limit__quoted_or_not(tmp_path: Path, limit: str) -> None:
    form = form_with(f"      - key: born\n        label: 出生日期\n        type: date\n        min: {limit}\n")
    assert_definition(tmp_path, form=form)


def test_date_limit__unquoted_date_compiled_as_date(tmp_path: Path) -> None:
    form = form_with("      - key: born\n        label: 出生日期\n        type: date\n        min: 2010-03-05\n")
    write_definitions(tmp_path, forms={"t": form})
    spec = load_definitions(tmp_path).forms["t"].fields["born"]
    assert [(i.code, dict(i.params)) for i in spec.clean("2010-03-04")[1]] == [("min_value", {"limit": "2010-03-05"})]


def test_date_limit__nonsense_refused_with_hint(tmp_path: Path) -> None:
    form = form_with("      - key: born\n        label: 出生日期\n        type: date\n        max: yesterday\n")
    assert_definition(tmp_path, form=form, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(form, 'yesterday')}: 日期界限“max”应写成 2010-03-05 或 today，而不是“yesterday”",
    ])


# --- issue 15 item 24: a renamed field's old key points at the new one -------------------------------------------

RENAMED = form_with("      - key: name\n        label: 姓名\n        type: text\n"
                    "      - key: phone_number\n        label: 电话\n        type: text\n        renamed_from: tel\n",
                    extra="list:\n  columns: [name, tel]\n")


def test_renamed_field__list_naming_old_key_hints_new_key(tmp_path: Path) -> None:
    assert_definition(tmp_path, form=RENAMED, errors__count=1, errors__contains=[
        f"forms/t.yaml:{locate(RENAMED, 'tel]')}: “columns”引用了不存在的字段“tel”（提示：字段已改名为“phone_number”",
    ])


def test_renamed_field__role_naming_old_key_hints_new_key(tmp_path: Path) -> None:
    form = RENAMED.replace("list:\n  columns: [name, tel]\n", "")
    role = ROLE + "    hidden: [tel]\n"
    assert_definition(tmp_path, form=form, roles={"r": role}, errors__count=1, errors__contains=[
        "表单“t”没有字段“tel”（提示：字段已改名为“phone_number”",
    ])


# --- issue 15 item 22: a role that may create a form but cannot fill a required field ------------------------------

SENSITIVE = form_with("      - key: name\n        label: 姓名\n        type: text\n        required: true\n"
                      "      - key: number\n        label: 学籍号\n        type: text\n        required: true\n        sensitive: true\n")
CREATOR = "key: r\nname: 班主任\nscope: school\nforms:\n  t:\n    actions: [create, read]\n"


def test_sensitive_required__warning_at_the_role_not_an_error(tmp_path: Path) -> None:
    assert_definition(tmp_path, form=SENSITIVE, roles={"r": CREATOR})
    (warning,) = load_definitions(tmp_path).warnings
    assert str(warning).startswith(f"{os.path.relpath(tmp_path)}/roles/r.yaml:{locate(CREATOR, 't:')}: 警告：角色“班主任”可以新建“测试”，"
                                   "但不能填写必填字段“学籍号”（敏感字段，而该角色没有 reveal_sensitive: true）")
    assert warning.hint == "给该角色加上 reveal_sensitive: true"


@pytest.mark.parametrize("policy", ["    reveal_sensitive: true\n", ""])
def test_sensitive_required__no_warning_when_revealed_or_not_created(tmp_path: Path, policy: str) -> None:
    role = CREATOR + policy if policy else CREATOR.replace("[create, read]", "[read, update]")
    assert_definition(tmp_path, form=SENSITIVE, roles={"r": role})
    assert load_definitions(tmp_path).warnings == ()


def test_required_hidden_from_star_policy__warned_per_form(tmp_path: Path) -> None:
    role = "key: r\nname: 录入员\nscope: school\nforms:\n  '*':\n    actions: [create]\n    hidden: [name]\n"
    assert_definition(tmp_path, form=SENSITIVE, roles={"r": role})
    reasons = sorted(str(w).split("（")[1].split("）")[0] for w in load_definitions(tmp_path).warnings)
    assert reasons == ["在该角色的 hidden 中", "敏感字段，而该角色没有 reveal_sensitive: true"]


def test_check_command__prints_warning_and_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_definitions(tmp_path, forms={"t": SENSITIVE}, roles={"r": CREATOR})
    assert dangan(["check", str(tmp_path)]) == 0
    out, _ = capsys.readouterr()
    assert "警告：角色“班主任”可以新建“测试”" in out.splitlines()[0]
    assert out.splitlines()[1].startswith("定义检查通过：") and "1 处警告" in out
