"""Certificate definitions: compiled once into a frozen spec; every mistake located at file:line:column, in Chinese."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.loader import load_definitions
from tests.certificates.support import SHIPPED, definitions_with, errors_of, locate
from tests.support import DEFINITIONS, REPO

PATH = "certificates/graduation.yaml"
QUOTE = '"'  # a quoted value's position is its opening quote


def broken(tmp_path: Path, old: str, new: str) -> tuple[str, list[str]]:
    """The shipped certificate with `old` replaced by `new`: its text and the errors it loads with."""
    assert old in SHIPPED, old
    text = SHIPPED.replace(old, new, 1)
    return text, errors_of(definitions_with(tmp_path / "defs", {"graduation": text}))


def only(errors: list[str], expected: str) -> None:
    assert len(errors) == 1, errors
    assert expected in errors[0], errors


def test_shipped_certificate__compiles() -> None:
    spec = load_definitions(DEFINITIONS).certificates["graduation"]
    assert (spec.form, spec.workflow, spec.batch_level, spec.holder) == ("student", "graduate", "class", "name")
    assert [f.key for f in spec.application_fields] == ["graduation_date"]
    assert spec.batch_form is not None and list(spec.batch_form.fields) == ["graduation_date"]
    assert spec.layout.size_mm == (297.0, 210.0) and spec.layout.seal.endswith("seals/school.png")
    assert spec.layout.text({"name": "张三", "gender": "男", "birth_date": "2008-05-12", "enrol_year": "2023"}) == \
        "学生张三，性别男，2008年5月12日生，于2023年入学，在本校修完规定课程，成绩合格，准予毕业。"


def test_unknown_form__located_with_hint(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "form: student", "form: studnet")
    only(errors, f"{PATH}:{locate(text, 'studnet')}: 未知的表单“studnet”（提示：是不是“student”？）")


def test_unknown_workflow__located(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "workflow: graduate", "workflow: graduation")
    only(errors, f"{PATH}:{locate(text, 'workflow: graduation', offset=10)}: 未知的流程“graduation”（提示：是不是“graduate”？）")


def test_workflow_of_another_form__refused(tmp_path: Path) -> None:
    form = """
    key: other
    title: 其他
    sections:
      - key: main
        title: 主要
        fields:
          - {key: name, label: 姓名, type: text}
    """
    root = definitions_with(tmp_path / "defs", {"graduation": SHIPPED.replace("form: student", "form: other")})
    (root / "forms" / "other.yaml").write_text(form.replace("\n    ", "\n").lstrip(), encoding="utf-8")
    errors = errors_of(root)
    assert any("流程“graduate”办理的是表单“student”，不是证书的表单“other”" in e for e in errors), errors


def test_unknown_record_field__located(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "from: record.gender", "from: record.gendr")
    only(errors, f"{PATH}:{locate(text, 'record.gendr')}: 表单“student”没有字段“gendr”（提示：是不是“gender”？）")


def test_unknown_application_field__located(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "application.graduation_date", "application.graduate_date")
    only(errors, f"{PATH}:{locate(text, 'application.graduate_date')}: 流程“graduate”的申请表没有字段“graduate_date”")


def test_application_field_without_workflow__refused(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "  workflow: graduate\n", "")
    only(errors, f"{PATH}:{locate(text, 'application.graduation_date')}: application.<字段> 需要 issue.workflow")


def test_bad_source__explained(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "from: record.name", "from: name")
    only(errors, f"{PATH}:{locate(text, 'name}')}: “name”的写法不对（提示：写成 record.<字段> 或 application.<申请表字段>")


def test_photo_as_a_field__refused(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "from: record.gender", "from: record.photo")
    only(errors, f"{PATH}:{locate(text, 'record.photo')}: 字段“照片”（图片）不能印在证书上")


def test_unknown_role__located(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "revoke: [registrar, bureau]", "revoke: [registrar, bureu]")
    only(errors, f"{PATH}:{locate(text, 'bureu')}: 未知的角色“bureu”（提示：是不是“bureau”？）")


def test_unknown_batch_level__located(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "batch: class", "batch: klass")
    only(errors, f"{PATH}:{locate(text, 'klass')}: 未知的组织层级“klass”（提示：是不是“class”？）")


def test_when_not_boolean__located(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "when: \"status == '毕业'\"", "when: \"status\"")
    only(errors, f"{PATH}:{locate(text, QUOTE + 'status')}: 表达式的结果应为“是/否”")


def test_number_without_sequence__refused(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, '"{year}{school_no}{seq:2}"', '"{year}{school_no}"')
    only(errors, f"{PATH}:{locate(text, QUOTE + '{year}')}: 证书编号须含序号 {{seq:N}}")


def test_number_with_sensitive_field__refused(tmp_path: Path) -> None:
    text = SHIPPED.replace('"{year}{school_no}{seq:2}"', '"{year}{student_no}{seq:2}"').replace(
        "  - {key: school_no, label: 学号, from: record.school_no}\n",
        "  - {key: school_no, label: 学号, from: record.school_no}\n  - {key: student_no, label: 学籍号, from: record.student_no}\n")
    errors = errors_of(definitions_with(tmp_path / "defs", {"graduation": text}))
    only(errors, f"{PATH}:{locate(text, QUOTE + '{year}{student_no}')}: 证书编号不能包含敏感字段“学籍号”")


def test_number_with_unknown_field_or_odd_text__refused(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, '"{year}{school_no}{seq:2}"', '"{year}/{schoolno}{seq:2}"')
    assert len(errors) == 2, errors
    assert any("证书编号中的“/”只能由字母、数字和“-”组成" in e for e in errors)
    assert any("证书编号引用了不存在的证书字段“schoolno”（提示：是不是“school_no”？）" in e for e in errors)


def test_text_with_unknown_name__located(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "{{ name }}，性别", "{{ nmae }}，性别")
    only(errors, f"{PATH}:{locate(text, '|')}: 证书文字引用了不存在的值“nmae”（提示：是不是“name”？）")


def test_text_syntax_error__located(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "{{ name }}，性别", "{{ name }，性别")
    only(errors, f"{PATH}:{locate(text, '|')}: 证书文字的模板语法错误")


def test_text_private_attribute__refused(tmp_path: Path) -> None:
    _text, errors = broken(tmp_path, "{{ name }}，性别", "{{ name.__class__ }}，性别")
    only(errors, "证书文字不能访问以下划线开头的内部属性")


def test_text_sandboxed__unsafe_call_refused_at_load(tmp_path: Path) -> None:
    # str.format can reach attributes the sandbox hides: the sample rendering at load meets the refusal, not a user.
    _text, errors = broken(tmp_path, "{{ name }}，性别", "{{ '{0.__class__}'.format(name) }}，性别")
    only(errors, "证书文字无法生成")


def test_photo_not_an_image__located(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "photo: photo", "photo: name")
    only(errors, f"{PATH}:{locate(text, 'photo: name', offset=7)}: 照片须是图片字段（type: image），“姓名”是单行文本")


def test_seal_missing_or_outside__located(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "seal: certificates/seals/school.png", "seal: certificates/seals/nope.png")
    only(errors, f"{PATH}:{locate(text, 'certificates/seals/nope.png')}: 找不到文件“certificates/seals/nope.png”")
    _text, errors = broken(tmp_path / "2", "seal: certificates/seals/school.png", "seal: ../../etc/passwd")
    only(errors, "文件“../../etc/passwd”不在定义目录中")


def test_seal_not_an_image__refused(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "seal: certificates/seals/school.png", "seal: org.yaml")
    only(errors, f"{PATH}:{locate(text, 'org.yaml')}: 印章须是 PNG 或 JPEG 图片")


def test_unknown_key_and_paper__shape_errors(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "  paper: A4\n", "  paper: A6\n  colour: red\n")
    assert len(errors) == 2, errors
    assert f"{PATH}:{locate(text, 'A6')}: 取值“A6”无效" in "\n".join(errors)
    assert f"{PATH}:{locate(text, 'colour')}: 不认识的键“colour”" in "\n".join(errors)


def test_holder_not_a_field__refused(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "holder: name", "holder: full_name")
    only(errors, f"{PATH}:{locate(text, 'full_name')}: holder 应是证书字段之一，没有“full_name”")


def test_duplicate_and_reserved_field_keys__refused(tmp_path: Path) -> None:
    text, errors = broken(tmp_path, "{key: graduation_date, label: 毕业日期", "{key: title, label: 毕业日期")
    only(errors, f"{PATH}:{locate(text, 'title, label')}: 证书字段不能叫“title”")
    text, errors = broken(tmp_path / "2", "{key: graduation_date, label: 毕业日期", "{key: name, label: 毕业日期")
    only(errors, f"{PATH}:{locate(text, 'name, label: 毕业日期')}: 重复的证书字段“name”")


def test_dangan_check__reports_certificate_errors(tmp_path: Path) -> None:
    text = SHIPPED.replace("form: student", "form: studnet", 1)
    root = definitions_with(tmp_path / "defs", {"graduation": text})
    done = subprocess.run([str(REPO / ".venv" / "bin" / "dangan"), "check", str(root)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    assert f"{PATH}:{locate(text, 'studnet')}: 未知的表单“studnet”" in done.stdout, done.stdout


def test_dangan_check__counts_certificates() -> None:
    done = subprocess.run([sys.executable, "-m", "web.cli", "check", str(DEFINITIONS)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0 and "1 种证书" in done.stdout, done.stdout + done.stderr
