"""The one catalogue of user-facing Chinese messages, keyed by issue code."""
from __future__ import annotations

from typing import Any, Mapping

from engine.issues import Issue

MESSAGES: Mapping[str, str] = {
    # refusals of engine services (engine/refusals.py)
    "refused": "操作被拒绝",
    "not_found": "记录不存在或不在您的权限范围内",
    "not_permitted": "您没有权限进行此操作",
    "unit_not_allowed": "不能把记录放在该单位：它不在您的权限范围内，或不是{unit_label}",
    # conversion and generic rules
    "required": "{label}为必填项",
    "invalid": "{label}格式不正确",
    "not_a_string": "{label}应为文本",
    "integer": "{label}应为整数",
    "decimal": "{label}应为数字",
    "decimal_places": "{label}最多保留{places}位小数",
    "date": "{label}应为日期，例如 2010-03-05",
    "time": "{label}应为时间（24小时制，到分钟），例如 07:30",
    "min_value": "{label}不能小于{limit}",
    "max_value": "{label}不能大于{limit}",
    "min_length": "{label}至少{limit}个字",
    "max_length": "{label}最多{limit}个字",
    "pattern": "{label}格式不正确",
    "choice": "{label}的值“{value}”不在可选项中",
    "choice_removed": "{label}的原值“{value}”已不在选项中，请重新选择",
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
    "table_not_importable": "{label}是多行表格，不能通过 Excel 导入，请在网页上填写",
    "unique": "{label}“{value}”已被另一条记录使用",
    "readonly": "{label}不可修改",
    "not_writable": "{label}不能由您填写：您的角色不能编辑这个字段",
    "required_not_writable": "{label}为必填项，但您的角色不能查看或填写它（如未获准查看的敏感字段），因此无法保存；请联系系统管理员调整角色权限",
    "unknown_field": "表单中没有字段“{name}”",
    "rule": "{message}",
    "conflict": "保存失败：在您编辑期间，{who}于{when}修改了这条记录。请查看下方变更后重新修改。",
    "generated": "{label}由系统生成，不能填写",
    "generated_source": "{label}需要先填写“{source}”才能生成",
    "protected_by_review": "{label}的修改须经信息变更审核，不能通过 Excel 导入修改；请在学生页面发起信息变更",
    # workflows (engine/workflows)
    "wf_not_in_progress": "该申请{status}，不能再进行此操作",
    "wf_task_closed": "该步骤已由{who}于{when}处理（{action}），您的操作未生效",
    "wf_not_assignee": "您不是该申请当前步骤的审批人",
    "wf_self_approval": "不能审批自己提交的申请",
    "wf_comment_required": "{action}时必须填写意见",
    "wf_attachment_required": "此步骤同意时必须上传附件（如批复文件）",
    "wf_action_not_allowed": "此步骤不能“{action}”",
    "wf_withdraw_not_allowed": "已有审批人处理过该申请，不能撤回",
    "wf_not_applicant": "只有申请人本人可以进行此操作",
    "wf_scope_unresolved": "无法确定审批单位：{what}没有“{level}”一级的上级单位",
    "wf_start_not_allowed": "您不能为这条记录发起“{workflow}”",
    "wf_already_open": "这条记录已有一份进行中的“{workflow}”申请（#{id}），请先办结",
    "wf_effect_failed": "审批未生效：{detail}",
    "wf_record_missing": "申请所针对的记录已不存在，无法生效",
    "wf_unit_required": "请选择{label}",
    "wf_unit_invalid": "所选的{label}不在可选范围内",
    "wf_no_change": "没有任何变更：请至少修改一项（{fields}）",
    "wf_change_pending": "{label}已有待审核的信息变更申请（#{id}），请等审核完成后再修改",
    "wf_change_forbidden": "{label}的修改须经审核，而您不能发起“{workflow}”申请",
    "wf_version_broken": "该申请使用的流程版本已无法按当前定义加载：{detail}",
    "wf_stale": "该申请刚刚被其他人处理过，请刷新页面查看最新状态",
    "wf_attachment_invalid": "附件无效：{detail}",
    # Excel and CSV import (engine/excel): rows
    "import_exists": "{label}为“{value}”的记录已存在；“仅新增”不修改已有记录，如需更新请选择“新增或更新”",
    "import_not_found": "找不到{label}为“{value}”的记录；“仅更新”不会新增记录",
    "import_key_empty": "{label}为空，无法找到要更新的记录",
    "import_read_only": "{label}为“{value}”的记录您只能查看，不能通过导入修改",
    "import_duplicate": "{label}“{value}”在文件中重复出现（第{rows}行），请只保留一行",
    "import_unit_required": "请填写{label}",
    "import_unit_unknown": "{label}“{value}”不存在，或不在您可以导入的范围内",
    "import_unit_ambiguous": "{label}“{value}”对应多个单位，请填写完整路径，如“{example}”",
    "import_conflict": "保存时这条记录正被他人修改，未导入；请重新导入这一行",
    "import_row_failed": "数据库拒绝保存这一行（{detail}），未导入；请检查后重新导入",
    # Excel and CSV import: the whole file
    "import_file_empty": "上传的文件是空的",
    "import_file_too_large": "文件过大：最大 {limit}，当前 {size}",
    "import_file_type": "只能导入 Excel（.xlsx）或 CSV 文件，“{name}”不是",
    "import_file_xls": "这是旧版 Excel（.xls）文件或设置了密码的文件，请在 Excel 中“另存为” .xlsx 格式（不设密码）后再上传",
    "import_file_fake": "文件扩展名是 {ext}，但内容不是 Excel 表格，可能是改了扩展名的其他文件",
    "import_file_corrupt": "文件已损坏或不完整，无法读取；请在 Excel 中打开并重新保存后再上传",
    "import_file_bomb": "文件解压后过大（{size}，上限 {limit}）或压缩比异常，可能是恶意文件，已拒绝",
    "import_file_members": "文件内部结构异常（包含 {count} 个部件），已拒绝",
    "import_file_dtd": "文件中含有 XML 实体声明（DTD），可能是恶意文件，已拒绝",
    "import_file_unreadable": "文件内容超出可读取的范围（单元格过多或结构异常），请删除多余的行列或拆分文件后重试",
    "import_file_rows": "数据行数超过上限：最多 {limit} 行，当前 {count} 行；请拆分文件后分批导入",
    "import_file_columns": "列数超过上限：最多 {limit} 列，当前 {count} 列；请删除多余的列",
    "import_file_encoding": "无法识别 CSV 文件的编码；请另存为“CSV UTF-8”或 GBK 编码",
    "import_file_binary": "文件内容不是文本，不是 CSV 文件",
    "import_file_no_sheet": "文件中没有可导入的工作表",
    "import_no_rows": "文件中没有数据",
    "import_no_header": "前 {rows} 行中没有找到表头：表头应包含字段名称，如“{example}”",
    "import_missing_columns": "缺少必需的列：{columns}",
    "import_duplicate_column": "列“{label}”出现了不止一次（第 {columns} 列）",
    "import_wrong_form": "这是另一个表单（{other}）的模板，不能导入到“{target}”",
    "import_failed": "导入因系统错误中断，已保存的行不受影响；请联系管理员",
    "import_user_gone": "发起导入的用户已停用或已无导入权限，导入未进行",
    "import_aborted": "有 {count} 行数据有误；按“全部正确才导入”，没有导入任何数据。请下载错误报告修改后重新上传",
    # Excel and CSV import: warnings shown with the preview
    "import_column_unknown": "列“{label}”不是表单中的字段，已忽略",
    "import_column_readonly": "列“{label}”您不能修改，已忽略",
    "import_column_not_importable": "列“{label}”（{type}）不能通过 Excel 导入，已忽略；请在网页上填写",
    "import_column_match_only": "列“{label}”只用于找到已有记录，不会被修改",
    "import_normalised": "{label}：{count} 个值已自动规范，如“{before}”→“{after}”",
    "import_merged": "{count} 个合并单元格已按合并区域首行的值填充",
    "import_formula_text": "{count} 个以 =、+、-、@ 开头的值按普通文本保存，不会作为公式执行",
    "import_empty_rows": "已跳过 {count} 个空行",
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
