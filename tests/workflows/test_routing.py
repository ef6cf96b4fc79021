"""Routing as pure functions over a compiled spec: sequence, parallel all/any, conditions, return, withdraw, reject."""
from __future__ import annotations

import datetime as dt
import textwrap
from dataclasses import replace
from typing import Any

import pytest

from engine.loader import load_definitions
from engine.workflows import routing
from engine.workflows.compiler import compile_source
from engine.workflows.errors import (
    ActionNotAllowed, AttachmentRequired, CommentRequired, NotApplicant, NotAssignee, NotInProgress, ScopeUnresolved,
    SelfApprovalForbidden, TaskClosed, WithdrawNotAllowed,
)
from engine.workflows.routing import Actor, Context, Outcome, State, Task, UnitInfo
from engine.workflows.spec import WorkflowSpec
from tests.support import DEFINITIONS

DEFS = load_definitions(DEFINITIONS)

D1, S1, C1 = UnitInfo(1, "/1/", "示范区教育局"), UnitInfo(2, "/1/2/", "示范区第一中学"), UnitInfo(4, "/1/2/3/4/", "高一(1)班")
S1B, C1B = UnitInfo(7, "/1/7/", "示范区实验小学"), UnitInfo(9, "/1/7/8/9/", "一年级(1)班")
D2, S2, C2 = UnitInfo(11, "/11/", "滨江区教育局"), UnitInfo(12, "/11/12/", "滨江中学"), UnitInfo(14, "/11/12/13/14/", "高一(1)班")

APPLICANT = Actor(100, "学籍员", frozenset({"registrar"}), frozenset({"/1/", "/1/2/"}))
SENDING_BUREAU = Actor(200, "示范区教育局", frozenset({"bureau"}), frozenset({"/1/"}))
RECEIVING_BUREAU = Actor(300, "滨江区教育局", frozenset({"bureau"}), frozenset({"/11/"}))
RECEIVING_REGISTRAR = Actor(400, "滨江中学学籍员", frozenset({"registrar"}), frozenset({"/11/", "/11/12/"}))
SECOND_REGISTRAR = Actor(101, "另一位学籍员", frozenset({"registrar"}), frozenset({"/1/", "/1/2/"}))

TRANSFER = DEFS.workflows["transfer"]


def spec(steps: str, extra: str = "") -> WorkflowSpec:
    text = "key: t\ntitle: 测试\nform: student\nstart: {roles: [registrar]}\n"
    text += "choose_unit: {label: 转入班级, level: class, outside: school}\n"
    text += "application:\n  fields: [{key: days, label: 天数, type: integer}]\n"
    return compile_source(text + textwrap.dedent(extra) + "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  "),
                          "workflows/t.yaml", DEFS)


def context(chosen: tuple[UnitInfo, ...] = (D2, S2, C2), values: dict[str, Any] | None = None,
            record: dict[str, Any] | None = None, applicant: int = APPLICANT.user_id) -> Context:
    levels = ("district", "school", "class")
    return Context(values or {}, record or {"status": "在读"},
                   {"record_unit": dict(zip(levels, (D1, S1, C1))), "chosen_unit": dict(zip(levels, chosen)),
                    "applicant_unit": dict(zip(levels[:2], (D1, S1)))}, applicant)


