"""Pure routing over a `WorkflowSpec`: which step is next, who may act, what an action does. No database.

The service loads the application's state, calls one of `submit`, `decide`, `withdraw`, and persists
the returned `Outcome` (task changes, new tasks, status) in one transaction.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.expressions import holds
from engine.permissions import Principal
from engine.workflows.errors import (
    ActionNotAllowed, AttachmentRequired, CommentRequired, CommentTooLong, NotApplicant, NotAssignee, NotInProgress,
    ScopeUnresolved, SelfApprovalForbidden, TaskClosed, WithdrawNotAllowed,
)
from engine.workflows.spec import (
    ACTION_LABELS, END, OPEN_STATUSES, RECORD, SIDE_LABELS, STATUS_LABELS, UNIT_SIDES, WITH_APPLICANT, StepSpec,
    UnitRef, WorkflowSpec,
)

DECISIONS = ("approve", "reject", "return")
# A decision's comment is shown to everyone who sees the application: a few paragraphs, not a file (issue 14).
MAX_COMMENT = 2000
DECIDED = {"approve": "approved", "reject": "rejected", "return": "returned"}  # task status after each action


@dataclass(frozen=True)
class UnitInfo:
    id: int
    path: str
    name: str


@dataclass(frozen=True)
class Context:
    """What routing reads: application values, the target record's values and the units resolved at submission."""

    values: Mapping[str, Any]
    record: Mapping[str, Any]
    units: Mapping[str, Mapping[str, UnitInfo]]  # side ("record_unit", ...) -> org level -> unit
    applicant_id: int

    def names(self) -> dict[str, Any]:
        """The values an expression sees: application fields, `record.<field>`, `<side>.<level>` (unit ids)."""
        names = dict(self.values)
        names[RECORD] = dict(self.record)
        for side in UNIT_SIDES:
            names[side] = {level: unit.id for level, unit in self.units.get(side, {}).items()}
        return names


@dataclass(frozen=True)
class Actor:
    """Who acts: their role keys and the paths of their units and every unit above them."""

    user_id: int
    name: str
    roles: frozenset[str]
    paths: frozenset[str]

    @classmethod
    def of(cls, principal: Principal) -> "Actor":
        paths = set(principal.unit_paths)
        for anchors in principal.anchors.values():
            paths |= anchors
        return cls(principal.user_id, principal.display_name, frozenset(r.key for r in principal.roles), frozenset(paths))


@dataclass(frozen=True)
class Slot:
    """One assignee group of a step, resolved to a unit: a task to open."""

    step: str
    index: int
    label: str
    role: str
    unit: UnitInfo


@dataclass(frozen=True)
class Task:
    id: int
    step: str
    index: int
    role: str
    unit_path: str
    status: str = "open"  # open | approved | rejected | returned | cancelled
    round: int = 1  # each (re)submission is a new round of tasks
    acted_by: int | None = None
    acted_name: str = ""
    acted_at: dt.datetime | None = None


@dataclass(frozen=True)
class State:
    """An application as routing sees it, with its tasks of every round."""

    status: str
    step: str
    tasks: tuple[Task, ...] = ()
    round: int = 1

    @property
    def current(self) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if t.round == self.round)

    @property
    def decided(self) -> bool:
        """Someone approved, rejected or returned since the last (re)submission."""
        return any(t.status in DECIDED.values() for t in self.current)


@dataclass(frozen=True)
class Outcome:
    status: str
    step: str = ""
    closed: Mapping[int, str] = field(default_factory=dict)  # task id -> its new status
    opened: tuple[Slot, ...] = ()
    skipped: tuple[str, ...] = ()  # steps passed over on the way (condition false or no assignee)
    effects: bool = False  # apply `on_approve` now, in the same transaction

    @property
    def finished(self) -> bool:
        return self.status not in OPEN_STATUSES


# --- steps and assignees ------------------------------------------------------------------------

def resolve_unit(ref: UnitRef, ctx: Context) -> UnitInfo:
    unit = ctx.units.get(ref.side, {}).get(ref.level)
    if unit is None:
        raise ScopeUnresolved(what=SIDE_LABELS[ref.side], level=ref.level)
    return unit


