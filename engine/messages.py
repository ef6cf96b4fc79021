"""The one catalogue of user-facing Chinese messages, keyed by issue code."""
from __future__ import annotations

from typing import Any, Mapping

from engine.issues import Issue

MESSAGES: Mapping[str, str] = {
    # conversion and generic rules
    "required": "{label}为必填项",
    "invalid": "{label}格式不正确",
    "not_a_string": "{label}应为文本",
    "integer": "{label}应为整数",
    "decimal": "{label}应为数字",
    "decimal_places": "{label}最多保留{places}位小数",
    "date": "{label}应为日期，例如 2010-03-05",
    "min_value": "{label}不能小于{limit}",
    "max_value": "{label}不能大于{limit}",
    "min_length": "{label}至少{limit}个字",
    "max_length": "{label}最多{limit}个字",
    "pattern": "{label}格式不正确",
    "choice": "{label}的值“{value}”不在可选项中",
    "boolean": "{label}应为“是”或“否”",
    "email": "{label}不是有效的电子邮箱地址",
    "phone": "{label}应为11位手机号（1开头，第二位3-9）或带区号的固定电话，如 010-12345678",
    "id_card_length": "{label}应为18位",
    "id_card_chars": "{label}前17位应为数字，最后一位为数字或X",
    "id_card_region": "{label}的前6位不是有效的行政区划代码",
    "id_card_birth": "{label}中的出生日期（第7-14位）不是有效日期",
    "id_card_check": "{label}校验位错误：按 GB 11643 计算最后一位应为 {expected}",
    "id_card_float": "{label}被 Excel 存成了数字，末几位可能已丢失，请把该列设为文本后重新填写",
    "file_type": "{label}只接受以下类型：{allowed}",
    "file_size": "{label}文件过大：最大 {limit}，当前 {size}",
    "file_empty": "{label}上传的文件为空",
    "file_missing": "{label}引用的附件不存在",
    "file_not_importable": "{label}是附件，不能通过 Excel 导入，请在网页上上传",
    "table_rows_min": "{label}至少需要{limit}行",
    "table_rows_max": "{label}最多{limit}行",
    "table_row": "{label}的数据格式不正确",
    "table_not_importable": "{label}是多行表格，不能在此列导入，请在“{label}”工作表中填写",
    "unique": "{label}“{value}”已被另一条记录使用",
    "readonly": "{label}不可修改",
    "unknown_field": "表单中没有字段“{name}”",
    "rule": "{message}",
    "conflict": "保存失败：在您编辑期间，{who}于{when}修改了这条记录。请查看下方变更后重新修改。",
    "generated": "{label}由系统生成，不能填写",
    "generated_source": "{label}需要先填写“{source}”才能生成",
}


def render(issue: Issue, label: str = "", overrides: Mapping[str, str] | None = None) -> str:
    """Format an issue for people; a definition's `messages:` block may override per code."""
    template = (overrides or {}).get(issue.code) or MESSAGES.get(issue.code, "{label}：{code}")
    values: dict[str, Any] = {"label": label, "code": issue.code}
    values.update(issue.params)
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError):
        # An administrator's override may name a placeholder we do not supply; show it as written.
        return template
