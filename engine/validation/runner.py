"""Runs a form's fields, conditions and cross-field rules over one record's raw values."""
from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.expressions import holds, value_of
from engine.issues import Issue
from engine.spec import FieldSpec, FormSpec, constrained


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
    return field.clean(raw)


def clean_record(form: FormSpec, raw: Mapping[str, Any], writable: frozenset[str] | None = None,
                 context: Mapping[str, Any] | None = None) -> CleanResult:
    """The one validation path: convert every field, apply conditions, then cross-field rules.

    `writable`: the fields the saving user may fill, when known; a required field left empty that is not among
    them says so (required_not_writable) instead of asking for a value the user cannot give.
    `context`: names the form's expressions read besides its fields (a workflow application's `record`)."""
    plan = form.plan
    values: dict[str, Any] = {}
    scope: Mapping[str, Any] = ChainMap(values, dict(context)) if context else values
    issues: dict[str, list[Issue]] = {}  # only fields that have some
    for step in plan.steps:
        value, found = step.clean(raw.get(step.key))
        if step.checks:  # tested here: most fields have none, and this loop runs for every field of every row
            found = constrained(value, found, step.checks)
        values[step.key] = value
        if found:
            issues[step.key] = [i.at(step.key) for i in found]
    for step in plan.computed:
        # A computed value is the formula's, whatever was posted for it; one that reads an invalid value is empty.
        if any(name in issues for name in step.spec.compute.names):  # type: ignore[union-attr]
            values[step.key] = None
            continue
        value, found = step.clean(step.spec.kind.computed(value_of(step.spec.compute, scope)))  # type: ignore[arg-type]
        values[step.key] = None if found else value
    result = CleanResult(values=values)
    for step in plan.conditional:
        key = step.key
        if step.visible_if is not None and not holds(step.visible_if, scope):
            result.hidden.add(key)
            values[key] = None
            issues.pop(key, None)
            continue
        if step.required or holds(step.required_if, scope):
            result.required.add(key)
            if values[key] is None and key not in issues and step.asks_user:
                code = "required" if writable is None or key in writable else "required_not_writable"
                issues[key] = [Issue(code, path=key)]
    for rule, names in plan.rules:
        # A rule speaks only about filled, individually valid values; emptiness is `required`'s job.
        if any(values.get(n) is None or n in issues for n in names):
            continue
        if rule.when is not None and not holds(rule.when, scope):
            continue
        if not holds(rule.check, scope):
            for target in rule.fields:
                issues.setdefault(target, []).append(
                    Issue("rule", {"message": rule.message, "rule": rule.key}, path=target)
                )
    if issues:
        result.issues = [i for step in plan.steps for i in issues.get(step.key, ())]
    return result