class Run:
    """Plays outcomes forward the way the service persists them, so a test reads as a sequence of actions."""

    def __init__(self, workflow: WorkflowSpec, ctx: Context) -> None:
        self.spec, self.ctx = workflow, ctx
        self.tasks: list[Task] = []
        self.status, self.step, self.round = "draft", "", 1
        self.outcomes: list[Outcome] = []
        self.apply(routing.submit(workflow, ctx))

    @property
    def state(self) -> State:
        return State(self.status, self.step, tuple(self.tasks), self.round)

    def apply(self, outcome: Outcome, actor: Actor | None = None) -> Outcome:
        now = dt.datetime(2026, 9, 1, 8, 0, len(self.outcomes))
        self.tasks = [replace(t, status=outcome.closed[t.id],
                              **({"acted_by": actor.user_id, "acted_name": actor.name, "acted_at": now}
                                 if actor and outcome.closed[t.id] != "cancelled" else {}))
                      if t.id in outcome.closed else t for t in self.tasks]
        for slot in outcome.opened:
            self.tasks.append(Task(len(self.tasks) + 1, slot.step, slot.index, slot.role, slot.unit.path, round=self.round))
        self.status, self.step = outcome.status, outcome.step
        self.outcomes.append(outcome)
        return outcome

    def open(self, role: str = "", unit: UnitInfo | None = None) -> Task:
        return next(t for t in self.tasks if t.status == "open" and (not role or t.role == role)
                    and (unit is None or t.unit_path == unit.path))

    def decide(self, actor: Actor, action: str = "approve", task: Task | None = None, comment: str = "ok",
               attachment: bool = False) -> Outcome:
        task = task or next(t for t in self.tasks if t.status == "open" and routing.is_member(t, actor))
        return self.apply(routing.decide(self.spec, self.ctx, self.state, task.id, action, actor, comment, attachment), actor)

    def resubmit(self, actor: Actor) -> Outcome:
        outcome = routing.resubmit(self.spec, self.ctx, self.state, actor)
        self.round += 1
        return self.apply(outcome)

    def withdraw(self, actor: Actor) -> Outcome:
        return self.apply(routing.withdraw(self.state, actor, self.ctx.applicant_id), actor)


# --- sequence and parallel steps ----------------------------------------------------------------

def test_transfer_across_districts__receiving_school_then_both_bureaus() -> None:
    run = Run(TRANSFER, context())
    assert (run.status, run.step) == ("pending", "receiving_school")
    assert [(t.role, t.unit_path) for t in run.tasks] == [("registrar", S2.path)]
    run.decide(RECEIVING_REGISTRAR)
    assert run.step == "bureaus"
    assert {t.unit_path for t in run.tasks if t.status == "open"} == {D1.path, D2.path}
    first = run.decide(SENDING_BUREAU)
    assert (first.status, first.step, first.effects) == ("pending", "bureaus", False)
    last = run.decide(RECEIVING_BUREAU)
    assert (last.status, last.effects) == ("approved", True)


def test_transfer_within_district__one_bureau() -> None:
    run = Run(TRANSFER, context(chosen=(D1, S1B, C1B)))
    run.decide(Actor(401, "实验小学学籍员", frozenset({"registrar"}), frozenset({"/1/", "/1/7/"})))
    assert [t.unit_path for t in run.tasks if t.status == "open"] == [D1.path]
    assert run.decide(SENDING_BUREAU).effects


def test_sequence__each_step_in_order() -> None:
    run = Run(spec("""\
        - {key: one, title: 一, assignees: [{role: registrar, unit: chosen_unit.school}]}
        - {key: two, title: 二, assignees: [{role: bureau, unit: chosen_unit.district}]}
        - {key: three, title: 三, assignees: [{role: bureau, unit: record_unit.district}]}
        """), context())
    steps = [run.step]
    for actor in (RECEIVING_REGISTRAR, RECEIVING_BUREAU, SENDING_BUREAU):
        run.decide(actor)
        steps.append(run.step or run.status)
    assert steps == ["one", "two", "three", "approved"]


def test_parallel_all__waits_for_every_group() -> None:
    run = Run(spec("""\
        - key: both
          title: 双方
          mode: all
          assignees: [{role: bureau, unit: record_unit.district}, {role: bureau, unit: chosen_unit.district}]
        """), context())
    assert run.decide(RECEIVING_BUREAU).status == "pending"
    assert run.decide(SENDING_BUREAU).status == "approved"
    assert [t.status for t in run.tasks] == ["approved", "approved"]


def test_parallel_any__first_approval_completes_and_cancels_the_rest() -> None:
    run = Run(spec("""\
        - key: either
          title: 任一方
          mode: any
          assignees: [{role: bureau, unit: record_unit.district}, {role: bureau, unit: chosen_unit.district}]
        """), context())
    outcome = run.decide(RECEIVING_BUREAU)
    assert outcome.status == "approved" and outcome.effects
    assert [t.status for t in run.tasks] == ["cancelled", "approved"]


