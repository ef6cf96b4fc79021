"""Compiles `on_approve.hand_over` (升学衔接): the record offered to the chosen unit until its role there confirms."""
from __future__ import annotations

from types import MappingProxyType
from typing import Any

from engine.errors import did_you_mean
from engine.spec import FormSpec
from engine.workflows.spec import HandOverSpec
from engine.yaml_source import key_origin


def compile_hand_over(compiler: Any, effects: Any, application: FormSpec) -> HandOverSpec | None:
    """`compiler`: the WorkflowCompiler of the file (its form, definitions, unit choice and problems)."""
    raw = effects.get("hand_over")
    if raw is None:
        return None
    problems, form = compiler.problems, compiler.form
    if compiler.choice is None:
        problems.add(key_origin(raw, "to"), "hand_over 的 to: chosen_unit 需要流程有 choose_unit",
                     "加上 choose_unit，让申请人选择接收档案的单位（如 level: school）")
    if effects.get("move_to"):
        problems.add(key_origin(effects, "hand_over"), "move_to 与 hand_over 不能同时使用",
                     "hand_over 在接收单位确认后才移动记录；不需要确认时用 move_to")
    role = raw["confirm_by"]
    if role not in compiler.definitions.roles:
        problems.add(key_origin(raw, "confirm_by"), f"未知的角色“{role}”",
                     did_you_mean(role, compiler.definitions.roles) or f"可用的角色：{'、'.join(compiler.definitions.roles)}")
    values: dict[str, Any] = {}
    on_confirm = raw.get("on_confirm", {})
    # The same compiler as on_approve.create: the same names, the same located errors.
    create = tuple(c for c in (compiler._child(item, application) for item in on_confirm.get("create", [])) if c is not None)
    raw_set = on_confirm.get("set", {})
    for key, value in raw_set.items():
        spec, where = form.fields.get(key), key_origin(raw_set, key)
        if spec is None or not spec.user_input:
            problems.add(where, f"表单“{form.key}”没有字段“{key}”" if spec is None else f"字段“{key}”由系统生成，流程不能设置它",
                         did_you_mean(key, form.fields) if spec is None else "删去这一项")
            continue
        cleaned, issues = spec.kind.clean(value)
        if issues or cleaned is None:
            options = spec.kind.widget_context().get("options")
            problems.add(where, f"“{value}”不是字段“{spec.label}”的有效值",
                         f"可选：{'、'.join(label for _, label in options)}" if options else "值无效")
            continue
        values[key] = cleaned
    return HandOverSpec(confirm_by=role, when=compiler._condition(raw, "when", application),
                        on_confirm=MappingProxyType(values), create=create, origin=raw.origin)
