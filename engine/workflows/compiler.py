"""Compiles workflow files (after the forms and roles they refer to) into frozen `WorkflowSpec`s."""
from __future__ import annotations

import re
from decimal import Decimal
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Collection, Mapping

from jinja2 import TemplateSyntaxError, nodes

from engine.compiler import FormCompiler, Problems, digest
from engine.definition_files import read_definition_files
from engine.errors import DefinitionErrors, did_you_mean
from engine.expressions import ExpressionCompiler, ExpressionProblem
from engine.metaschema import check_shape
from engine.spec import Definitions, Expression, FieldSpec, FormSpec, Origin, SectionSpec
from engine.workflows.handover import compile_hand_over
from engine.workflows.schema import WORKFLOW
from engine.workflows.spec import (
    BELOW, END, RECORD, SIDE_LABELS, UNIT_SIDES, AssigneeSpec, CheckSpec, ChildSpec, EffectSpec, StepSpec, TallySpec,
    UnitChoiceSpec, UnitRef, WorkflowSpec,
)
from engine.yaml_source import LocatedDict, LocatedList, key_origin, load_yaml

_MEASURES = ("count", "sum", "avg", "min", "max")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")
_SCOPE = re.compile(r"^\s*([a-z_]+)\.([a-z][a-z0-9_]*)\s*$")
RESERVED = frozenset({RECORD, *UNIT_SIDES})
CHANGES_SECTION = "proposed"


def compile_workflows(root: Path, definitions: Definitions, expressions: ExpressionCompiler,
                      problems: Problems) -> dict[str, WorkflowSpec]:
    """Every `workflows/*.yaml` under `root`; problems are collected, never raised."""
    result: dict[str, WorkflowSpec] = {}
    for shown, text, data in _read_files(root, problems):
        key = data["key"]
        if key in result:
            problems.add(key_origin(data, "key"), f"重复的流程键“{key}”", f"已在 {result[key].path} 中定义")
            continue
        spec = WorkflowCompiler(data, text, shown, definitions, expressions, problems).compile()
        if spec is not None:
            result[key] = spec
    return result


def compile_source(text: str, path: str, definitions: Definitions) -> WorkflowSpec:
    """One stored version of a workflow, compiled against today's forms and roles (or DefinitionErrors)."""
    problems = Problems()
    data, found = load_yaml(text, path)
    problems.extend(found)
    if isinstance(data, LocatedDict):
        problems.extend(check_shape(data, WORKFLOW, path))
    else:
        problems.add(Origin(path, 1, 1), "流程文件的顶层应为键值映射（key: value）")
    spec = None if problems else WorkflowCompiler(data, text, path, definitions, ExpressionCompiler(), problems).compile()
    if problems or spec is None:
        raise DefinitionErrors(problems)
    return spec


def _read_files(root: Path, problems: Problems) -> list[tuple[str, str, LocatedDict]]:
    # The source text comes along: a workflow keeps it as the snapshot in-flight applications run on.
    return [(f.shown, f.text, f.data) for f in read_definition_files(root, "workflows/*.yaml", WORKFLOW, problems)]


