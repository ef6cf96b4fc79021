"""Compiles report and dashboard files (after the forms and roles they name) into frozen specs; problems are
collected with the file:line:column where they are fixed, never raised."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from engine.compiler import Problems
from engine.definition_files import read_definition_files
from engine.errors import did_you_mean
from engine.reports.schema import DASHBOARD, REPORT
from engine.reports.spec import MEASURE_LABELS, Card, Current, DashboardSpec, Dimension, Filter, Measure, ReportSpec
from engine.spec import Definitions, FieldSpec, FormSpec, Origin
from engine.yaml_source import item_origin, key_origin

GROUPABLE = frozenset({"choice", "boolean", "integer", "text", "generated", "link"})
NUMERIC = frozenset({"integer", "decimal"})
DATES = frozenset({"date"})


def compile_reports(root: Path, definitions: Definitions, problems: Problems) -> dict[str, ReportSpec]:
    result: dict[str, ReportSpec] = {}
    for file in read_definition_files(root, "reports/*.yaml", REPORT, problems):
        key = file.data["key"]
        if key in result:
            problems.add(key_origin(file.data, "key"), f"重复的报表键“{key}”", f"已在 {result[key].path} 中定义")
            continue
        spec = ReportCompiler(file.data, file.shown, definitions, problems).compile()
        if spec is not None:
            result[key] = spec
    return result


def compile_dashboards(root: Path, definitions: Definitions, reports: Mapping[str, ReportSpec],
                       problems: Problems) -> dict[str, DashboardSpec]:
    result: dict[str, DashboardSpec] = {}
    for file in read_definition_files(root, "dashboards/*.yaml", DASHBOARD, problems):
        data = file.data
        if data["key"] in result:
            problems.add(key_origin(data, "key"), f"重复的首页看板键“{data['key']}”")
            continue
        before = len(problems)
        for index, role in enumerate(data["roles"]):
            if role not in definitions.roles:
                problems.add(item_origin(data, "roles", index), f"未知的角色“{role}”",
                             did_you_mean(role, definitions.roles) or f"可用的角色：{'、'.join(definitions.roles)}")
        cards = []
        for raw in data.get("cards", []):
            if raw.get("tasks"):
                cards.append(Card(raw["label"], tasks=True, help=raw.get("help", "")))
                continue
            form = _form(raw, definitions, problems)
            if form is None:
                continue
            filters = _filters(raw.get("filters", {}), form, problems)
            current = _current(raw["current"], form, problems) if "current" in raw else None
            cards.append(Card(raw["label"], form.key, filters, bool(raw.get("incomplete")), help=raw.get("help", ""),
                              current=current))
        for index, key in enumerate(data.get("charts", [])):
            if key not in reports:
                problems.add(item_origin(data, "charts", index), f"未知的报表“{key}”",
                             did_you_mean(key, reports) or f"可用的报表：{'、'.join(reports) or '（无）'}")
        if len(problems) == before:
            result[data["key"]] = DashboardSpec(data["key"], data["title"], tuple(data["roles"]), tuple(cards),
                                                tuple(data.get("charts", [])), data.origin)
    return result


def _form(data: Mapping[str, Any], definitions: Definitions, problems: Problems) -> FormSpec | None:
    key = data.get("form")
    form = definitions.forms.get(key) if key else None
    if form is None:
        where = key_origin(data, "form") if key else getattr(data, "origin", None)
        problems.add(where, f"未知的表单“{key}”" if key else "缺少必填的键“form”",
                     did_you_mean(key or "", definitions.forms) or f"可用的表单：{'、'.join(definitions.forms)}")
    return form


def _field(form: FormSpec, key: str, where: Origin | None, problems: Problems, what: str) -> FieldSpec | None:
    spec = form.fields.get(key)
    if spec is None:
        problems.add(where, f"表单“{form.title}”没有字段“{key}”", did_you_mean(key, form.fields) or f"{what}应是该表单的字段")
        return None
    return spec


def _current(raw: Mapping[str, Any], form: FormSpec, problems: Problems) -> Current | None:
    """A card's `current: {field, period}`: a date field the card counts by this month or year."""
    where = key_origin(raw, "field")
    spec = _field(form, raw["field"], where, problems, "本月/本年的日期字段")
    if spec is None:
        return None
    if spec.kind.name not in DATES:
        dates = [f.key for f in form.fields.values() if f.kind.name in DATES]
        problems.add(where, f"字段“{spec.label}”不是日期字段，不能按本月/本年计数",
                     f"写日期字段，例如 {'、'.join(dates)}" if dates else f"表单“{form.title}”没有日期字段")
        return None
    if spec.sensitive:
        problems.add(where, f"字段“{spec.label}”是敏感字段，不能作为看板的计数条件", "看板按角色的脱敏设置显示，敏感字段不参与统计")
        return None
    return Current(spec.key, raw["period"])