def test_parallel_any__the_late_one_is_told_who_decided() -> None:
    run = Run(spec("""\
        - {key: either, title: 任一方, mode: any, assignees: [{role: bureau, unit: record_unit.district}, {role: bureau, unit: chosen_unit.district}]}
        - {key: after, title: 之后, assignees: [{role: registrar, unit: chosen_unit.school}]}
        """), context())
    late = run.open(unit=D1)
    run.decide(RECEIVING_BUREAU)
    with pytest.raises(TaskClosed) as caught:
        routing.decide(run.spec, run.ctx, run.state, late.id, "approve", SENDING_BUREAU)
    assert caught.value.params["who"] == RECEIVING_BUREAU.name and caught.value.params["action"] == "同意"


def test_same_group_twice__counts_once() -> None:
    run = Run(spec("""\
        - {key: both, title: 双方, assignees: [{role: bureau, unit: record_unit.district}, {role: bureau, unit: chosen_unit.district}]}
        """), context(chosen=(D1, S1B, C1B)))
    assert len(run.tasks) == 1


# --- conditions ---------------------------------------------------------------------------------

def test_condition_false__step_skipped() -> None:
    run = Run(spec("""\
        - {key: long, title: 长假, when: "days > 30", assignees: [{role: bureau, unit: chosen_unit.district}]}
        - {key: school, title: 学校, assignees: [{role: registrar, unit: chosen_unit.school}]}
        """), context(values={"days": 10}))
    assert run.step == "school" and run.outcomes[0].skipped == ("long",)


def test_condition_true__step_taken() -> None:
    run = Run(spec("""\
        - {key: long, title: 长假, when: "days > 30", assignees: [{role: bureau, unit: chosen_unit.district}]}
        - {key: school, title: 学校, assignees: [{role: registrar, unit: chosen_unit.school}]}
        """), context(values={"days": 40}))
    assert run.step == "long"


def test_condition_on_empty_value__false() -> None:
    run = Run(spec("""\
        - {key: long, title: 长假, when: "days > 30", assignees: [{role: bureau, unit: chosen_unit.district}]}
        - {key: school, title: 学校, assignees: [{role: registrar, unit: chosen_unit.school}]}
        """), context(values={"days": None}))
    assert run.step == "school"


def test_condition_on_record_value() -> None:
    workflow = spec("""\
        - {key: resume, title: 复学, when: "record.status == '休学'", assignees: [{role: bureau, unit: record_unit.district}]}
        - {key: school, title: 学校, assignees: [{role: registrar, unit: chosen_unit.school}]}
        """)
    assert Run(workflow, context(record={"status": "休学"})).step == "resume"
    assert Run(workflow, context(record={"status": "在读"})).step == "school"


def test_every_step_skipped__approved_at_once() -> None:
    outcome = routing.submit(spec("""\
        - {key: long, title: 长假, when: "days > 30", assignees: [{role: bureau, unit: chosen_unit.district}]}
        """), context(values={"days": 1}))
    assert (outcome.status, outcome.effects) == ("approved", True)


def test_next_end__finishes_early() -> None:
    workflow = spec("""\
        - {key: one, title: 一, when: "days > 1", next: end, assignees: [{role: registrar, unit: chosen_unit.school}]}
        - {key: two, title: 二, assignees: [{role: bureau, unit: chosen_unit.district}]}
        """)
    assert Run(workflow, context(values={"days": 5})).decide(RECEIVING_REGISTRAR).status == "approved"
    assert Run(workflow, context(values={"days": 0})).step == "two"


def test_next__jumps_forward() -> None:
    run = Run(spec("""\
        - {key: one, title: 一, when: "days > 1", next: three, assignees: [{role: registrar, unit: chosen_unit.school}]}
        - {key: two, title: 二, assignees: [{role: bureau, unit: chosen_unit.district}]}
        - {key: three, title: 三, assignees: [{role: bureau, unit: record_unit.district}]}
        """), context(values={"days": 5}))
    run.decide(RECEIVING_REGISTRAR)
    assert run.step == "three"


# --- scope resolution ---------------------------------------------------------------------------