class WorkflowCompiler:
    """Compiles one schema-checked workflow file; `problems` collects everything wrong with it."""

    def __init__(self, data: LocatedDict, text: str, path: str, definitions: Definitions,
                 expressions: ExpressionCompiler, problems: Problems) -> None:
        self.data, self.text, self.path = data, text, path
        self.definitions, self.expressions, self.problems = definitions, expressions, problems
        self.levels = tuple(level.key for level in definitions.org_levels)
        self.form: FormSpec | None = None
        self.choice: UnitChoiceSpec | None = None

    def compile(self) -> WorkflowSpec | None:
        before = len(self.problems)
        self.form = self._target_form()
        roles = self._roles(self.data["start"]["roles"], key_origin(self.data["start"], "roles"))
        self.choice = self._unit_choice()
        changes = self._changes()
        application = self._application(changes)
        if self.form is None or application is None:
            return None
        start_when = self._condition(self.data["start"], "when", application, with_application=False)
        steps = self._steps(application)
        effects = self._effects(application)
        tallies = self._tallies()
        checks = self._checks(application, tallies)
        summary = self._target_keys(self.data.get("summary", []), self.data, "summary") or tuple(k for k in self.form.list.columns if k in self.form.fields)
        if len(self.problems) > before:
            return None
        return WorkflowSpec(
            key=self.data["key"], title=self.data["title"], description=self.data.get("description", ""),
            form=self.form.key, start_roles=roles, start_when=start_when,
            start_label=self.data["start"].get("label", f"发起{self.data['title']}"),
            application=application, target=writable_target(self.form, (*effects.set, *effects.compute, *changes)),
            steps=steps, effects=effects, version=digest(self.data), source=self.text,
            path=self.path, unit_choice=self.choice, changes=changes, summary=tuple(summary),
            allow_self_approval=self.data.get("allow_self_approval", False), exclusive=self.data.get("exclusive", ""),
            restart_on_return=self.data.get("on_return") == "restart", tallies=tallies, checks=checks,
            origin=self.data.origin,
        )

    # --- references to the rest of the definitions ------------------------------------------------
    def _target_form(self) -> FormSpec | None:
        key = self.data["form"]
        form = self.definitions.forms.get(key)
        if form is None:
            self.problems.add(key_origin(self.data, "form"), f"未知的表单“{key}”",
                              did_you_mean(key, self.definitions.forms) or f"可用的表单：{'、'.join(self.definitions.forms)}")
        return form

    def _roles(self, keys: list[str], where: Origin | None) -> tuple[str, ...]:
        for key in keys:
            if key not in self.definitions.roles:
                self.problems.add(where, f"未知的角色“{key}”",
                                  did_you_mean(key, self.definitions.roles) or f"可用的角色：{'、'.join(self.definitions.roles)}")
        return tuple(keys)

    def _level(self, level: str, where: Origin | None) -> bool:
        if level in self.levels:
            return True
        self.problems.add(where, f"未知的组织层级“{level}”", did_you_mean(level, self.levels) or f"在 org.yaml 中定义的层级：{'、'.join(self.levels)}")
        return False

    def _target_keys(self, keys: list[str], parent: Any, name: str) -> tuple[str, ...]:
        assert self.form is not None
        for key in keys:
            if key not in self.form.fields:
                self.problems.add(key_origin(parent, name), f"表单“{self.form.key}”没有字段“{key}”", did_you_mean(key, self.form.fields))
        return tuple(k for k in keys if k in self.form.fields)

    # --- the application form ----------------------------------------------------------------------
    def _unit_choice(self) -> UnitChoiceSpec | None:
        raw = self.data.get("choose_unit")
        if raw is None:
            return None
        ok = self._level(raw["level"], key_origin(raw, "level"))
        outside = raw.get("outside", "")
        if outside and self._level(outside, key_origin(raw, "outside")) and ok:
            if self.levels.index(outside) >= self.levels.index(raw["level"]):
                self.problems.add(key_origin(raw, "outside"), f"“outside”应是比“{raw['level']}”更高的层级",
                                  "例如选择班级（level: class）时写 outside: school，表示只能选其他学校的班级")
        if ok and self.form is not None and self.form.unit_level and raw["level"] != self.form.unit_level \
                and self.data.get("on_approve", {}).get("move_to") == "chosen_unit":
            self.problems.add(key_origin(raw, "level"), f"记录属于“{self.form.unit_level}”层级的单位，选择的单位也应是这一层级",
                              f"写 level: {self.form.unit_level}")
        when = self._unit_condition(raw, ok)
        return UnitChoiceSpec(label=raw["label"], level=raw["level"], outside=outside, help=raw.get("help", ""),
                              when=when, required=raw.get("required", True),
                              reads_below=when is not None and _reads_below(self.expressions, when.source), origin=raw.origin)

    def _unit_condition(self, raw: Any, level_known: bool) -> Expression | None:
        """`choose_unit.when`: which units fit the record, e.g. "unit.grade == record.grade" (over the candidate's unit
        names by level), or "'高一' in unit.below.grade" (the names of the units of a level inside the candidate)."""
        if "when" not in raw or self.form is None:
            return None
        where, source = key_origin(raw, "when"), str(raw["when"]).strip()
        lower = self.levels[self.levels.index(raw["level"]) + 1:] if level_known else ()
        samples = {"unit": {**{level: "名称" for level in self.levels}, BELOW: {level: ["名称"] for level in lower}},
                   RECORD: {k: f.kind.sample() for k, f in self.form.fields.items()}}
        bad = self._unknown_attribute(source, {"unit": (*self.levels, BELOW), RECORD: self.form.fields}) \
            or _unknown_below(self.expressions, source, raw["level"], lower)
        if bad is not None:
            self.problems.add(where, *bad)
            return None
        try:
            return self.expressions.compile(raw["when"], samples, where, samples)
        except ExpressionProblem as exc:
            self.problems.add(where, exc.message, exc.hint or "例如 unit.grade == record.grade（所选班级的年级与学生的年级相同）")
            return None

    def _changes(self) -> tuple[str, ...]:
        keys = self.data.get("changes", [])
        if not keys or self.form is None:
            return tuple(keys)
        found = self._target_keys(keys, self.data, "changes")
        for key in found:
            spec = self.form.fields[key]
            if spec.readonly or not spec.user_input or spec.kind.sub_fields():
                self.problems.add(key_origin(self.data, "changes"), f"字段“{key}”不能作为受保护字段",
                                  "受保护字段须是用户可以填写的普通字段（不能是只读、自动编号或表格字段）")
        return found

    def _application(self, changes: tuple[str, ...]) -> FormSpec | None:
        raw = self.data.get("application") or _located({}, self.data.origin)
        origin = raw.origin
        if "fields" in raw and "sections" in raw:
            self.problems.add(key_origin(raw, "sections"), "application 中 fields 和 sections 只能写一种",
                              "字段少时用 fields；需要分组时用 sections")
        sections = raw.get("sections")
        if sections is None:
            sections = _located_list([_located({"key": "application", "title": "申请信息", "fields": raw.get("fields", [])}, origin)], origin)
        form_data = _located({"key": self.data["key"], "title": self.data["title"], "sections": sections,
                              "rules": raw.get("rules", [])}, origin, {"rules": key_origin(raw, "rules") or origin})
        before = len(self.problems)
        # The application's expressions (visible_if, required_if, compute, rules) may read `record.<field>` too.
        record = {k: f.kind.sample() for k, f in self.form.fields.items()} if self.form is not None else {}
        compiler = FormCompiler(form_data, self.definitions.options, self.levels, self.expressions, self.problems,
                                context={RECORD: record})
        compiled = compiler.compile()
        if compiled is None or len(self.problems) > before:
            return None
        for key in compiled.fields:
            if key in RESERVED or key in changes:
                spec = compiled.fields[key]
                self.problems.add(spec.origin, f"申请表字段不能叫“{key}”",
                                  "它已用于受保护字段的新值" if key in changes else f"{'、'.join(sorted(RESERVED))} 是流程表达式中的保留名称")
        if not changes or self.form is None:
            return compiled
        # Proposed values of protected fields are fields of the application, validated like the record's own.
        copies = {k: replace(self.form.fields[k], visible_if=None, required_if=None, unique=False, section=CHANGES_SECTION)
                  for k in changes}
        section = SectionSpec(CHANGES_SECTION, "变更内容", tuple(copies), origin)
        return replace(compiled, fields=MappingProxyType({**copies, **compiled.fields}), sections=(section, *compiled.sections))

    # --- expressions and scopes ---------------------------------------------------------------------
    def _names(self, application: FormSpec, with_application: bool) -> tuple[dict[str, Any], dict[str, Collection[str]]]:
        """Sample values by name (to prove conditions boolean) and the attributes each namespace offers."""
        assert self.form is not None
        record = {k: f.kind.sample() for k, f in self.form.fields.items()}
        units = {level: index + 1 for index, level in enumerate(self.levels)}
        samples: dict[str, Any] = {RECORD: record, "record_unit": units, "applicant_unit": units}
        attributes: dict[str, Collection[str]] = {RECORD: self.form.fields, "record_unit": self.levels, "applicant_unit": self.levels}
        if with_application:
            samples.update({k: f.kind.sample() for k, f in application.fields.items()})
            if self.choice is not None:
                samples["chosen_unit"] = {level: index + 11 for index, level in enumerate(self.levels)}
                attributes["chosen_unit"] = self.levels
        return samples, attributes

    def _condition(self, parent: Any, name: str, application: FormSpec, with_application: bool = True) -> Expression | None:
        if name not in parent:
            return None
        source, where = parent[name], key_origin(parent, name)
        samples, attributes = self._names(application, with_application)
        bad = self._unknown_attribute(str(source).strip(), attributes)
        if bad is not None:
            self.problems.add(where, *bad)
            return None
        try:
            return self.expressions.compile(source, samples, where, samples)
        except ExpressionProblem as exc:
            hint = exc.hint
            if "chosen_unit" in str(source) and self.choice is None:
                hint = "此流程没有 choose_unit，不能使用 chosen_unit"
            self.problems.add(where, exc.message, hint)
            return None

    def _unknown_attribute(self, source: str, attributes: Mapping[str, Collection[str]]) -> tuple[str, str] | None:
        try:
            tree = self.expressions.env.parse("{{ (" + source + ") }}")
        except TemplateSyntaxError:
            return None
        for node in tree.find_all(nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name in attributes and node.attr not in attributes[node.node.name]:
                what = "组织层级" if node.node.name in (*UNIT_SIDES, "unit") else "字段"
                return (f"“{node.node.name}”没有{what}“{node.attr}”",
                        did_you_mean(node.attr, attributes[node.node.name]) or f"可用：{'、'.join(attributes[node.node.name])}")
        return None

    def _scope(self, raw: Any, parent: Any) -> UnitRef | None:
        where = key_origin(parent, "unit")
        match = _SCOPE.match(raw)
        if match is None:
            self.problems.add(where, f"单位范围“{raw}”的写法不对", "写成 <来源>.<层级>，例如 record_unit.school、chosen_unit.district")
            return None
        side, level = match[1], match[2]
        if side not in UNIT_SIDES:
            self.problems.add(where, f"未知的单位来源“{side}”",
                              did_you_mean(side, UNIT_SIDES) or "可用：" + "、".join(f"{s}（{SIDE_LABELS[s]}）" for s in UNIT_SIDES))
            return None
        if not self._level(level, where):
            return None
        deepest = self._deepest_level(side)
        if side == "chosen_unit" and self.choice is None:
            self.problems.add(where, "此流程没有 choose_unit，不能使用 chosen_unit", "在流程中加上 choose_unit，或改用 record_unit")
            return None
        if deepest and self.levels.index(level) > self.levels.index(deepest):
            self.problems.add(where, f"{SIDE_LABELS[side]}是“{deepest}”层级，没有更低的“{level}”层级", f"可用到 {side}.{deepest} 为止")
            return None
        return UnitRef(side=side, level=level, source=raw.strip(), origin=where)

    def _deepest_level(self, side: str) -> str:
        if side == "chosen_unit":
            return self.choice.level if self.choice is not None and self.choice.level in self.levels else ""
        if side == "record_unit" and self.form is not None:
            return self.form.unit_level
        return ""

    # --- steps and effects --------------------------------------------------------------------------
    def _steps(self, application: FormSpec) -> tuple[StepSpec, ...]:
        raws = self.data["steps"]
        seen: dict[str, Origin | None] = {}
        steps = []
        for raw in raws:
            key = raw["key"]
            if key in seen or key == END:
                self.problems.add(key_origin(raw, "key"), f"重复的步骤键“{key}”" if key in seen else f"步骤不能叫“{END}”",
                                  f"第一次定义在第 {seen[key].line} 行" if key in seen and seen[key] else f"“{END}”表示流程结束")
                continue
            seen[key] = key_origin(raw, "key")
            assignees = tuple(a for a in (self._assignee(item, application) for item in raw["assignees"]) if a is not None)
            steps.append(StepSpec(
                key=key, title=raw["title"], assignees=assignees, mode=raw.get("mode", "all"),
                when=self._condition(raw, "when", application), next=raw.get("next", ""),
                require_comment=raw.get("require_comment", False), require_attachment=raw.get("require_attachment", False),
                allow_return=raw.get("allow_return", True),
                allow_self_approval=raw.get("allow_self_approval", self.data.get("allow_self_approval", False)),
                origin=raw.origin,
            ))
        self._check_flow(steps, raws)
        return tuple(steps)

    def _assignee(self, raw: Any, application: FormSpec) -> AssigneeSpec | None:
        self._roles([raw["role"]], key_origin(raw, "role"))
        unit = self._scope(raw["unit"], raw)
        when = self._condition(raw, "when", application)
        if unit is None or raw["role"] not in self.definitions.roles:
            return None
        label = raw.get("label") or f"{self.definitions.roles[raw['role']].name}（{SIDE_LABELS[unit.side]}）"
        return AssigneeSpec(role=raw["role"], unit=unit, label=label, when=when, origin=raw.origin)

    def _check_flow(self, steps: list[StepSpec], raws: LocatedList) -> None:
        """`next` must point forward to a known step; every step must be reachable from the first."""
        index = {step.key: i for i, step in enumerate(steps)}
        raw_of = {raw["key"]: raw for raw in raws}
        reachable: set[int] = set()
        todo = [0] if steps else []
        while todo:
            i = todo.pop()
            if i in reachable or i >= len(steps):
                continue
            reachable.add(i)
            step = steps[i]
            if step.when is not None:
                todo.append(i + 1)  # a skipped step hands over to the one after it
            if not step.next:
                todo.append(i + 1)
            elif step.next != END:
                target = index.get(step.next)
                where = key_origin(raw_of[step.key], "next")
                if target is None:
                    self.problems.add(where, f"未知的步骤“{step.next}”", did_you_mean(step.next, [*index, END]) or f"可用：{'、'.join(index)}、{END}")
                elif target <= i:
                    self.problems.add(where, f"next 只能指向后面的步骤，“{step.next}”在“{step.key}”之前", "流程不能回到之前的步骤；要重新审批请用“退回修改”")
                else:
                    todo.append(target)
        for i, step in enumerate(steps):
            if i not in reachable:
                self.problems.add(raw_of[step.key].origin, f"步骤“{step.key}”永远不会被执行",
                                  "前面的步骤用 next 跳过了它；删除该步骤或修改前面步骤的 next")

    def _effects(self, application: FormSpec) -> EffectSpec:
        assert self.form is not None
        raw = self.data.get("on_approve")
        if raw is None:
            return EffectSpec()
        values: dict[str, Any] = {}
        for key, value in raw.get("set", {}).items():
            spec = self.form.fields.get(key)
            where = key_origin(raw["set"], key)
            if spec is None:
                self.problems.add(where, f"表单“{self.form.key}”没有字段“{key}”", did_you_mean(key, self.form.fields))
                continue
            if not spec.user_input:
                self.problems.add(where, f"字段“{key}”由系统生成，流程不能设置它")
                continue
            cleaned, issues = spec.kind.clean(value)
            if issues or cleaned is None:
                self.problems.add(where, f"“{value}”不是字段“{spec.label}”的有效值",
                                  _choices_hint(spec) or f"错误代码：{issues[0].code}" if issues else "值不能为空")
                continue
            values[key] = cleaned
        move = raw.get("move_to") == "chosen_unit"
        if move and self.choice is None:
            self.problems.add(key_origin(raw, "move_to"), "move_to: chosen_unit 需要流程有 choose_unit", "加上 choose_unit，让申请人选择转入的单位")
        compute = self._computed(raw, self.form, application)
        children = tuple(c for c in (self._child(item, application) for item in raw.get("create", [])) if c is not None)
        return EffectSpec(set=MappingProxyType(values), move_to_chosen_unit=move, compute=compute, create=children,
                          hand_over=compile_hand_over(self, raw, application), origin=raw.origin)

    def _computed(self, parent: Any, form: FormSpec, application: FormSpec, skip: str = "") -> Mapping[str, Expression]:
        """`compute: {field: expression}` of an effect: fields of `form`, expressions over the application's fields
        and `record.<field>` (the target record as final approval finds it)."""
        raw = parent.get("compute", {})
        samples, attributes = self._names(application, with_application=True)
        found: dict[str, Expression] = {}
        for key, source in raw.items():
            spec, where = form.fields.get(key), key_origin(raw, key)
            if spec is None or key == skip:
                self.problems.add(where, f"表单“{form.key}”没有字段“{key}”" if spec is None else f"字段“{key}”由系统填写（关联到上级记录）",
                                  did_you_mean(key, form.fields) if spec is None else "删去这一项")
                continue
            if not spec.user_input:
                self.problems.add(where, f"字段“{key}”由系统生成，流程不能设置它")
                continue
            bad = self._unknown_attribute(str(source).strip(), attributes)
            if bad is not None:
                self.problems.add(where, *bad)
                continue
            try:
                found[key] = self.expressions.compile(source, samples, where, samples, boolean=False)
            except ExpressionProblem as exc:
                self.problems.add(where, exc.message, exc.hint or "文字要加引号，例如 status: \"'已毕业'\"")
        return MappingProxyType(found)

    def _child(self, raw: Any, application: FormSpec) -> ChildSpec | None:
        assert self.form is not None
        key, where = raw["form"], key_origin(raw, "form")
        child = self.definitions.forms.get(key)
        if child is None:
            self.problems.add(where, f"未知的表单“{key}”", did_you_mean(key, self.definitions.forms) or "")
            return None
        is_child = bool(child.parent_field) and child.parent_form == self.form.key
        if is_child and "link" not in raw and "unit" not in raw:
            return ChildSpec(form=key, compute=self._computed(raw, child, application, skip=child.parent_field),
                             link=child.parent_field, origin=raw.origin)
        if is_child:
            self.problems.add(key_origin(raw, "link" if "link" in raw else "unit"), f"表单“{key}”是下级表单，不写 link 和 unit",
                              "下级表单的记录自动关联到这条记录，放在它所在的单位")
            return None
        if "link" not in raw or "unit" not in raw:
            self.problems.add(where, f"表单“{key}”不属于表单“{self.form.key}”",
                              f"create 新建下级表单（belongs_to 指向“{self.form.key}”）的记录；其他表单须写 link（关联到"
                              f"“{self.form.key}”的 link 字段）和 unit（如 record_unit.school）")
            return None
        link = raw["link"]
        spec = child.fields.get(link)
        if spec is None or spec.kind.name != "link" or getattr(spec.kind, "form", "") != self.form.key:
            self.problems.add(key_origin(raw, "link"), f"“{link}”不是表单“{key}”中关联到“{self.form.key}”的 link 字段",
                              did_you_mean(link, child.fields) or f"在“{key}”中加一个 type: link、form: {self.form.key} 的字段")
            return None
        unit = self._scope(raw["unit"], raw)
        if unit is not None and child.unit_level and unit.level != child.unit_level:
            self.problems.add(key_origin(raw, "unit"), f"表单“{key}”的记录属于“{child.unit_level}”层级的单位，这里是“{unit.level}”",
                              f"写 {unit.side}.{child.unit_level}")
            return None
        if unit is None:
            return None
        return ChildSpec(form=key, compute=self._computed(raw, child, application, skip=link), link=link, unit=unit,
                         origin=raw.origin)


    # --- 审核条件: figures over the record's child records, and checks with reasons ------------------
    def _tallies(self) -> tuple[TallySpec, ...]:
        assert self.form is not None
        found: list[TallySpec] = []
        for raw in self.data.get("figures", []):
            key, where = raw["key"], key_origin(raw, "key")
            if key in RESERVED or any(t.key == key for t in found) or key in self.form.fields:
                self.problems.add(where, f"统计项不能叫“{key}”", "它已是保留名称、表单字段或前面的统计项；换一个键")
                continue
            measures = [m for m in _MEASURES if m in raw]
            if len(measures) != 1:
                self.problems.add(raw.origin, "每个统计项写且只写一种统计：count、sum、avg、min 或 max",
                                  "例如 count: score（成绩条数）或 max: score.total（最高总分）")
                continue
            measure = measures[0]
            form_key, _, field_key = str(raw[measure]).partition(".")
            child = self._child_form(form_key, key_origin(raw, measure))
            if child is None:
                continue
            if measure == "count" and field_key or measure != "count" and not field_key:
                self.problems.add(key_origin(raw, measure), f"{measure} 的写法不对",
                                  "count 写表单键（count: score）；sum/avg/min/max 写 表单.字段（max: score.total）")
                continue
            if field_key and not self._number_field(child, field_key, key_origin(raw, measure)):
                continue
            where, links = self._child_condition(raw, child)
            found.append(TallySpec(key=key, label=raw["label"], form=child.key, measure=measure, number=field_key,
                                   where=where, links=links, origin=raw.origin))
        return tuple(found)

    def _child_form(self, key: str, where: Origin | None) -> FormSpec | None:
        assert self.form is not None
        child = self.definitions.forms.get(key)
        if child is None:
            self.problems.add(where, f"未知的表单“{key}”", did_you_mean(key, self.definitions.forms) or "")
        elif not child.parent_field or child.parent_form != self.form.key:
            self.problems.add(where, f"表单“{key}”不属于表单“{self.form.key}”",
                              f"统计项只能统计下级表单的记录：在“{key}”中写 belongs_to，指向关联到“{self.form.key}”的 link 字段")
            return None
        return child

    def _number_field(self, child: FormSpec, key: str, where: Origin | None) -> bool:
        spec = child.fields.get(key)
        if spec is None:
            self.problems.add(where, f"表单“{child.key}”没有字段“{key}”", did_you_mean(key, child.fields) or "")
            return False
        if not isinstance(spec.kind.sample(), (int, float, Decimal)) or isinstance(spec.kind.sample(), bool):
            self.problems.add(where, f"字段“{spec.label}”不是数字，不能求和、平均或取最大最小", "改用 count，或选一个数字字段")
            return False
        return True

    def _child_condition(self, raw: Any, child: FormSpec) -> tuple[Expression | None, tuple[str, ...]]:
        """`where` over a child record: its fields, a link's target fields (exam.kind) and record.<field>."""
        assert self.form is not None
        if "where" not in raw:
            return None, ()
        source, where = raw["where"], key_origin(raw, "where")
        linked = {k: self.definitions.forms[f.kind.form] for k, f in child.fields.items()  # type: ignore[attr-defined]
                  if f.kind.name == "link" and k != child.parent_field and f.kind.form in self.definitions.forms}
        samples: dict[str, Any] = {k: f.kind.sample() for k, f in child.fields.items()}
        samples.update({k: {n: f.kind.sample() for n, f in target.fields.items()} for k, target in linked.items()})
        samples[RECORD] = {k: f.kind.sample() for k, f in self.form.fields.items()}
        bad = self._unknown_attribute(str(source).strip(), {RECORD: self.form.fields, **{k: t.fields for k, t in linked.items()}})
        if bad is not None:
            self.problems.add(where, *bad)
            return None, ()
        try:
            expression = self.expressions.compile(source, samples, where, samples)
        except ExpressionProblem as exc:
            self.problems.add(where, exc.message, exc.hint or "例如 exam.kind == '期末' and failed > 0")
            return None, ()
        return expression, tuple(k for k in linked if k in expression.names)

    def _checks(self, application: FormSpec, tallies: tuple[TallySpec, ...]) -> tuple[CheckSpec, ...]:
        found: list[CheckSpec] = []
        samples, attributes = self._names(application, with_application=True)
        for tally in tallies:
            samples[tally.key] = 1
        for raw in self.data.get("checks", []):
            where = key_origin(raw, "require")
            bad = self._unknown_attribute(str(raw["require"]).strip(), attributes)
            if bad is not None:
                self.problems.add(where, *bad)
                continue
            try:
                require = self.expressions.compile(raw["require"], samples, where, samples)
            except ExpressionProblem as exc:
                self.problems.add(where, exc.message, exc.hint or "例如 failed_finals == 0（figures 中定义的统计项）")
                continue
            message = raw.get("message", "")
            for name in _PLACEHOLDER.findall(message):
                head, _, attr = name.partition(".")
                known = (head == RECORD and attr in attributes[RECORD]) if attr else head in samples and head not in UNIT_SIDES
                if not known:
                    self.problems.add(key_origin(raw, "message"), f"提示中的“{{{name}}}”不是统计项或 record.<字段>",
                                      did_you_mean(name, [t.key for t in tallies]) or "可写 {统计项键} 或 {record.字段键}")
            found.append(CheckSpec(label=raw["label"], require=require, message=message, origin=raw.origin))
        return tuple(found)


def _below_nodes(expressions: ExpressionCompiler, source: str) -> list[nodes.Getattr]:
    """The `unit.below.<level>` lookups of a unit condition."""
    try:
        tree = expressions.env.parse("{{ (" + source + ") }}")
    except TemplateSyntaxError:
        return []
    return [node for node in tree.find_all(nodes.Getattr)
            if isinstance(node.node, nodes.Getattr) and node.node.attr == BELOW
            and isinstance(node.node.node, nodes.Name) and node.node.node.name == "unit"]


def _reads_below(expressions: ExpressionCompiler, source: str) -> bool:
    return bool(_below_nodes(expressions, source))


def _unknown_below(expressions: ExpressionCompiler, source: str, level: str, lower: Collection[str]) -> tuple[str, str] | None:
    for node in _below_nodes(expressions, source):
        if node.attr not in lower:
            return (f"“unit.{BELOW}”没有组织层级“{node.attr}”",
                    (did_you_mean(node.attr, lower) or f"可用：{'、'.join(lower)}") if lower
                    else f"“{level}”是最低一级，其下没有单位")
    return None


def writable_target(form: FormSpec, keys: Collection[str]) -> FormSpec:
    """The target form with the fields the workflow writes writable: `readonly` keeps people out, not the approved
    workflow. Built once here: a form made per decision would also rebuild what the validator plans with it."""
    readonly = {k for k in keys if k in form.fields and form.fields[k].readonly}
    if not readonly:
        return form
    return replace(form, fields=MappingProxyType(
        {k: replace(f, readonly=False) if k in readonly else f for k, f in form.fields.items()}))


def _choices_hint(spec: FieldSpec) -> str:
    options = spec.kind.widget_context().get("options")
    return f"可选：{'、'.join(label for _, label in options)}" if options else ""


def _located(values: dict[str, Any], origin: Origin, key_origins: dict[str, Origin] | None = None) -> LocatedDict:
    result = LocatedDict(values)
    result.origin = origin
    result.key_origins = {k: (key_origins or {}).get(k, origin) for k in values}
    result.name_origins = dict(result.key_origins)
    return result


def _located_list(items: list[Any], origin: Origin) -> LocatedList:
    result = LocatedList(items)
    result.origin = origin
    result.item_origins = [getattr(item, "origin", origin) for item in items]
    return result
