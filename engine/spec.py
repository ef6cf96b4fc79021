"""The compiled, immutable definition model; every emitter reads these, never the YAML."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from engine.fields.base import Clean, FieldType
from engine.issues import Issue

if TYPE_CHECKING:
    from engine.certificates.spec import CertificateSpec
    from engine.errors import DefinitionError
    from engine.reports.spec import DashboardSpec, ReportSpec
    from engine.workflows.spec import WorkflowSpec


@dataclass(frozen=True)
class Origin:
    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Expression:
    """A sandboxed Jinja2 expression compiled once at load; `names` are the fields it reads."""

    source: str
    names: frozenset[str]
    evaluate: Callable[[Mapping[str, Any]], Any] = field(compare=False, repr=False)
    origin: Origin | None = field(default=None, compare=False)


# A generic constraint compiled for one field: the rule of engine/validation/rules.py and its limit.
Check = tuple[Callable[[Any, Any], Iterator[Issue]], Any]


def constrained(value: Any, issues: list[Issue], checks: tuple[Check, ...]) -> list[Issue]:
    """`issues` plus what the constraints find in a converted value (none when conversion failed or gave nothing)."""
    if not issues and value is not None:
        for check, limit in checks:
            issues.extend(check(limit, value))
    return issues


@dataclass(frozen=True)
class FieldSpec:
    key: str
    label: str
    kind: FieldType
    required: bool = False
    help: str = ""
    placeholder: str = ""
    default: Any = None
    readonly: bool = False
    unique: bool = False
    sensitive: bool = False
    # Generic constraints: {"min_length": 2, "pattern": "..."}; run by engine/validation/rules.py.
    constraints: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    messages: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    visible_if: Expression | None = None
    required_if: Expression | None = None
    renamed_from: tuple[str, ...] = ()
    section: str = ""
    origin: Origin | None = field(default=None, compare=False)
    # Other names a spreadsheet's header may give this field (班级, 所在班级): read by imports (engine/excel/layout.py).
    aliases: tuple[str, ...] = ()
    # `constraints` compiled with their rules (engine/compiler.py), in the order written.
    checks: tuple[Check, ...] = field(default=(), compare=False, repr=False)
    # A computed field's formula: its value is worked out by the validator from the fields it reads, never typed.
    compute: Expression | None = None

    @property
    def type_name(self) -> str:
        return self.kind.name

    @property
    def user_input(self) -> bool:
        """Whether people type this field's value (not a generated number, not a computed value)."""
        return self.kind.user_input and self.compute is None

    def clean(self, raw: Any) -> tuple[Any, list[Issue]]:
        """Convert one value and apply its type checks, constraints and unconditional `required`; issues
        carry the field's key. A table's cells are cleaned by their columns' `clean`."""
        value, issues = self.kind.clean(raw)
        issues = constrained(value, issues, self.checks)
        if value is None and not issues and self.required and self.user_input:
            issues = [Issue("required")]
        return value, [i.at(self.key) for i in issues]

    @property
    def stored_keys(self) -> tuple[str, ...]:
        """Keys under which this field's value may be stored, newest first."""
        return (self.key, *self.renamed_from)

    @property
    def depends_on(self) -> frozenset[str]:
        """Fields whose value changes this field's visibility, requiredness or computed value."""
        names: set[str] = set()
        for expr in (self.visible_if, self.required_if, self.compute):
            if expr is not None:
                names |= expr.names
        return frozenset(names)


@dataclass(frozen=True)
class SectionSpec:
    key: str
    title: str
    fields: tuple[str, ...]
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RuleSpec:
    """A cross-field rule: when every field it reads is filled (and `when` holds), `check` must be true."""

    key: str
    check: Expression
    message: str
    fields: tuple[str, ...]  # where the message is shown
    when: Expression | None = None
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Step:
    """One field as the validator runs it, worked out when the form is compiled instead of once per record."""

    key: str
    spec: FieldSpec
    clean: Clean  # the type's clean, remembering recent answers where values repeat (FieldType.cleaner)
    checks: tuple[Check, ...]
    visible_if: Expression | None
    required: bool
    required_if: Expression | None
    asks_user: bool


