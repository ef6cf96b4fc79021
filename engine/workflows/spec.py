"""The compiled, frozen workflow model: what `definitions/workflows/*.yaml` says, checked and resolved."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Mapping

from engine.spec import Expression, FormSpec, Origin

# Names an expression or a scope may use besides the application's own fields.
RECORD = "record"  # the target record's current values: record.status
UNIT_SIDES = ("record_unit", "chosen_unit", "applicant_unit")  # unit anchors by org level: chosen_unit.district
SIDE_LABELS = {"record_unit": "档案所在单位", "chosen_unit": "申请中选择的单位", "applicant_unit": "申请人所在单位"}
END = "end"  # `next: end` finishes the workflow after that step
BELOW = "below"  # in `choose_unit.when`: unit.below.<level> = the names of the candidate's units at a lower level

ACTION_LABELS = {
    "submit": "提交申请", "resubmit": "重新提交", "approve": "同意", "reject": "驳回", "return": "退回修改",
    "withdraw": "撤回", "effects": "生效", "draft": "创建草稿",
}
STATUS_LABELS = {
    "draft": "待提交", "pending": "审批中", "returned": "已退回", "approved": "已通过", "rejected": "已驳回",
    "withdrawn": "已撤回",
}
OPEN_STATUSES = ("draft", "pending", "returned")  # the application is still in flight
WITH_APPLICANT = ("draft", "returned")  # waiting for the applicant to (re)submit


@dataclass(frozen=True)
class UnitRef:
    """A scope expression such as `chosen_unit.school`: the unit at `level` above (or at) one side's unit."""

    side: str
    level: str
    source: str
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AssigneeSpec:
    """One group of approvers: everyone holding `role` in `unit` (or below it); any one of them acts for the group."""

    role: str
    unit: UnitRef
    label: str
    when: Expression | None = None
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StepSpec:
    key: str
    title: str
    assignees: tuple[AssigneeSpec, ...]
    mode: str = "all"  # "all": every group must approve; "any": the first approval completes the step
    when: Expression | None = None  # skipped when false
    next: str = ""  # "" = the following step; END = finish after this step
    require_comment: bool = False  # an approval needs a comment too (reject and return always do)
    require_attachment: bool = False  # an approval needs an uploaded document
    allow_return: bool = True
    allow_self_approval: bool = False
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class UnitChoiceSpec:
    """A unit the applicant picks (e.g. the receiving class): at `level`, outside the record's own `outside` unit."""

    label: str
    level: str
    outside: str = ""
    help: str = ""
    # Which units fit the record: over `unit.<level>` (the candidate's unit names by level), `unit.below.<level>` (the
    # names of the units of a lower level inside the candidate: a school's grades) and `record.<field>`.
    when: Expression | None = None
    required: bool = True  # `required: false`: the application may name no unit (毕业 to work, not to a school here)
    reads_below: bool = False  # `when` reads unit.below (the units inside each candidate are then gathered)
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class HandOverSpec:
    """`on_approve.hand_over`: the record is offered to the chosen unit, and moves there (with its child records) once
    a `confirm_by` holder of that unit confirms (engine/archives/handover.py; 升学衔接)."""

    confirm_by: str  # the role that confirms or declines, in the chosen unit
    when: Expression | None = None  # over the application's fields: no handover when false
    on_confirm: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # field -> value, on confirmation
    # `on_confirm.create`: records made in the confirming transaction (the receiving school's 学籍异动记录), compiled
    # and run as `on_approve.create` is; their expressions see the application and the record as confirmed
    create: tuple[ChildSpec, ...] = ()
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ChildSpec:
    """A record created by final approval, linked to the target record; fields from expressions. Of a child form
    (belongs_to the workflow's form: in the record's unit), or of another form with a `link` to the workflow's form,
    placed in `unit` (e.g. the 转出 record at the school the record was in when the application was submitted)."""

    form: str
    compute: Mapping[str, Expression] = field(default_factory=lambda: MappingProxyType({}))
    link: str = ""  # the form's link field set to the target record (its belongs_to field for a child form)
    unit: UnitRef | None = None  # where a record of a form that is not a child goes
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class EffectSpec:
    """What final approval does to the target record, in the approving transaction."""

    set: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # field -> Python value
    move_to_chosen_unit: bool = False
    # field -> expression over the application's fields and `record.<field>` (evaluated at final approval)
    compute: Mapping[str, Expression] = field(default_factory=lambda: MappingProxyType({}))
    create: tuple[ChildSpec, ...] = ()
    hand_over: HandOverSpec | None = None
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TallySpec:
    """A figure over the target record's child records, read by `checks` (毕业审核: how many 期末 exams failed)."""

    key: str
    label: str
    form: str  # a child form of the workflow's form (belongs_to it)
    measure: str  # count, sum, avg, min, max
    number: str = ""  # the child's number field the measure reads ("" for count)
    where: Expression | None = None  # over the child's fields, its links' targets (exam.kind) and record.<field>
    links: tuple[str, ...] = ()  # the child's link fields whose targets `where` reads
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CheckSpec:
    """A condition the record must meet to start the workflow and again at final approval; `message` is the
    reason shown when it does not (placeholders {figure} and {record.field})."""

    label: str
    require: Expression
    message: str
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class WorkflowSpec:
    key: str
    title: str
    form: str  # the target form's key
    start_roles: tuple[str, ...]
    start_label: str
    application: FormSpec  # the applicant's form; for `changes` it also holds copies of the protected fields
    target: FormSpec  # the target form as the approved workflow writes it: its effects' fields writable (writable_target)
    steps: tuple[StepSpec, ...]
    effects: EffectSpec
    version: str  # digest of the definition; applications keep the version they started with
    source: str  # the YAML text of that version
    path: str
    description: str = ""
    start_when: Expression | None = None
    unit_choice: UnitChoiceSpec | None = None
    changes: tuple[str, ...] = ()  # protected fields: edits become change requests reviewed here
    summary: tuple[str, ...] = ()  # target fields shown on the application page
    allow_self_approval: bool = False
    exclusive: str = ""  # workflows of one group never run at once on one record (休学, 退学, 转学 …)
    restart_on_return: bool = False  # after 退回修改 approval starts again from step one (default: at the returning step)
    tallies: tuple[TallySpec, ...] = ()  # `figures:` over the record's child records, for the checks
    checks: tuple[CheckSpec, ...] = ()  # conditions with reasons: refused at start and at final approval
    origin: Origin | None = field(default=None, compare=False)

    def step(self, key: str) -> StepSpec | None:
        return next((s for s in self.steps if s.key == key), None)

    @cached_property
    def reads_record(self) -> bool:
        """Whether any step's condition reads the target record (else routing needs no record query)."""
        conditions = [c for step in self.steps for c in (step.when, *(a.when for a in step.assignees)) if c is not None]
        return any(RECORD in c.names for c in conditions)

    @property
    def own_fields(self) -> tuple[str, ...]:
        """Application fields the applicant fills, without the proposed values of protected fields."""
        return tuple(k for k in self.application.fields if k not in self.changes)
