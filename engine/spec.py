"""The compiled, immutable definition model; every emitter reads these, never the YAML."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from engine.fields.base import FieldType

if TYPE_CHECKING:
    from engine.certificates.spec import CertificateSpec
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

    @property
    def type_name(self) -> str:
        return self.kind.name

    @property
    def stored_keys(self) -> tuple[str, ...]:
        """Keys under which this field's value may be stored, newest first."""
        return (self.key, *self.renamed_from)

    @property
    def depends_on(self) -> frozenset[str]:
        names: set[str] = set()
        for expr in (self.visible_if, self.required_if):
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
    origin: Origin | None = field(default=None, compare=False)

    @cached_property
    def derived(self) -> dict[str, Any]:
        """What other modules build once from this compiled form (e.g. the validator's plan), by name."""
        return {}

    def dependents(self, key: str) -> tuple[str, ...]:
        """Fields whose visibility or requiredness reads `key`, in form order."""
        return self._dependents.get(key, ())

    @cached_property
    def _dependents(self) -> Mapping[str, tuple[str, ...]]:
        # Computed once per compiled form; every widget asks whether it has dependents.
        found: dict[str, list[str]] = {}
        for name, spec in self.fields.items():
            for source in spec.depends_on:
                found.setdefault(source, []).append(name)
        return MappingProxyType({k: tuple(v) for k, v in found.items()})


@dataclass(frozen=True)
class FormPolicy:
    """What one role may do with one form."""

    actions: frozenset[str]
    hidden: frozenset[str] = frozenset()
    readonly: frozenset[str] = frozenset()
    masked: frozenset[str] = frozenset()
    reveal_sensitive: bool = False


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


@dataclass(frozen=True)
class Definitions:
    """Everything loaded from one definitions directory, compiled and frozen."""

    forms: Mapping[str, FormSpec]
    roles: Mapping[str, RoleSpec]
    options: Mapping[str, tuple]
    org_levels: tuple[OrgLevel, ...]
    workflows: Mapping[str, WorkflowSpec] = field(default_factory=lambda: MappingProxyType({}))
    certificates: Mapping[str, CertificateSpec] = field(default_factory=lambda: MappingProxyType({}))
    version: str = ""
    source_dir: str = ""