def test_scope__resolved_from_each_side() -> None:
    ctx = context()
    ref = TRANSFER.steps[1].assignees
    assert routing.resolve_unit(ref[0].unit, ctx) == D1 and routing.resolve_unit(ref[1].unit, ctx) == D2
    assert routing.resolve_unit(TRANSFER.steps[0].assignees[0].unit, ctx) == S2


def test_scope__missing_level__error() -> None:
    ctx = replace(context(), units={"record_unit": {"class": C1}, "chosen_unit": {"class": C2}})
    with pytest.raises(ScopeUnresolved) as caught:
        routing.submit(TRANSFER, ctx)
    assert caught.value.message == "无法确定审批单位：申请中选择的单位没有“school”一级的上级单位"


def test_member__role_in_the_unit_or_below() -> None:
    task = Task(1, "s", 0, "bureau", D1.path)
    assert routing.is_member(task, SENDING_BUREAU)
    assert not routing.is_member(task, RECEIVING_BUREAU)  # another district
    assert not routing.is_member(task, APPLICANT)  # right unit, wrong role
    assert routing.is_member(Task(1, "s", 0, "registrar", S1.path), APPLICANT)


# --- decisions ----------------------------------------------------------------------------------

def test_reject__needs_comment_then_ends_and_cancels_the_others() -> None:
    run = Run(TRANSFER, context())
    run.decide(RECEIVING_REGISTRAR)
    with pytest.raises(CommentRequired):
        run.decide(SENDING_BUREAU, "reject", comment=" ")
    outcome = run.decide(SENDING_BUREAU, "reject", comment="材料不全")
    assert (outcome.status, outcome.effects) == ("rejected", False)
    assert sorted(t.status for t in run.tasks) == ["approved", "cancelled", "rejected"]


def test_return__needs_comment_then_back_to_applicant() -> None:
    run = Run(TRANSFER, context())
    with pytest.raises(CommentRequired):
        run.decide(RECEIVING_REGISTRAR, "return", comment="")
    assert run.decide(RECEIVING_REGISTRAR, "return", comment="请补充证明").status == "returned"
    with pytest.raises(TaskClosed):
        run.decide(RECEIVING_REGISTRAR, task=run.tasks[0])


def test_decide_after_withdrawal__not_in_progress() -> None:
    run = Run(TRANSFER, context())
    task = run.tasks[0]
    run.withdraw(APPLICANT)
    with pytest.raises(NotInProgress) as caught:
        run.decide(RECEIVING_REGISTRAR, task=task)
    assert caught.value.message == "该申请已撤回，不能再进行此操作"


def test_resubmit__resumes_at_the_returning_step_in_a_new_round() -> None:
    run = Run(TRANSFER, context())
    run.decide(RECEIVING_REGISTRAR)
    run.decide(SENDING_BUREAU, "return", comment="请补充")
    with pytest.raises(NotApplicant):
        run.resubmit(SECOND_REGISTRAR)
    outcome = run.resubmit(APPLICANT)
    assert (outcome.status, outcome.step) == ("pending", "bureaus")  # the receiving school is not asked again
    assert [(t.round, t.unit_path) for t in run.tasks if t.status == "open"] == [(2, D1.path), (2, D2.path)]
    assert not run.state.decided  # the first round's decisions do not block a withdrawal now


def test_resubmit__on_return_restart__starts_over() -> None:
    run = Run(replace(TRANSFER, restart_on_return=True), context())
    run.decide(RECEIVING_REGISTRAR)
    run.decide(SENDING_BUREAU, "return", comment="请补充")
    assert run.resubmit(APPLICANT).step == "receiving_school"


def test_resubmit__another_unit_chosen__starts_over() -> None:
    run = Run(TRANSFER, context())
    run.decide(RECEIVING_REGISTRAR)
    run.decide(SENDING_BUREAU, "return", comment="请补充")
    assert routing.resubmit(TRANSFER, run.ctx, run.state, APPLICANT, restart=True).step == "receiving_school"