def step_applies(step: StepSpec, ctx: Context) -> bool:
    return step.when is None or holds(step.when, ctx.names())


def slots(step: StepSpec, ctx: Context) -> tuple[Slot, ...]:
    """The groups that must (all) or may (any) approve; the same role in the same unit counts once."""
    names = ctx.names()
    found: dict[tuple[str, int], Slot] = {}
    for index, assignee in enumerate(step.assignees):
        if assignee.when is not None and not holds(assignee.when, names):
            continue
        unit = resolve_unit(assignee.unit, ctx)
        found.setdefault((assignee.role, unit.id), Slot(step.key, index, assignee.label, assignee.role, unit))
    return tuple(found.values())


def enter(spec: WorkflowSpec, ctx: Context, position: int) -> tuple[StepSpec | None, tuple[Slot, ...], tuple[str, ...]]:
    """The first step from `position` on that applies and has someone to act; None when the flow is done."""
    skipped = []
    for step in spec.steps[position:]:
        opened = slots(step, ctx) if step_applies(step, ctx) else ()
        if opened:
            return step, opened, tuple(skipped)
        skipped.append(step.key)
    return None, (), tuple(skipped)


def position_after(spec: WorkflowSpec, step: StepSpec) -> int:
    if step.next == END:
        return len(spec.steps)
    if step.next:
        return next(i for i, s in enumerate(spec.steps) if s.key == step.next)
    return spec.steps.index(step) + 1


# --- who may do what ----------------------------------------------------------------------------

def is_member(task: Task, actor: Actor) -> bool:
    """Holds the task's role in the task's unit or in a unit below it."""
    return task.role in actor.roles and task.unit_path in actor.paths


def self_blocked(spec: WorkflowSpec, task: Task, actor: Actor, applicant_id: int) -> bool:
    step = spec.step(task.step)
    return actor.user_id == applicant_id and not (step.allow_self_approval if step else spec.allow_self_approval)


def actionable(spec: WorkflowSpec, state: State, actor: Actor, applicant_id: int) -> list[Task]:
    """Open tasks of the current step this actor may decide now (the page shows buttons only for these)."""
    if state.status != "pending":
        return []
    return [t for t in state.current if t.status == "open" and t.step == state.step and is_member(t, actor)
            and not self_blocked(spec, t, actor, applicant_id)]


def actions_for(spec: WorkflowSpec, task: Task) -> tuple[str, ...]:
    step = spec.step(task.step)
    return ("approve", "return", "reject") if step is None or step.allow_return else ("approve", "reject")


def can_withdraw(state: State, actor: Actor, applicant_id: int) -> bool:
    if actor.user_id != applicant_id or state.status not in OPEN_STATUSES:
        return False
    return state.status in WITH_APPLICANT or not state.decided


def start_allowed(spec: WorkflowSpec, actor: Actor, ctx: Context) -> bool:
    """The role part and the record condition of "who may start it, on which records" (scope is the caller's)."""
    return bool(actor.roles & set(spec.start_roles)) and (spec.start_when is None or holds(spec.start_when, ctx.names()))


# --- transitions --------------------------------------------------------------------------------

def submit(spec: WorkflowSpec, ctx: Context) -> Outcome:
    """Enter the first applicable step; a flow with no applicable step is approved at once."""
    step, opened, skipped = enter(spec, ctx, 0)
    if step is None:
        return Outcome("approved", skipped=skipped, effects=True)
    return Outcome("pending", step.key, opened=opened, skipped=skipped)


def ensure_with_applicant(state: State, actor: Actor, applicant_id: int) -> None:
    """Only the applicant edits, and only while the application is back with them (draft or returned)."""
    if actor.user_id != applicant_id:
        raise NotApplicant()
    if state.status not in WITH_APPLICANT:
        raise NotInProgress(status=STATUS_LABELS.get(state.status, state.status))


