"""Runs a form's fields, conditions and cross-field rules over one record's raw values."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.expressions import holds
from engine.issues import Issue
from engine.spec import FieldSpec, FormSpec
from engine.validation.rules import RULES


@dataclass
class CleanResult:
    values: dict[str, Any]
    issues: list[Issue] = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)  # fields switched off by visible_if
    required: set[str] = field(default_factory=set)  # fields required for this record

    @property
    def ok(self) -> bool:
        return not self.issues

    def issues_for(self, key: str) -> list[Issue]:
        return [i for i in self.issues if i.path == key or i.path.startswith(key + ".")]


def clean_field(field: FieldSpec, raw: Any) -> tuple[Any, list[Issue]]:
    """Convert one value and apply its type checks, generic constraints and unconditional `required`."""
    value, issues = _convert(field, raw)
    if value is None and not issues and field.required and field.kind.user_input:
        issues = [Issue("required")]
    return value, [i.at(field.key) for i in issues]


def _convert(field: FieldSpec, raw: Any) -> tuple[Any, list[Issue]]:
    value, issues = field.kind.clean(raw)
    if issues or value is None:
        return value, issues
    for key, limit in field.constraints.items():
        issues.extend(RULES[key](limit, value))
    return value, issues


def clean_record(form: FormSpec, raw: Mapping[str, Any]) -> CleanResult:
    """The one validation path: convert every field, apply conditions, then cross-field rules."""
    values: dict[str, Any] = {}
    issues: dict[str, list[Issue]] = {}
    for key, spec in form.fields.items():
        values[key], found = _convert(spec, raw.get(key))
        issues[key] = [i.at(key) for i in found]
    result = CleanResult(values=values)
    for key, spec in form.fields.items():
        if spec.visible_if is not None and not holds(spec.visible_if, values):
            result.hidden.add(key)
            values[key], issues[key] = None, []
            continue
        if spec.required or holds(spec.required_if, values):
            result.required.add(key)
            if values[key] is None and not issues[key] and spec.kind.user_input:
                issues[key] = [Issue("required", path=key)]
    for rule in form.rules:
        names = rule.check.names | (rule.when.names if rule.when else frozenset())
        # A rule speaks only about filled, individually valid values; emptiness is `required`'s job.
        if any(values.get(n) is None or issues.get(n) for n in names):
            continue
        if rule.when is not None and not holds(rule.when, values):
            continue
        if not holds(rule.check, values):
            for target in rule.fields:
                issues.setdefault(target, []).append(
                    Issue("rule", {"message": rule.message, "rule": rule.key}, path=target)
                )
    result.issues = [i for key in form.fields for i in issues.get(key, [])]
    return result