def test_on_return__compiled() -> None:
    assert spec("- {key: a, title: A, assignees: [{role: bureau, unit: record_unit.district}]}\n",
                "on_return: restart\n").restart_on_return
    assert not TRANSFER.restart_on_return


def test_resubmit__only_when_returned() -> None:
    run = Run(TRANSFER, context())
    with pytest.raises(NotInProgress):
        run.resubmit(APPLICANT)


def test_withdraw__before_any_decision() -> None:
    run = Run(TRANSFER, context())
    assert routing.can_withdraw(run.state, APPLICANT, APPLICANT.user_id)
    outcome = run.withdraw(APPLICANT)
    assert outcome.status == "withdrawn" and [t.status for t in run.tasks] == ["cancelled"]


def test_withdraw__after_a_decision__refused() -> None:
    run = Run(TRANSFER, context())
    run.decide(RECEIVING_REGISTRAR)
    assert not routing.can_withdraw(run.state, APPLICANT, APPLICANT.user_id)
    with pytest.raises(WithdrawNotAllowed):
        run.withdraw(APPLICANT)


def test_withdraw__when_returned__allowed() -> None:
    run = Run(TRANSFER, context())
    run.decide(RECEIVING_REGISTRAR, "return", comment="请补充")
    assert run.withdraw(APPLICANT).status == "withdrawn"


def test_withdraw__by_someone_else__refused() -> None:
    run = Run(TRANSFER, context())
    with pytest.raises(NotApplicant):
        run.withdraw(SECOND_REGISTRAR)


def test_not_assignee__refused() -> None:
    run = Run(TRANSFER, context())
    with pytest.raises(NotAssignee):
        run.decide(SENDING_BUREAU, task=run.tasks[0])


def test_self_approval__refused() -> None:
    workflow = spec("- {key: school, title: 学校, assignees: [{role: registrar, unit: record_unit.school}]}\n")
    run = Run(workflow, context())
    assert routing.actionable(workflow, run.state, APPLICANT, APPLICANT.user_id) == []
    with pytest.raises(SelfApprovalForbidden):
        run.decide(APPLICANT)
    assert run.decide(SECOND_REGISTRAR).status == "approved"


def test_self_approval__allowed_when_declared() -> None:
    workflow = spec("- {key: school, title: 学校, assignees: [{role: registrar, unit: record_unit.school}]}\n",
                    "allow_self_approval: true\n")
    run = Run(workflow, context())
    assert routing.actionable(workflow, run.state, APPLICANT, APPLICANT.user_id) == [run.tasks[0]]
    assert run.decide(APPLICANT).status == "approved"


def test_required_comment_and_attachment() -> None:
    workflow = spec("""\
        - {key: bureau, title: 审批, require_comment: true, require_attachment: true, assignees: [{role: bureau, unit: record_unit.district}]}
        """)
    run = Run(workflow, context())
    with pytest.raises(CommentRequired):
        run.decide(SENDING_BUREAU, comment="")
    with pytest.raises(AttachmentRequired):
        run.decide(SENDING_BUREAU, comment="同意")
    assert run.decide(SENDING_BUREAU, comment="同意", attachment=True).status == "approved"


def test_return_not_allowed_when_declared() -> None:
    workflow = spec("- {key: bureau, title: 审批, allow_return: false, assignees: [{role: bureau, unit: record_unit.district}]}\n")
    run = Run(workflow, context())
    assert routing.actions_for(workflow, run.tasks[0]) == ("approve", "reject")
    with pytest.raises(ActionNotAllowed):
        run.decide(SENDING_BUREAU, "return", comment="x")


def test_unknown_action__refused() -> None:
    run = Run(TRANSFER, context())
    with pytest.raises(ActionNotAllowed):
        run.decide(RECEIVING_REGISTRAR, "delete")


def test_start_allowed__role_and_record_condition() -> None:
    ctx = context(record={"status": "休学"})
    assert routing.start_allowed(DEFS.workflows["resume"], APPLICANT, ctx)
    assert not routing.start_allowed(DEFS.workflows["transfer"], APPLICANT, ctx)  # not 在读
    assert not routing.start_allowed(DEFS.workflows["resume"], SENDING_BUREAU, ctx)  # not a start role