def _filters(raw: Mapping[str, Any], form: FormSpec, problems: Problems) -> tuple[Filter, ...]:
    """Fixed filters, each value read by its field's type now, so that a value the list would not understand is a
    definition error and not an empty report."""
    found = []
    for key, value in raw.items():
        where = key_origin(raw, key)
        spec = _field(form, key, where, problems, "筛选条件")
        if spec is None:
            continue
        if spec.sensitive:
            problems.add(where, f"字段“{spec.label}”是敏感字段，不能作为报表的筛选条件", "报表按角色的脱敏设置显示，敏感字段不参与统计")
            continue
        if isinstance(value, Mapping) and value.get("empty"):
            found.append(Filter(key, empty=True))
            continue
        parts = dict(value) if isinstance(value, Mapping) else {"equals": value}
        texts: dict[str, str] = {}
        for name, given in parts.items():
            text = "true" if given is True else "false" if given is False else str(given)
            _cleaned, issues = spec.kind.clean(text)
            if issues:
                problems.add(where, f"字段“{spec.label}”的筛选值“{text}”无效", "写该字段能填写的值，例如选项的名称或代码")
            texts[name] = text
        found.append(Filter(key, equals=texts.get("equals"), low=texts.get("from"), high=texts.get("to")))
    return tuple(found)


