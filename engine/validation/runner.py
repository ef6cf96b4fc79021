"""Runs a form's fields, conditions and cross-field rules over one record's raw values."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from engine.expressions import holds
from engine.issues import Issue
from engine.spec import Expression, FieldSpec, FormSpec, RuleSpec
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
    return value, _constrained(value, issues, _checks(field))


def _checks(field: FieldSpec) -> tuple[tuple[Callable[[Any, Any], Any], Any], ...]:
    """The field's generic constraints as (rule, limit)."""
    return tuple((RULES[name], limit) for name, limit in field.constraints.items())


def _constrained(value: Any, issues: list[Issue], checks: tuple[tuple[Callable[[Any, Any], Any], Any], ...]) -> list[Issue]:
    """`issues` plus what the constraints find in a converted value (none when conversion failed or gave nothing)."""
    if not issues and value is not None:
        for check, limit in checks:
            issues.extend(check(limit, value))
    return issues


@dataclass(frozen=True)
class _Step:
    """One field as the runner needs it, looked up once per compiled form instead of once per record."""

    key: str
    spec: FieldSpec
    clean: Callable[[Any], tuple[Any, list[Issue]]]
    checks: tuple[tuple[Callable[[Any, Any], Any], Any], ...]  # the field's generic constraints: (rule, limit)
    visible_if: Expression | None
    required: bool
    required_if: Expression | None
    asks_user: bool


@dataclass(frozen=True)
class _Plan:
    steps: tuple[_Step, ...]
    conditional: tuple[_Step, ...]  # steps with visible_if, required or required_if
    rules: tuple[tuple[RuleSpec, frozenset[str]], ...]  # each rule with every name it reads


_MEMO_SIZE = 2048


def _remembering(clean: Callable[[Any], tuple[Any, list[Issue]]]) -> Callable[[Any], tuple[Any, list[Issue]]]:
    """`clean` of a type whose values repeat (FieldType.repeats), answered from recent calls.

    The key holds the raw value's type: 1, 1.0 and True are equal dict keys but not the same input."""
    memo: dict[tuple[type, Any], tuple[Any, tuple[Issue, ...]]] = {}

    def remembered(raw: Any) -> tuple[Any, list[Issue]]:
        key = (type(raw), raw)
        try:
            known = memo.get(key)
        except TypeError:  # unhashable input (a list posted for a single value): not worth remembering
            return clean(raw)
        if known is None:
            value, issues = clean(raw)
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            known = memo[key] = (value, tuple(issues))
        return known[0], list(known[1])

    return remembered


def _plan(form: FormSpec) -> _Plan:
    plan = form.derived.get("validation")
    if plan is None:
        steps = tuple(
            _Step(key, spec, _remembering(spec.kind.clean) if spec.kind.repeats else spec.kind.clean,
                  _checks(spec),
                  spec.visible_if, spec.required, spec.required_if, spec.kind.user_input)
            for key, spec in form.fields.items()
        )
        conditional = tuple(s for s in steps if s.visible_if is not None or s.required or s.required_if is not None)
        rules = tuple((rule, rule.check.names | (rule.when.names if rule.when else frozenset())) for rule in form.rules)
        plan = form.derived.setdefault("validation", _Plan(steps, conditional, rules))
    return plan


def clean_record(form: FormSpec, raw: Mapping[str, Any]) -> CleanResult:
    """The one validation path: convert every field, apply conditions, then cross-field rules."""
    plan = _plan(form)
    values: dict[str, Any] = {}
    issues: dict[str, list[Issue]] = {}  # only fields that have some
    for step in plan.steps:
        value, found = step.clean(raw.get(step.key))
        if step.checks:  # tested here: most fields have none, and this loop runs for every field of every row
            found = _constrained(value, found, step.checks)
        values[step.key] = value
        if found:
            issues[step.key] = [i.at(step.key) for i in found]
    result = CleanResult(values=values)
    for step in plan.conditional:
        key = step.key
        if step.visible_if is not None and not holds(step.visible_if, values):
            result.hidden.add(key)
            values[key] = None
            issues.pop(key, None)
            continue
        if step.required or holds(step.required_if, values):
            result.required.add(key)
            if values[key] is None and key not in issues and step.asks_user:
                issues[key] = [Issue("required", path=key)]
    for rule, names in plan.rules:
        # A rule speaks only about filled, individually valid values; emptiness is `required`'s job.
        if any(values.get(n) is None or n in issues for n in names):
            continue
        if rule.when is not None and not holds(rule.when, values):
            continue
        if not holds(rule.check, values):
            for target in rule.fields:
                issues.setdefault(target, []).append(
                    Issue("rule", {"message": rule.message, "rule": rule.key}, path=target)
                )
    if issues:
        result.issues = [i for step in plan.steps for i in issues.get(step.key, ())]
    return result