@dataclass(frozen=True)
class ValidationPlan:
    """What `engine.validation.clean_record` runs for one form, built with the form."""

    steps: tuple[Step, ...]
    conditional: tuple[Step, ...]  # steps with visible_if, required or required_if
    rules: tuple[tuple[RuleSpec, frozenset[str]], ...]  # each rule with every name it reads
    computed: tuple[Step, ...] = ()  # computed fields, each after the computed fields it reads

    @classmethod
    def of(cls, fields: Mapping[str, FieldSpec], rules: Iterable[RuleSpec]) -> "ValidationPlan":
        steps = tuple(
            Step(key, spec, spec.kind.cleaner(), spec.checks, spec.visible_if, spec.required, spec.required_if,
                 spec.user_input)
            for key, spec in fields.items()
        )
        conditional = tuple(s for s in steps if s.visible_if is not None or s.required or s.required_if is not None)
        # A rule waits for its fields to be filled; other names it reads (a workflow's `record`) are not the user's.
        read = tuple((rule, (rule.check.names | (rule.when.names if rule.when else frozenset())) & fields.keys())
                     for rule in rules)
        return cls(steps, conditional, read, _in_dependency_order([s for s in steps if s.spec.compute is not None]))


def _in_dependency_order(computed: list[Step]) -> tuple[Step, ...]:
    """Computed fields ordered so that each comes after the computed fields its formula reads (the compiler has
    refused cycles; one that slipped through keeps the form's order for the rest)."""
    pending = {step.key: step for step in computed}
    ordered: list[Step] = []
    while pending:
        ready = [s for s in pending.values() if not (s.spec.compute.names & set(pending)) - {s.key}]  # type: ignore[union-attr]
        for step in ready or list(pending.values()):
            ordered.append(step)
            pending.pop(step.key)
    return tuple(ordered)


FIGURE_KINDS = {"rank": "排名", "avg": "平均", "sum": "合计", "min": "最低", "max": "最高", "count": "人数",
                "pass_rate": "达标率"}


@dataclass(frozen=True)
class FigureSpec:
    """A figure across records (`figures:`): a record's rank by a number field, or its group's average, sum,
    minimum, maximum, count or pass rate, within groups of records sharing the `within` values (fields of the form
    or org levels, e.g. [exam, class]). Worked out from the projection when read (engine/records/figures.py), so it
    is right after every create, edit, delete, import and transfer. `field` shows it like a read-only field."""

    key: str
    label: str
    kind: str  # one of FIGURE_KINDS
    of: str  # the number field it reads
    within: tuple[str, ...]  # field keys or org level keys
    field: FieldSpec
    descending: bool = True  # rank: the highest value ranks 1st
    places: int = 1  # avg and pass_rate (percent): decimals shown
    at_least: Any = None  # pass_rate: the value that passes
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class GridSpec:
    """Entering a whole group at once (`grid:`): one row per record that the link field `rows` can point at in the
    chosen unit (the students of a class), the `fixed` fields chosen once for the page (the exam), one input per
    `columns` field (the subjects). Saved through the record service, all rows or none."""

    rows: str
    fixed: tuple[str, ...]
    columns: tuple[str, ...]
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ListSpec:
    columns: tuple[str, ...]
    filters: tuple[str, ...]
    search: tuple[str, ...]
    default_sort: str = ""