class ReportCompiler:
    """Compiles one schema-checked report file."""

    def __init__(self, data: Mapping[str, Any], path: str, definitions: Definitions, problems: Problems) -> None:
        self.data, self.path, self.definitions, self.problems = data, path, definitions, problems
        self.levels = {level.key: level.label for level in definitions.org_levels}

    def compile(self) -> ReportSpec | None:
        before = len(self.problems)
        data = self.data
        form = _form(data, self.definitions, self.problems)
        for index, role in enumerate(data.get("roles", [])):
            if role not in self.definitions.roles:
                self.problems.add(item_origin(data, "roles", index), f"未知的角色“{role}”",
                                  did_you_mean(role, self.definitions.roles) or f"可用的角色：{'、'.join(self.definitions.roles)}")
        if form is None:
            return None
        kind = data.get("kind", "table")
        filters = _filters(data.get("filters", {}), form, self.problems)
        pick = self._pick(form, {f.key for f in filters})
        rows = columns = None
        measures: tuple[Measure, ...] = ()
        fields: tuple[str, ...] = ()
        if kind == "completeness":
            rows = self._dimension(form, data["rows"], key_origin(data, "rows")) if "rows" in data else None
            fields = self._completeness_fields(form)
        else:
            if "rows" not in data:
                self.problems.add(data.origin, "缺少必填的键“rows”", "写报表按什么分行，例如 rows: grade 或 rows: {level: school}")
            else:
                rows = self._dimension(form, data["rows"], key_origin(data, "rows"))
            if "columns" in data:
                columns = self._dimension(form, data["columns"], key_origin(data, "columns"))
            measures = self._measures(form, data.get("measures", ["count"]))
        if len(self.problems) > before:
            return None
        return ReportSpec(
            key=data["key"], title=data["title"], form=form.key, kind=kind, description=data.get("description", ""),
            roles=tuple(data.get("roles", ())), filters=filters, pick=pick, rows=rows, columns=columns,
            measures=measures, fields=fields, chart=data.get("chart", "none" if kind == "completeness" else "bar"),
            path=self.path, origin=data.origin)

    def _pick(self, form: FormSpec, fixed: set[str]) -> tuple[str, ...]:
        keys = tuple(self.data.get("pick", ()))
        for index, key in enumerate(keys):
            where = item_origin(self.data, "pick", index)
            spec = _field(form, key, where, self.problems, "可选筛选条件")
            if spec is not None and key in fixed:
                self.problems.add(where, f"字段“{spec.label}”已是固定的筛选条件，不能再由用户选择", "从 pick 或 filters 中去掉一处")
            elif spec is not None and spec.sensitive:
                self.problems.add(where, f"字段“{spec.label}”是敏感字段，不能作为报表的筛选条件")
        return keys

    def _dimension(self, form: FormSpec, raw: Any, where: Origin | None) -> Dimension | None:
        if isinstance(raw, str):
            raw = {"field": raw}
        if "level" in raw:
            level = raw["level"]
            if level not in self.levels:
                self.problems.add(where, f"未知的组织层级“{level}”",
                                  did_you_mean(level, self.levels) or f"在 org.yaml 中定义的层级：{'、'.join(self.levels)}")
                return None
            if level not in form.levels:
                self.problems.add(where, f"表单“{form.title}”的记录不在“{self.levels[level]}”层级之下")
                return None
            return Dimension("level", raw.get("label", self.levels[level]), level, origin=where)
        key = raw.get("field") or raw.get("age")
        spec = _field(form, key, where, self.problems, "分组")
        if spec is None:
            return None
        label = raw.get("label", spec.label)
        type_name = spec.kind.name
        if spec.sensitive:
            self.problems.add(where, f"字段“{spec.label}”是敏感字段，不能作为报表的分组", "报表只按非敏感字段分组")
            return None
        if "age" in raw:
            if type_name not in DATES:
                self.problems.add(where, f"按年龄分组须用日期字段，“{spec.label}”是{spec.kind.title}字段", "例如 age: birth_date")
                return None
            return Dimension("age", raw.get("label", "年龄"), key, spec, bands=self._edges(raw, where), origin=where)
        if "bands" in raw:
            if type_name not in NUMERIC:
                self.problems.add(where, f"分段（bands）须用数字字段，“{spec.label}”是{spec.kind.title}字段")
                return None
            return Dimension("bands", label, key, spec, bands=self._edges(raw, where), origin=where)
        if type_name in DATES:
            by = raw.get("by")
            if by is None:
                self.problems.add(where, f"日期字段“{spec.label}”须写按年还是按月分组", "加上 by: year、by: term（学期）或 by: month")
                return None
            return Dimension("date", label, key, spec, by=by, origin=where)
        if "by" in raw:
            self.problems.add(where, f"by 只用于日期字段，“{spec.label}”是{spec.kind.title}字段")
            return None
        if type_name not in GROUPABLE or spec.kind.sql_type is None:
            self.problems.add(where, f"不能按{spec.kind.title}字段“{spec.label}”分组",
                              "可按单选、是/否、整数、关联字段分组，数字字段用 bands 分段，日期字段用 by 或 age")
            return None
        return Dimension("field", label, key, spec, origin=where)

    def _edges(self, raw: Mapping[str, Any], where: Origin | None) -> tuple[Any, ...]:
        edges = tuple(raw["bands"])
        if list(edges) != sorted(set(edges)):
            self.problems.add(where, "bands 的分段点应从小到大排列且不重复", "例如 bands: [60, 80]")
        return edges

    def _measures(self, form: FormSpec, raw: list[Any]) -> tuple[Measure, ...]:
        found = []
        for index, item in enumerate(raw):
            where = item_origin(self.data, "measures", index)
            item = {item: True} if isinstance(item, str) else dict(item)
            kinds = [k for k in MEASURE_LABELS if k in item]
            if len(kinds) != 1:
                self.problems.add(where, "每个统计量须写且只写一种：" + "、".join(MEASURE_LABELS),
                                  "例如 - count 或 - {avg: score, label: 平均分}")
                continue
            kind = kinds[0]
            of = item[kind] if isinstance(item[kind], str) else ""
            spec = _field(form, of, where, self.problems, "统计") if of else None
            if of and spec is None:
                continue
            if spec is not None and spec.sensitive:
                self.problems.add(where, f"字段“{spec.label}”是敏感字段，不能统计")
                continue
            if kind in ("sum", "avg", "min", "max", "rate") and spec is not None and spec.kind.name not in NUMERIC:
                self.problems.add(where, f"{MEASURE_LABELS[kind]}须用数字字段，“{spec.label}”是{spec.kind.title}字段")
                continue
            if kind == "rate" and "at_least" not in item:
                self.problems.add(where, "达标率（rate）须写达标的分数", "例如 {rate: score, at_least: 60, label: 及格率}")
                continue
            label = item.get("label") or (f"{MEASURE_LABELS[kind]}{spec.label}" if spec is not None else MEASURE_LABELS[kind])
            found.append(Measure(f"m{index}", kind, label, of, spec, item.get("at_least"), item.get("places", 1)))
        return tuple(found)

    def _completeness_fields(self, form: FormSpec) -> tuple[str, ...]:
        keys = tuple(self.data.get("fields", ()))
        for index, key in enumerate(keys):
            _field(form, key, item_origin(self.data, "fields", index), self.problems, "完整性统计")
        return keys or tuple(k for k, s in form.fields.items() if s.user_input)
