"""Compiles schema-checked YAML data into frozen specs, collecting every cross-reference error."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace as _replace
from types import MappingProxyType
from typing import Any, Mapping

from engine.errors import DefinitionError, did_you_mean
from engine.expressions import ExpressionCompiler, ExpressionProblem
from engine.fields import FIELD_TYPES, Option
from engine.fields.choice import as_option
from engine.fields.base import FieldType, UnknownName
from engine.metaschema import FIELD_COMMON, check_shape
from engine.permissions import is_masked
from engine.spec import (
    FIGURE_KINDS, Expression, FieldSpec, FigureSpec, FormPolicy, GridSpec, FormSpec, ListSpec, OrgLevel, Origin, RoleSpec, RuleSpec, SectionSpec,
)
from engine.validation.rules import RULES, compile_limit
from engine.yaml_source import item_origin, key_origin, name_origin

GENERIC_CONSTRAINTS = frozenset(RULES)
NOT_IN_TABLE_COLUMNS = ("visible_if", "required_if", "unique", "sensitive", "renamed_from", "compute")
BUILTIN_SCOPES = ("own", "subtree", "all", "linked")


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:12]


class Problems(list):
    def add(self, origin: Origin | None, message: str, hint: str = "") -> None:
        self.append(DefinitionError(origin, message, hint))


# --- option lists -------------------------------------------------------------------------------

def compile_options(data: Mapping[str, Any]) -> tuple[Option, ...]:
    return tuple(as_option(item) for item in data["options"])


# --- forms --------------------------------------------------------------------------------------

class FormCompiler:
    """Compiles one form file; `problems` collects everything wrong with it."""

    def __init__(self, data: Mapping[str, Any], options: Mapping[str, tuple], org_levels: tuple[str, ...],
                 expressions: ExpressionCompiler, problems: Problems, context: Mapping[str, Any] | None = None) -> None:
        self.data, self.options, self.org_levels = data, options, org_levels
        # Names the expressions may read besides the fields, with sample values (a workflow application: `record`).
        self.context = dict(context or {})
        self.expressions, self.problems = expressions, problems
        self.origin: Origin = data.origin
        # Keys of every field written in the file, compiled or not: a reference to a field that failed
        # to compile is not reported again (its own error already was).
        self.declared: set[str] = set()

    def compile(self) -> FormSpec | None:
        raw_fields, sections = self._collect_fields()
        self.declared = {raw["key"] for raw, _ in raw_fields}
        specs: dict[str, FieldSpec] = {}
        for raw, section in raw_fields:
            spec = self._field(raw, section, in_table=False)
            if spec is not None:
                specs[spec.key] = spec
        specs = self._with_conditions(raw_fields, specs)
        self._check_generated(specs)
        self._check_cycles(specs)
        rules = self._rules(specs)
        figures = self._figures(specs)
        list_spec = self._list(specs, figures)
        natural_key = self._keys(self.data.get("natural_key", []), "natural_key", specs)
        title_field = self.data.get("title_field") or next(iter(specs), "")
        self._keys([title_field] if title_field else [], "title_field", specs)
        parent_field = self._parent(specs)
        unit = self.data.get("unit", {})
        if unit.get("level") and unit["level"] not in self.org_levels:
            self.problems.add(key_origin(unit, "level"), f"未知的组织层级“{unit['level']}”",
                              did_you_mean(unit["level"], self.org_levels) or f"在 org.yaml 中定义的层级：{'、'.join(self.org_levels)}")
        return FormSpec(
            key=self.data["key"], title=self.data["title"], description=self.data.get("description", ""),
            fields=MappingProxyType(specs), sections=sections, title_field=title_field, list=list_spec,
            natural_key=natural_key, rules=rules, version=digest(self.data),
            unit_level=unit.get("level", ""), unit_label=unit.get("label", "所属单位"), levels=tuple(self.org_levels),
            parent_field=parent_field, figures=MappingProxyType(figures), grid=self._grid(specs), origin=self.origin,
            print_title=self.data.get("print", {}).get("title", ""),
            print_parent_fields=tuple(self.data.get("print", {}).get("parent_fields", ())),
        )

    def _parent(self, specs: Mapping[str, FieldSpec]) -> str:
        key = self.data.get("belongs_to", "")
        if not key:
            return ""
        where = key_origin(self.data, "belongs_to")
        spec = specs.get(key)
        if spec is None:
            if key not in self.declared:
                self.problems.add(where, f"belongs_to 引用了不存在的字段“{key}”", did_you_mean(key, specs) or "写本表单中关联到上级记录的 link 字段")
            return ""
        if spec.kind.name != "link":
            self.problems.add(where, f"belongs_to 须是关联字段（type: link），“{key}”是 {spec.kind.name}",
                              "例如 - {key: student, label: 学生, type: link, form: student, required: true}")
            return ""
        if not spec.required:
            self.problems.add(where, f"belongs_to 的字段“{key}”须设为必填（required: true）", "每条记录都要属于一条上级记录")
            return ""
        return key

    def _collect_fields(self) -> tuple[list[tuple[Mapping, str]], tuple[SectionSpec, ...]]:
        seen_fields: dict[str, Origin] = {}
        seen_sections: set[str] = set()
        raw_fields, sections = [], []
        for section in self.data["sections"]:
            if section["key"] in seen_sections:
                self.problems.add(key_origin(section, "key"), f"重复的分组键“{section['key']}”")
            seen_sections.add(section["key"])
            keys = []
            for raw in section["fields"]:
                key = raw["key"]
                if key in seen_fields:
                    self.problems.add(key_origin(raw, "key"), f"重复的字段键“{key}”", f"第一次定义在第 {seen_fields[key].line} 行")
                    continue
                seen_fields[key] = key_origin(raw, "key")
                raw_fields.append((raw, section["key"]))
                keys.append(key)
            sections.append(SectionSpec(section["key"], section["title"], tuple(keys), section.origin))
        return raw_fields, tuple(sections)

    def _field(self, raw: Mapping[str, Any], section: str, in_table: bool) -> FieldSpec | None:
        kind_cls = FIELD_TYPES.get(raw["type"])
        if kind_cls is None:
            self.problems.add(key_origin(raw, "type"), f"未知的字段类型“{raw['type']}”",
                              did_you_mean(raw["type"], FIELD_TYPES) or f"可用类型：{'、'.join(FIELD_TYPES)}")
            return None
        before = len(self.problems)
        self._check_keys(raw, kind_cls, in_table)
        self.problems.extend(check_shape(raw, {"type": "object", "properties": dict(kind_cls.params_schema)}, self.origin.path))
        if len(self.problems) > before:
            return None
        kind = self._build_kind(raw, kind_cls)
        if kind is None:
            return None
        constraints = self._constraints(raw, kind)
        checks = tuple((RULES[name], limit) for name, limit in constraints.items())
        renamed = raw.get("renamed_from", ())
        spec = FieldSpec(
            key=raw["key"], label=raw["label"], kind=kind, required=raw.get("required", False),
            help=raw.get("help", ""), placeholder=raw.get("placeholder", ""), readonly=raw.get("readonly", False),
            unique=raw.get("unique", False), sensitive=raw.get("sensitive", False),
            constraints=MappingProxyType(constraints), messages=MappingProxyType(dict(raw.get("messages", {}))),
            renamed_from=(renamed,) if isinstance(renamed, str) else tuple(renamed), section=section,
            origin=key_origin(raw, "key"), checks=checks, aliases=tuple(raw.get("aliases", ())),
        )
        return self._with_default(raw, spec)

    def _check_keys(self, raw: Mapping[str, Any], kind_cls: type[FieldType], in_table: bool) -> None:
        own = set(kind_cls.params_schema)
        allowed = (set(FIELD_COMMON) - GENERIC_CONSTRAINTS) | (set(kind_cls.constraints) & GENERIC_CONSTRAINTS) | own
        if in_table:
            allowed -= set(NOT_IN_TABLE_COLUMNS)
        for key in raw:
            if key in allowed:
                continue
            where = name_origin(raw, key)
            if key in GENERIC_CONSTRAINTS or key in FIELD_COMMON:
                self.problems.add(where, f"类型 {kind_cls.name}（{kind_cls.title}）的字段不支持“{key}”",
                                  "表格列不支持条件、唯一和敏感设置" if in_table and key in NOT_IN_TABLE_COLUMNS else
                                  f"该类型可用：{'、'.join(sorted(allowed - set(FIELD_COMMON) | (allowed & GENERIC_CONSTRAINTS))) or '无额外参数'}")
            else:
                self.problems.add(where, f"不认识的键“{key}”", did_you_mean(key, allowed) or f"可用的键：{'、'.join(sorted(allowed))}")

    def _build_kind(self, raw: Mapping[str, Any], kind_cls: type[FieldType]) -> FieldType | None:
        params = {k: raw[k] for k in kind_cls.params_schema if k in raw}
        for name in kind_cls.sub_field_params:
            if name in params:
                params[name] = self._sub_fields(raw, params[name])
        try:
            return kind_cls.build(params, self.options)
        except UnknownName as exc:
            self.problems.add(key_origin(raw, next(iter(params))) if len(params) == 1 else key_origin(raw, "type"),
                              f"字段“{raw['key']}”的参数有误：{exc}",
                              did_you_mean(exc.name, exc.known) or (f"已定义的{exc.what}：{'、'.join(exc.known)}" if exc.known else ""))
            return None
        except ValueError as exc:
            # With one parameter the fault is in it (e.g. `options: no_such_list`); otherwise point at the type.
            where = key_origin(raw, next(iter(params))) if len(params) == 1 else key_origin(raw, "type")
            self.problems.add(where, f"字段“{raw['key']}”的参数有误：{exc}")
            return None

    def _sub_fields(self, raw: Mapping[str, Any], columns: Any) -> tuple[FieldSpec, ...]:
        """A table's columns, compiled as fields; a column cannot itself hold fields."""
        specs = []
        for column in columns:
            if not isinstance(column, Mapping) or not {"key", "label", "type"} <= set(column):
                self.problems.add(getattr(column, "origin", raw.origin), "表格列需要 key、label 和 type")
                continue
            kind_cls = FIELD_TYPES.get(column["type"])
            if kind_cls is not None and kind_cls.sub_field_params:
                self.problems.add(key_origin(column, "type"), "表格里不能再嵌套表格")
                continue
            spec = self._field(column, "", in_table=True)
            if spec is not None:
                specs.append(spec)
        return tuple(specs)

    def _constraints(self, raw: Mapping[str, Any], kind: FieldType) -> dict[str, Any]:
        result = {}
        # In the order written, so that messages come in the order an administrator reads them.
        for key in (k for k in raw if k in GENERIC_CONSTRAINTS and k in kind.constraints):
            try:
                result[key] = compile_limit(key, raw[key], kind)
            except ValueError as exc:
                self.problems.add(key_origin(raw, key), str(exc))
        return result

    def _with_default(self, raw: Mapping[str, Any], spec: FieldSpec) -> FieldSpec:
        if "default" not in raw:
            return spec
        value, issues = spec.kind.clean(raw["default"])
        if issues:
            self.problems.add(key_origin(raw, "default"), f"默认值“{raw['default']}”对字段“{spec.key}”无效", f"错误代码：{issues[0].code}")
            return spec
        return _replace(spec, default=value)

    def _expression(self, source: Any, origin: Origin | None, known: Mapping[str, FieldSpec],
                    boolean: bool = True) -> Expression | None:
        samples = {**{k: f.kind.sample() for k, f in known.items()}, **self.context}
        try:
            return self.expressions.compile(source, [*known, *self.context], origin, samples, boolean=boolean)
        except ExpressionProblem as exc:
            broken = self.declared - set(known)
            # Whole identifiers only: a failed field `d` must not silence an error about `nofield`.
            if not any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", str(source)) for name in broken):
                self.problems.add(origin, exc.message, exc.hint)
            return None

    def _with_conditions(self, raw_fields: list, specs: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        result = {}
        for raw, _ in raw_fields:
            spec = specs.get(raw["key"])
            if spec is None:
                continue
            changes = {}
            for name in ("visible_if", "required_if"):
                if name in raw:
                    changes[name] = self._expression(raw[name], key_origin(raw, name), specs)
            if "compute" in raw:
                changes["compute"] = self._computed(raw, spec, specs)
            result[spec.key] = _replace(spec, **changes) if changes else spec
        return result

    def _computed(self, raw: Mapping[str, Any], spec: FieldSpec, specs: Mapping[str, FieldSpec]) -> Expression | None:
        where = key_origin(raw, "compute")
        if not spec.kind.user_input or spec.kind.sub_fields() or spec.kind.sql_type is None:
            self.problems.add(where, f"类型 {spec.kind.name}（{spec.kind.title}）的字段不能设置 compute",
                              "计算字段用于数字、文字、日期、是/否等单个值，例如 type: decimal")
            return None
        return self._expression(raw["compute"], where, specs, boolean=False)

    def _check_cycles(self, specs: Mapping[str, FieldSpec]) -> None:
        """Computed values and generated numbers made from one another in a circle could never be worked out: each
        save would fail. Refused here, at the first field of each circle."""
        reads = {key: set(spec.compute.names) if spec.compute is not None else set(spec.kind.referenced_fields())
                 for key, spec in specs.items()}
        reported: set[str] = set()
        for start in specs:
            path = _cycle_from(start, reads)
            if path and not reported & set(path):
                reported |= set(path)
                spec = specs[start]
                self.problems.add(spec.compute.origin if spec.compute is not None else spec.origin,
                                  f"字段之间循环引用：{' → '.join(specs[k].label for k in path)}",
                                  "计算字段（compute）和自动编号（pattern）不能直接或间接引用自己")

    def _check_generated(self, specs: Mapping[str, FieldSpec]) -> None:
        for spec in specs.values():
            for name in spec.kind.referenced_fields():
                if name not in specs:
                    self.problems.add(spec.origin, f"编号规则引用了不存在的字段“{name}”", did_you_mean(name, specs))

    def _rules(self, specs: Mapping[str, FieldSpec]) -> tuple[RuleSpec, ...]:
        rules = []
        for raw in self.data.get("rules", []):
            check = self._expression(raw["check"], key_origin(raw, "check"), specs)
            when = self._expression(raw["when"], key_origin(raw, "when"), specs) if "when" in raw else None
            if check is None or ("when" in raw and when is None):
                continue
            targets = self._keys(raw.get("fields", []), "fields", specs, raw) or tuple(k for k in specs if k in check.names)
            rules.append(RuleSpec(raw["key"], check, raw["message"], targets, when, raw.origin))
        return tuple(rules)

    def _figures(self, specs: Mapping[str, FieldSpec]) -> dict[str, FigureSpec]:
        """`figures:` — each names one kind with the number field it reads (`rank: total`), and the fields or org
        levels whose values make its groups (`within: [exam, class]`)."""
        figures: dict[str, FigureSpec] = {}
        for index, raw in enumerate(self.data.get("figures", [])):
            where = item_origin(self.data, "figures", index)
            key = raw["key"]
            if key in specs or key in figures:
                self.problems.add(key_origin(raw, "key"), f"统计项的键“{key}”与{'字段' if key in specs else '另一统计项'}重名", "换一个键，例如 class_rank")
                continue
            kinds = [k for k in FIGURE_KINDS if k in raw]
            if len(kinds) != 1:
                self.problems.add(where, f"统计项“{key}”须写且只写一种：{'、'.join(FIGURE_KINDS)}",
                                  "例如 rank: total 表示按总分排名；avg: total 表示平均分")
                continue
            kind = kinds[0]
            of = raw[kind]
            spec = specs.get(of)
            if spec is None:
                if of not in self.declared:
                    self.problems.add(key_origin(raw, kind), f"统计项“{key}”引用了不存在的字段“{of}”", field_hint(of, specs))
                continue
            if spec.kind.name not in ("integer", "decimal"):
                self.problems.add(key_origin(raw, kind), f"统计项“{key}”只能统计数字字段（integer、decimal），“{of}”是 {spec.kind.name}",
                                  "排名、平均分等读的是分数、总分这类数字")
                continue
            if kind == "pass_rate" and "at_least" not in raw:
                self.problems.add(where, f"达标率“{key}”需要 at_least：达到多少算达标", "例如 at_least: 60")
                continue
            within = self._within(raw, specs)
            if within is None:
                continue
            places = raw.get("places", 0 if kind in ("rank", "count") else 1)
            figures[key] = FigureSpec(
                key=key, label=raw["label"], kind=kind, of=of, within=within,
                field=self._figure_field(key, raw["label"], kind, spec, places),
                descending=raw.get("order", "desc") == "desc", places=places, at_least=raw.get("at_least"),
                origin=key_origin(raw, "key"),
            )
        return figures

    def _grid(self, specs: Mapping[str, FieldSpec]) -> GridSpec | None:
        raw = self.data.get("grid")
        if raw is None:
            return None
        before = len(self.problems)
        rows = specs.get(raw["rows"])
        if rows is None or rows.kind.name != "link":
            self.problems.add(key_origin(raw, "rows"), f"grid.rows 须是本表单的关联字段（type: link），“{raw['rows']}”不是",
                              "例如 rows: student：每行是一名学生")
        for index, key in enumerate(raw.get("fixed", [])):
            spec = specs.get(key)
            if spec is None or spec.kind.sql_type is None or spec.kind.sub_fields():
                self.problems.add(item_origin(raw, "fixed", index), f"grid.fixed 的“{key}”须是本表单中单个值的字段（如关联的考试）",
                                  field_hint(key, specs) if key not in specs else "")
        for index, key in enumerate(raw["columns"]):
            spec = specs.get(key)
            if spec is None or not spec.user_input or spec.kind.sub_fields() or spec.kind.name in ("file", "image", "link"):
                self.problems.add(item_origin(raw, "columns", index), f"grid.columns 的“{key}”须是本表单中可填写的单个值字段",
                                  field_hint(key, specs) if key not in specs else "计算字段、表格、附件和关联字段不能作为表格列")
        if len(self.problems) > before:
            return None
        return GridSpec(raw["rows"], tuple(raw.get("fixed", ())), tuple(raw["columns"]), key_origin(self.data, "grid"))

    def _within(self, raw: Mapping[str, Any], specs: Mapping[str, FieldSpec]) -> tuple[str, ...] | None:
        within = tuple(raw.get("within", ()))
        ok = True
        for index, name in enumerate(within):
            if name in self.org_levels:
                continue
            spec = specs.get(name)
            if spec is None:
                if name not in self.declared:
                    self.problems.add(item_origin(raw, "within", index), f"within 引用了不存在的字段或组织层级“{name}”",
                                      did_you_mean(name, [*specs, *self.org_levels]) or f"组织层级：{'、'.join(self.org_levels)}")
                ok = False
            elif spec.kind.sql_type is None or spec.kind.sub_fields():
                self.problems.add(item_origin(raw, "within", index), f"within 的字段“{name}”不是单个值（{spec.kind.name}），不能用来分组",
                                  "用考试、班级、学科这类单选、关联或文字字段")
                ok = False
        return within if ok else None

    @staticmethod
    def _figure_field(key: str, label: str, kind: str, of: FieldSpec, places: int) -> FieldSpec:
        """A figure read like a read-only field: ranks and counts are whole numbers, the rest decimals."""
        if kind in ("rank", "count"):
            number = FIELD_TYPES["integer"].build({}, {})
        elif kind in ("min", "max", "sum") and of.kind.name == "integer":
            number = FIELD_TYPES["integer"].build({}, {})
        else:
            number = FIELD_TYPES["decimal"].build({"places": places}, {})
        return FieldSpec(key=key, label=label, kind=number, readonly=True, help="统计项：由系统按同组记录计算")

    def _list(self, specs: Mapping[str, FieldSpec], figures: Mapping[str, FigureSpec] | None = None) -> ListSpec:
        raw = self.data.get("list", {})
        shown = {**specs, **{k: f.field for k, f in (figures or {}).items()}}
        columns = self._keys(raw.get("columns", []), "columns", shown, raw) or tuple(list(specs)[:5])
        sort = raw.get("sort", "")
        if sort:
            self._keys([sort.lstrip("-")], "sort", shown, raw)
        return ListSpec(columns, self._keys(raw.get("filters", []), "filters", specs, raw),
                        self._keys(raw.get("search", []), "search", specs, raw), sort)

    def _keys(self, keys: Any, name: str, specs: Mapping[str, FieldSpec], parent: Any = None) -> tuple[str, ...]:
        parent = parent if parent is not None else self.data
        for index, key in enumerate(keys):
            if key not in specs and key not in self.declared:
                self.problems.add(item_origin(parent, name, index), f"“{name}”引用了不存在的字段“{key}”", field_hint(key, specs))
        return tuple(k for k in keys if k in specs)


def field_hint(key: str, fields: Mapping[str, FieldSpec]) -> str:
    """For a key that names no field: the field it was renamed to, else the closest key."""
    renamed = next((spec.key for spec in fields.values() if key in spec.renamed_from), None)
    if renamed is not None:
        return f"字段已改名为“{renamed}”（renamed_from），请改用新键"
    return did_you_mean(key, fields)


def check_links(forms: dict[str, FormSpec], declared: Mapping[str, set[str]], problems: Problems) -> None:
    """Links name forms and their fields, which only the set of all forms knows: checked once every form compiled.
    A child form (belongs_to) takes its parent's unit level and label: its records sit in their parent's unit."""
    for form in forms.values():
        for spec in form.fields.values():
            if spec.kind.name != "link":
                continue
            target_key = spec.kind.form  # type: ignore[attr-defined]
            target = forms.get(target_key)
            if target is None:
                if target_key not in declared:  # a form whose own file has errors was reported there
                    problems.add(spec.origin, f"字段“{spec.key}”关联的表单“{target_key}”不存在", did_you_mean(target_key, forms))
                continue
            for name in spec.kind.display:  # type: ignore[attr-defined]
                if name not in target.fields:
                    problems.add(spec.origin, f"字段“{spec.key}”的 display 引用了表单“{target_key}”中不存在的字段“{name}”",
                                 did_you_mean(name, target.fields))
    for key, form in list(forms.items()):
        parent = forms.get(form.parent_form) if form.parent_field else None
        if form.print_parent_fields and parent is None and not form.parent_field:
            problems.add(form.origin, f"表单“{form.key}”不属于其他表单，print.parent_fields 无从打印", "去掉 parent_fields，或先写 belongs_to")
        for name in form.print_parent_fields if parent is not None else ():
            if name not in parent.fields:
                problems.add(form.origin, f"print.parent_fields 引用了表单“{parent.key}”中不存在的字段“{name}”",
                             did_you_mean(name, parent.fields))
        if parent is None:
            continue
        if parent.parent_field:
            problems.add(form.fields[form.parent_field].origin, f"表单“{form.key}”属于“{parent.key}”，而“{parent.key}”本身也属于另一个表单",
                         "belongs_to 只支持一层：成绩属于学生，学生不再属于别的表单")
        elif form.unit_level and form.unit_level != parent.unit_level:
            problems.add(form.origin, f"表单“{form.key}”属于“{parent.key}”，记录随上级记录放在它的单位里，不能另设单位层级“{form.unit_level}”",
                         "去掉 unit: level，或写成与上级表单相同的层级")
        else:
            forms[key] = _replace(form, unit_level=parent.unit_level, unit_label=parent.unit_label)


def _cycle_from(start: str, reads: Mapping[str, set[str]]) -> list[str]:
    """The fields of a circle of references that returns to `start` (start first and last), or []."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        key, path = stack.pop()
        for name in sorted(reads.get(key, ())):
            if name == start:
                return [*path, start]
            if name not in seen and name in reads:
                seen.add(name)
                stack.append((name, [*path, name]))
    return []


# --- roles and org ------------------------------------------------------------------------------

def compile_role(data: Mapping[str, Any], forms: Mapping[str, FormSpec], org_levels: tuple[str, ...],
                 problems: Problems, declared: Mapping[str, set[str]] | None = None) -> RoleSpec:
    scopes = (*BUILTIN_SCOPES, *org_levels)
    if data["scope"] not in scopes:
        problems.add(key_origin(data, "scope"), f"未知的数据范围“{data['scope']}”",
                     did_you_mean(data["scope"], scopes) or f"可选：{'、'.join(scopes)}")
    policies = {}
    for form_key, raw in data.get("forms", {}).items():
        form = forms.get(form_key)
        if form is None and form_key in (declared or {}):
            continue  # the form's file has errors of its own; "unknown form" would only add noise
        if form is None and form_key != "*":
            problems.add(name_origin(data["forms"], form_key), f"未知的表单“{form_key}”", did_you_mean(form_key, forms) or "用 \"*\" 表示所有表单")
            continue
        for name in ("readonly", "hidden", "masked"):
            for index, key in enumerate(raw.get(name, [])):
                if form is not None and key not in form.fields and key not in (declared or {}).get(form_key, ()):
                    problems.add(item_origin(raw, name, index), f"表单“{form_key}”没有字段“{key}”", field_hint(key, form.fields))
        if raw.get("scope") and raw["scope"] not in (*BUILTIN_SCOPES, *org_levels):
            problems.add(key_origin(raw, "scope"), f"未知的数据范围“{raw['scope']}”",
                         did_you_mean(raw["scope"], (*BUILTIN_SCOPES, *org_levels)) or f"可选：{'、'.join((*BUILTIN_SCOPES, *org_levels))}")
        policies[form_key] = FormPolicy(
            actions=frozenset(raw["actions"]), hidden=frozenset(raw.get("hidden", [])),
            readonly=frozenset(raw.get("readonly", [])), masked=frozenset(raw.get("masked", [])),
            reveal_sensitive=raw.get("reveal_sensitive", False), scope=raw.get("scope", ""),
        )
    return RoleSpec(key=data["key"], name=data["name"], scope=data["scope"], forms=MappingProxyType(policies),
                    admin=data.get("admin", False), require_2fa=data.get("require_2fa", False),
                    issue_reset_codes=data.get("issue_reset_codes", False), description=data.get("description", ""),
                    origin=data.origin)


def create_blockers(data: Mapping[str, Any], role: RoleSpec, forms: Mapping[str, FormSpec]) -> list[DefinitionError]:
    """Warnings for forms this role may create but never could: a required field it cannot fill, with no default.

    A sensitive field is one such: a role without `reveal_sensitive` sees it masked, so it cannot type it."""
    warnings = []
    for form_key, found in role.forms.items():
        if "create" not in found.actions:
            continue
        # "*" covers the forms without an entry of their own.
        targets = [f for k, f in forms.items() if k not in role.forms] if form_key == "*" else [forms.get(form_key)]
        for form in (f for f in targets if f is not None):
            for spec in form.fields.values():
                reason = _why_unfillable(found, spec)
                if reason and spec.required and spec.user_input and spec.default is None and spec.visible_if is None:
                    warnings.append(DefinitionError(
                        name_origin(data.get("forms"), form_key),
                        f"警告：角色“{role.name}”可以新建“{form.title}”，但不能填写必填字段“{spec.label}”（{reason}），"
                        "因此无法新建任何记录",
                        "给该角色加上 reveal_sensitive: true" if reason.startswith("敏感") else
                        "让该角色可以填写这个字段，或去掉 create，或为字段设置 default",
                    ))
    return warnings


def _why_unfillable(found: FormPolicy, spec: FieldSpec) -> str:
    if spec.key in found.hidden:
        return "在该角色的 hidden 中"
    if spec.key in found.readonly:
        return "在该角色的 readonly 中"
    if spec.readonly:
        return "字段设为 readonly"
    if spec.key in found.masked:
        return "在该角色的 masked 中"
    if is_masked(found, spec):
        return "敏感字段，而该角色没有 reveal_sensitive: true"
    return ""


def compile_org_levels(data: Mapping[str, Any], problems: Problems) -> tuple[OrgLevel, ...]:
    levels = tuple(OrgLevel(item["key"], item["label"], _number_pattern(item, problems)) for item in data["levels"])
    keys = [level.key for level in levels]
    for clash in {k for k in keys if keys.count(k) > 1}:
        problems.add(data.origin, f"重复的组织层级“{clash}”")
    for reserved in set(keys) & set(BUILTIN_SCOPES):
        problems.add(data.origin, f"组织层级不能叫“{reserved}”", "own、subtree、all 是保留的数据范围")
    _check_units(data.get("demo_units", []), keys, problems)
    return levels


def _number_pattern(level: Mapping[str, Any], problems: Problems) -> str:
    pattern = level.get("number", "")
    if not pattern:
        return ""
    try:
        groups = re.compile(pattern).groups
    except re.error as exc:
        problems.add(key_origin(level, "number"), f"number 不是有效的正则表达式：{exc}", r"例如 '\((\d+)\)' 取“高一(5)班”中的 5")
        return ""
    if groups < 1:
        problems.add(key_origin(level, "number"), "number 须有一个括号分组，框出名称中的编号", r"例如 '\((\d+)\)' 取“高一(5)班”中的 5")
        return ""
    return str(pattern)


def _check_units(units: Any, levels: list[str], problems: Problems, depth: int = -1) -> None:
    for unit in units:
        level = unit["level"]
        if level not in levels:
            problems.add(key_origin(unit, "level"), f"未知的组织层级“{level}”", did_you_mean(level, levels))
        elif levels.index(level) <= depth:
            problems.add(key_origin(unit, "level"), f"“{unit['name']}”的层级不能高于或等于它的上级")
        _check_units(unit.get("children", []), levels, problems, levels.index(level) if level in levels else depth)