@dataclass(frozen=True)
class FormSpec:
    key: str
    title: str
    fields: Mapping[str, FieldSpec]  # ordered, read-only
    sections: tuple[SectionSpec, ...]
    title_field: str
    list: ListSpec
    natural_key: tuple[str, ...]
    rules: tuple[RuleSpec, ...]
    version: str  # digest of the form's compiled definition
    description: str = ""
    unit_level: str = ""  # org level a record belongs to (e.g. a class); "" = any unit
    unit_label: str = "所属单位"
    # The org levels (org.yaml, top down) the form's records sit under: projections keep a record's unit at each.
    levels: tuple[str, ...] = ()
    # A child form (`belongs_to: <link field>`): its records belong to the record that field links to, sit in that
    # record's unit (no unit of their own to choose) and move with it.
    parent_field: str = ""
    # `print:` — the printout's title ("" = the form's) and the parent record's fields printed above the record's.
    print_title: str = ""
    print_parent_fields: tuple[str, ...] = ()
    figures: Mapping[str, FigureSpec] = field(default_factory=lambda: MappingProxyType({}))
    grid: GridSpec | None = None
    origin: Origin | None = field(default=None, compare=False)
    # Worked out from the fields and rules whenever a FormSpec is made (compiled, or a copy with other fields
    # made by dataclasses.replace), never filled in later.
    plan: ValidationPlan = field(init=False, repr=False, compare=False)
    _dependents: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", ValidationPlan.of(self.fields, self.rules))
        direct: dict[str, set[str]] = {}
        for name, spec in self.fields.items():
            for source in spec.depends_on:
                direct.setdefault(source, set()).add(name)
        # Transitive: a total computed from scores, and a level computed from the total, both follow a score.
        found: dict[str, tuple[str, ...]] = {}
        for source in direct:
            reached, todo = set(), list(direct[source])
            while todo:
                name = todo.pop()
                if name not in reached and name != source:
                    reached.add(name)
                    todo += direct.get(name, ())
            found[source] = tuple(k for k in self.fields if k in reached)
        object.__setattr__(self, "_dependents", MappingProxyType(found))

    @property
    def parent_form(self) -> str:
        """The form a child form's records belong to ("" for a form of its own)."""
        return self.fields[self.parent_field].kind.form if self.parent_field else ""  # type: ignore[attr-defined]

    def column_spec(self, key: str) -> FieldSpec:
        """What a list column or record line `key` shows: a field, or a figure read like a read-only field."""
        return self.fields[key] if key in self.fields else self.figures[key].field

    def dependents(self, key: str) -> tuple[str, ...]:
        """Fields whose visibility, requiredness or computed value follows `key` (directly or through others), in
        form order."""
        return self._dependents.get(key, ())


@dataclass(frozen=True)
class FormPolicy:
    """What one role may do with one form."""

    actions: frozenset[str]
    hidden: frozenset[str] = frozenset()
    readonly: frozenset[str] = frozenset()
    masked: frozenset[str] = frozenset()
    reveal_sensitive: bool = False
    # The records of this form the role reaches, when not the role's own scope: a class's teacher reads the
    # exams of their whole school (`scope: school`).
    scope: str = ""


@dataclass(frozen=True)
class RoleSpec:
    key: str
    name: str
    scope: str  # "own" | "subtree" | "all" | an org level key such as "school" or "class"
    forms: Mapping[str, FormPolicy]
    admin: bool = False  # manages users, org units and definition reloads
    require_2fa: bool = False  # its users sign in with a second factor (TOTP), enrolling at their next sign-in
    issue_reset_codes: bool = False  # may issue one-time password reset codes to non-admin users in its scope
    description: str = ""
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class OrgLevel:
    key: str
    label: str
    # Where a unit's number is in its name (a regular expression whose first group is the number, e.g. '\((\d+)\)'
    # for 高一(5)班); "" = the number after the parent's name. An import finds a unit from its number and the cells of
    # the levels above it (a class "5班" next to a grade "高一").
    number: str = ""


@dataclass(frozen=True)
class Definitions:
    """Everything loaded from one definitions directory, compiled and frozen."""

    forms: Mapping[str, FormSpec]
    roles: Mapping[str, RoleSpec]
    options: Mapping[str, tuple]
    org_levels: tuple[OrgLevel, ...]
    workflows: Mapping[str, WorkflowSpec] = field(default_factory=lambda: MappingProxyType({}))
    certificates: Mapping[str, CertificateSpec] = field(default_factory=lambda: MappingProxyType({}))
    reports: Mapping[str, ReportSpec] = field(default_factory=lambda: MappingProxyType({}))
    dashboards: Mapping[str, DashboardSpec] = field(default_factory=lambda: MappingProxyType({}))
    version: str = ""
    source_dir: str = ""
    # Definitions that load but cannot work as written (a role that may create a form and cannot fill one of its
    # required fields), located where they are fixed; `dangan check` and the server's log show them.
    warnings: tuple["DefinitionError", ...] = ()
