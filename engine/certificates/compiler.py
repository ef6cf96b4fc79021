"""Compiles certificate files (after the forms, roles and workflows they refer to) into frozen `CertificateSpec`s."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from engine.certificates.schema import CERTIFICATE
from engine.certificates.spec import APPLICATION, RECORD, YEAR, CertificateField, CertificateSpec, LayoutSpec
from engine.certificates.text import BUILTINS, TextProblem, compile_text
from engine.compiler import Problems, digest
from engine.definition_files import read_definition_files
from engine.errors import did_you_mean
from engine.expressions import ExpressionCompiler, ExpressionProblem
from engine.fields.files import FileField, image_format
from engine.fields.generated import GeneratedField
from engine.spec import Definitions, Expression, FieldSpec, FormSpec, ListSpec, Origin, SectionSpec
from engine.workflows.spec import WorkflowSpec
from engine.yaml_source import LocatedDict, item_origin, key_origin

_SOURCE = re.compile(r"^(record|application)\.([a-z][a-z0-9_]*)$")
# A number is typed into the public page and carried in a URL: letters, digits and "-" only.
NUMBER_TEXT = re.compile(r"^[0-9A-Za-z-]*$")
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")


def compile_certificates(root: Path, definitions: Definitions, workflows: Mapping[str, WorkflowSpec],
                         expressions: ExpressionCompiler, problems: Problems) -> dict[str, CertificateSpec]:
    """Every `certificates/*.yaml` under `root`; problems are collected, never raised."""
    result: dict[str, CertificateSpec] = {}
    for file in read_definition_files(root, "certificates/*.yaml", CERTIFICATE, problems):
        key = file.data["key"]
        if key in result:
            problems.add(key_origin(file.data, "key"), f"重复的证书键“{key}”", f"已在 {result[key].path} 中定义")
            continue
        spec = CertificateCompiler(file.data, file.shown, root, definitions, workflows, expressions, problems).compile()
        if spec is not None:
            result[key] = spec
    return result


class CertificateCompiler:
    """Compiles one schema-checked certificate file; `problems` collects everything wrong with it."""

    def __init__(self, data: LocatedDict, path: str, root: Path, definitions: Definitions,
                 workflows: Mapping[str, WorkflowSpec], expressions: ExpressionCompiler, problems: Problems) -> None:
        self.data, self.path, self.root = data, path, root.resolve()
        self.definitions, self.workflows, self.expressions, self.problems = definitions, workflows, expressions, problems
        self.levels = tuple(level.key for level in definitions.org_levels)
        # Keys of every certificate field written in the file, compiled or not: the number and the text may name a
        # field that failed to compile without a second error about it.
        self.declared: set[str] = {raw["key"] for raw in data["fields"]}

    def compile(self) -> CertificateSpec | None:
        before = len(self.problems)
        form = self._form()
        issue = self.data.get("issue", {})
        workflow = self._workflow(issue, form)
        roles = self.data["roles"]
        issue_roles, revoke_roles = self._roles(roles, "issue"), self._roles(roles, "revoke")
        if form is None:
            return None
        when = self._when(issue, form)
        batch = issue.get("batch", "")
        if batch:
            self._level(batch, key_origin(issue, "batch"))
        fields = self._fields(form, workflow)
        holder = self.data["holder"]
        if holder not in self.declared:
            self.problems.add(key_origin(self.data, "holder"), f"holder 应是证书字段之一，没有“{holder}”",
                              did_you_mean(holder, self.declared) or "写持证人姓名所在的证书字段，例如 name")
        number = self._number(fields)
        layout = self._layout(form, fields)
        if len(self.problems) > before or number is None or layout is None:
            return None
        return CertificateSpec(
            key=self.data["key"], title=self.data["title"], form=form.key, holder=holder, fields=fields, number=number,
            layout=layout, issue_roles=issue_roles, revoke_roles=revoke_roles, version=digest(self.data),
            workflow=workflow.key if workflow is not None else "", when=when, batch_level=batch,
            batch_form=_batch_form(self.data["key"], self.data["title"], fields), path=self.path, origin=self.data.origin,
        )

    # --- references to the rest of the definitions ------------------------------------------------
    def _form(self) -> FormSpec | None:
        key = self.data["form"]
        form = self.definitions.forms.get(key)
        if form is None:
            self.problems.add(key_origin(self.data, "form"), f"未知的表单“{key}”",
                              did_you_mean(key, self.definitions.forms) or f"可用的表单：{'、'.join(self.definitions.forms)}")
        return form

    def _workflow(self, issue: Mapping[str, Any], form: FormSpec | None) -> WorkflowSpec | None:
        key = issue.get("workflow")
        if not key:
            return None
        workflow = self.workflows.get(key)
        if workflow is None:
            self.problems.add(key_origin(issue, "workflow"), f"未知的流程“{key}”",
                              did_you_mean(key, self.workflows) or f"可用的流程：{'、'.join(self.workflows) or '（无）'}")
            return None
        if form is not None and workflow.form != form.key:
            self.problems.add(key_origin(issue, "workflow"), f"流程“{key}”办理的是表单“{workflow.form}”，不是证书的表单“{form.key}”",
                              "证书由办理同一表单记录的流程颁发")
            return None
        return workflow

    def _roles(self, roles: Mapping[str, Any], name: str) -> tuple[str, ...]:
        keys = tuple(roles[name])
        for index, key in enumerate(keys):
            if key not in self.definitions.roles:
                self.problems.add(item_origin(roles, name, index), f"未知的角色“{key}”",
                                  did_you_mean(key, self.definitions.roles) or f"可用的角色：{'、'.join(self.definitions.roles)}")
        return keys

    def _level(self, level: str, where: Origin | None) -> bool:
        if level in self.levels:
            return True
        self.problems.add(where, f"未知的组织层级“{level}”", did_you_mean(level, self.levels) or f"在 org.yaml 中定义的层级：{'、'.join(self.levels)}")
        return False

    def _when(self, issue: Mapping[str, Any], form: FormSpec) -> Expression | None:
        if "when" not in issue:
            return None
        where = key_origin(issue, "when")
        samples = {k: f.kind.sample() for k, f in form.fields.items()}
        try:
            return self.expressions.compile(issue["when"], form.fields, where, samples)
        except ExpressionProblem as exc:
            self.problems.add(where, exc.message, exc.hint)
            return None

    # --- fields and number --------------------------------------------------------------------------
    def _fields(self, form: FormSpec, workflow: WorkflowSpec | None) -> tuple[CertificateField, ...]:
        """The fields that compiled (the others have their errors)."""
        result, seen = [], set()
        for raw in self.data["fields"]:
            if raw["key"] in seen or raw["key"] in BUILTINS or raw["key"] == YEAR:
                self.problems.add(key_origin(raw, "key"), f"重复的证书字段“{raw['key']}”" if raw["key"] in seen
                                  else f"证书字段不能叫“{raw['key']}”", "" if raw["key"] in seen
                                  else f"{'、'.join([*BUILTINS, YEAR])} 是证书文字和编号中的保留名称")
                continue
            seen.add(raw["key"])
            spec = self._source(raw, form, workflow)
            if spec is None:
                continue
            source, name = _SOURCE.match(raw["from"]).groups()  # type: ignore[union-attr]
            result.append(CertificateField(raw["key"], raw["label"], source, name, spec, raw.get("required", True),
                                           key_origin(raw, "key")))
        return tuple(result)

    def _source(self, raw: Mapping[str, Any], form: FormSpec, workflow: WorkflowSpec | None) -> FieldSpec | None:
        where = key_origin(raw, "from")
        found = _SOURCE.match(raw["from"])
        if found is None:
            self.problems.add(where, f"“{raw['from']}”的写法不对", "写成 record.<字段> 或 application.<申请表字段>，例如 record.name")
            return None
        side, name = found.groups()
        if side == APPLICATION and workflow is None:
            if self.data.get("issue", {}).get("workflow"):
                return None  # the workflow's own error (unknown, or of another form) says what is wrong
            self.problems.add(where, "application.<字段> 需要 issue.workflow", "写明由哪个流程的审批颁发，例如 issue: {workflow: graduate}")
            return None
        fields = form.fields if side == RECORD else workflow.application.fields  # type: ignore[union-attr]
        spec = fields.get(name)
        if spec is None:
            owner = f"表单“{form.key}”" if side == RECORD else f"流程“{workflow.key}”的申请表"  # type: ignore[union-attr]
            self.problems.add(where, f"{owner}没有字段“{name}”", did_you_mean(name, fields))
            return None
        if isinstance(spec.kind, FileField) or spec.kind.widget == "table":
            self.problems.add(where, f"字段“{spec.label}”（{spec.kind.title}）不能印在证书上",
                              "照片写在 layout.photo；证书字段须是文字、数字、日期或选项")
            return None
        return spec

    def _number(self, fields: tuple[CertificateField, ...]) -> GeneratedField | None:
        where = key_origin(self.data, "number")
        try:
            number = GeneratedField(pattern=self.data["number"])
        except ValueError as exc:
            self.problems.add(where, str(exc))
            return None
        if not number.has_sequence:
            self.problems.add(where, "证书编号须含序号 {seq:N}", "补发时换发新编号，旧编号不再使用，例如 \"{year}{school_no}{seq:2}\"")
        by_key = {f.key: f for f in fields}
        for part in number.parts:
            if part.kind == "text" and not NUMBER_TEXT.match(str(part.value)):
                self.problems.add(where, f"证书编号中的“{part.value}”只能由字母、数字和“-”组成", "编号要在查验页面输入，也放在二维码的网址里")
            elif part.kind == "field" and part.value != YEAR:
                field = by_key.get(str(part.value))
                if field is None and part.value in self.declared:
                    continue  # the field's own error says what is wrong with it
                if field is None:
                    self.problems.add(where, f"证书编号引用了不存在的证书字段“{part.value}”",
                                      did_you_mean(str(part.value), [*by_key, YEAR]) or f"可用：{'、'.join([*by_key, YEAR])}")
                elif field.spec.sensitive:
                    self.problems.add(where, f"证书编号不能包含敏感字段“{field.spec.label}”",
                                      "编号会出现在公开的查验页面和二维码里；用学号等非敏感字段，记录与证书的关联由系统保存")
        return number

    # --- layout -------------------------------------------------------------------------------------
    def _layout(self, form: FormSpec, fields: tuple[CertificateField, ...]) -> LayoutSpec | None:
        raw = self.data["layout"]
        before = len(self.problems)
        samples = {key: "示例" for key in self.declared}
        samples.update({f.key: f.spec.kind.to_text(f.spec.kind.sample()) for f in fields})
        samples.update({"number": "202600001", "school": "示例学校", "issued_on": "2026-07-01", "title": raw["title"]})
        try:
            text = compile_text(raw["text"], self.declared, samples)
        except TextProblem as exc:
            self.problems.add(key_origin(raw, "text"), exc.message, exc.hint)
            text = None
        school = raw.get("school", "")
        if school:
            self._level(school, key_origin(raw, "school"))
        photo = raw.get("photo", "")
        if photo:
            spec = form.fields.get(photo)
            if spec is None:
                self.problems.add(key_origin(raw, "photo"), f"表单“{form.key}”没有字段“{photo}”", did_you_mean(photo, form.fields))
            elif spec.kind.name != "image":
                self.problems.add(key_origin(raw, "photo"), f"照片须是图片字段（type: image），“{spec.label}”是{spec.kind.title}")
        seal = self._file(raw, "seal", lambda p: image_format(p.read_bytes()) in ("png", "jpeg"), "印章须是 PNG 或 JPEG 图片")
        font = self._file(raw, "font", lambda p: p.suffix.lower() in FONT_SUFFIXES, "字体须是 .ttf、.otf 或 .ttc 文件")
        if len(self.problems) > before or text is None:
            return None
        return LayoutSpec(title=raw["title"], text=text, text_source=raw["text"], paper=raw.get("paper", "A4"),
                          landscape=raw.get("orientation", "landscape") == "landscape", school_level=school,
                          photo=photo, seal=seal, font=font)

    def _file(self, raw: Mapping[str, Any], name: str, valid: Any, wrong: str) -> str:
        """A file the layout names, relative to the definitions directory and inside it."""
        if name not in raw:
            return ""
        where = key_origin(raw, name)
        path = (self.root / raw[name]).resolve()
        if not path.is_relative_to(self.root):
            self.problems.add(where, f"文件“{raw[name]}”不在定义目录中", "写相对于定义目录的路径，例如 certificates/seals/school.png")
        elif not path.is_file():
            self.problems.add(where, f"找不到文件“{raw[name]}”", f"路径相对于定义目录 {self.root}")
        elif not valid(path):
            self.problems.add(where, wrong)
        else:
            return str(path)
        return ""


def _batch_form(key: str, title: str, fields: tuple[CertificateField, ...]) -> FormSpec | None:
    """The application fields a batch asks for, as a form: each as the workflow declares it, required as the
    certificate needs it (no conditions: there is no application for them to read)."""
    wanted = {f.name: replace(f.spec, required=f.required, visible_if=None, required_if=None, section="issue")
              for f in fields if f.source == APPLICATION}
    if not wanted:
        return None
    return FormSpec(key=f"certificate_{key}", title=title, fields=MappingProxyType(wanted),
                    sections=(SectionSpec("issue", "颁发信息", tuple(wanted)),), title_field="",
                    list=ListSpec((), (), ()), natural_key=(), rules=(), version=digest(sorted(wanted)))