def resubmit(spec: WorkflowSpec, ctx: Context, state: State, actor: Actor, restart: bool = False) -> Outcome:
    """After 退回修改 (or from a draft) the applicant submits again. Approval resumes at the step that returned it
    (the steps before it stay approved), unless the workflow says `on_return: restart` or the caller `restart`s
    (the application now names another unit, so earlier approvals were for something else)."""
    ensure_with_applicant(state, actor, ctx.applicant_id)
    step = returned_at(spec, state)
    if step is None or restart or spec.restart_on_return:
        return submit(spec, ctx)
    following, opened, skipped = enter(spec, ctx, spec.steps.index(step))
    if following is None:
        return Outcome("approved", skipped=skipped, effects=True)
    return Outcome("pending", following.key, opened=opened, skipped=skipped)


def returned_at(spec: WorkflowSpec, state: State) -> StepSpec | None:
    """The step whose approver returned the application (None: not returned, or that step no longer exists)."""
    if state.status != "returned":
        return None
    returned = [t for t in state.tasks if t.status == "returned" and t.round == state.round]
    return spec.step(returned[-1].step) if returned else None


def decide(spec: WorkflowSpec, ctx: Context, state: State, task_id: int, action: str, actor: Actor,
           comment: str = "", has_attachment: bool = False) -> Outcome:
    task = next((t for t in state.tasks if t.id == task_id), None)
    if task is None or not is_member(task, actor):
        raise NotAssignee()
    step = spec.step(task.step)
    if step is None or state.status != "pending" or task.status != "open" or (task.step, task.round) != (state.step, state.round):
        decider = _decider(state, task)
        if decider is None:
            raise NotInProgress(status=STATUS_LABELS.get(state.status, state.status))
        raise _closed(decider)
    if self_blocked(spec, task, actor, ctx.applicant_id):
        raise SelfApprovalForbidden()
    if action not in DECISIONS or (action == "return" and not step.allow_return):
        raise ActionNotAllowed(action=ACTION_LABELS.get(action, action))
    if not comment.strip() and (action != "approve" or step.require_comment):
        raise CommentRequired(action=ACTION_LABELS[action])
    if len(comment) > MAX_COMMENT:
        raise CommentTooLong(limit=MAX_COMMENT, length=len(comment))
    if action == "approve" and step.require_attachment and not has_attachment:
        raise AttachmentRequired()
    others = [t for t in state.current if t.step == step.key and t.status == "open" and t.id != task.id]
    closed = {task.id: DECIDED[action]}
    if action != "approve":
        closed.update({t.id: "cancelled" for t in others})
        return Outcome("rejected" if action == "reject" else "returned", closed=closed)
    if others and step.mode == "all":
        return Outcome("pending", step.key, closed=closed)
    closed.update({t.id: "cancelled" for t in others})
    following, opened, skipped = enter(spec, ctx, position_after(spec, step))
    if following is None:
        return Outcome("approved", closed=closed, skipped=skipped, effects=True)
    return Outcome("pending", following.key, closed=closed, opened=opened, skipped=skipped)


def withdraw(state: State, actor: Actor, applicant_id: int) -> Outcome:
    if actor.user_id != applicant_id:
        raise NotApplicant()
    if state.status not in OPEN_STATUSES:
        raise NotInProgress(status=STATUS_LABELS.get(state.status, state.status))
    if not can_withdraw(state, actor, applicant_id):
        raise WithdrawNotAllowed()
    return Outcome("withdrawn", closed={t.id: "cancelled" for t in state.current if t.status == "open"})


def _decider(state: State, task: Task) -> Task | None:
    """Whoever decided this task first: its own actor, or for a cancelled task the decision that closed it."""
    if task.acted_by is not None:
        return task
    decided = [t for t in state.tasks if t.step == task.step and t.round == task.round and t.acted_at is not None]
    return max(decided, key=lambda t: t.acted_at) if decided else None  # type: ignore[arg-type, return-value]


def _closed(decider: Task) -> TaskClosed:
    when = (decider.acted_at + dt.timedelta(hours=8)).strftime("%m-%d %H:%M:%S") if decider.acted_at else "刚才"
    label = {v: ACTION_LABELS[k] for k, v in DECIDED.items()}.get(decider.status, decider.status)
    return TaskClosed(who=decider.acted_name or "其他审批人", when=when, action=label)
