"""Workflow use cases: start, decide, withdraw, resubmit — each one locked, checked and committed as a whole.

Routing is decided by the pure functions in `routing.py`; this module loads their input and persists their
`Outcome`. Concurrency: the application row is locked first (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite
a write transaction starts with BEGIN IMMEDIATE, which serialises writers), and every UPDATE also names the
revision or task status it read, so a decision can never count twice and effects are applied exactly once.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from sqlalchemy import Row, and_, bindparam, case, false, func, insert, or_, select, update
from sqlalchemy.orm import Session as DbSession

from engine.archives.handover import hand_over_on_approval
from engine.certificates.service import issue_on_approval
from engine.documents import read_values
from engine.expressions import holds, value_of
from engine.fields.files import FileField, UploadedFile
from engine.issues import Issue
from engine.listing import PER_PAGE, Listing
from engine.messages import render
from engine.org import Unit, all_units, ancestor_ids
from engine.permissions import Principal, scope
from engine.records import PreparedUpdate, RecordService, SaveResult, StoredRecord, store_attachment
from engine.spec import Definitions, FormPolicy, FormSpec, RoleSpec
from engine.storage.db import Database, lock_rows
from engine.storage.models import Application, ApplicationAction, ApplicationTask, OrgUnit, Record, utcnow
from engine.storage.statements import Read, Write
from engine.validation import CleanResult, clean_record
from engine.workflows import checks, routing, versions
from engine.workflows.effects import create_linked, effect_failed as _effect_failed, units_of as _units_of
from engine.workflows.errors import (
    ActionNotAllowed, AlreadyOpen, ApplicationNotFound, AttachmentInvalid, ChecksFailed, ExclusiveOpen,
    NoAssigneeGroup, RecordMissing, Stale, StartConditionLost, StartNotAllowed,
)
from engine.workflows.routing import Actor, Context, Outcome, Slot, State, Task, UnitInfo
from engine.workflows.spec import ACTION_LABELS, BELOW, OPEN_STATUSES, RECORD, WorkflowSpec

ATTACHMENT_FORM = "wf:{key}"  # attachments.form_key of an application's files; record_id is the application id
DECISION_FILE = FileField()  # what an approver may attach to a decision (批复文件)

# A decision's statements, compiled once and run on the driver's cursor (engine/storage/statements.py): building
# and executing them through SQLAlchemy cost more than running them. Core tables, so the rows are plain rows (no ORM
# identity map); bind names differ from column names (reserved for SET clauses).
_APP, _TASK, _ACTION = Application.__table__, ApplicationTask.__table__, ApplicationAction.__table__
# FOR UPDATE on PostgreSQL; SQLite does not render it (its write transaction began with BEGIN IMMEDIATE).
_SELECT_APPLICATION = select(_APP).where(_APP.c.id == bindparam("b_id"))
_APPLICATION = Read(_SELECT_APPLICATION)
_LOCK_APPLICATION = Read(_SELECT_APPLICATION.with_for_update())
_LOCK_APPLICATION_NOWAIT = Read(_SELECT_APPLICATION.with_for_update(nowait=True))
# Read after the lock, in a statement of its own: a waiter that got the lock must see the tasks as the
# decision before it left them (PostgreSQL re-reads only the locked row of a joined SELECT ... FOR UPDATE).
_TASKS = Read(select(_TASK).where(_TASK.c.application_id == bindparam("b_app")).order_by(_TASK.c.id))
_ADVANCE = Write(
    update(_APP).where(_APP.c.id == bindparam("b_id"), _APP.c.revision == bindparam("b_revision"))
    .values(status=bindparam("b_status"), step=bindparam("b_step"), step_title=bindparam("b_title"),
            revision=_APP.c.revision + 1, updated_at=bindparam("b_now", type_=_APP.c.updated_at.type),
            finished_at=bindparam("b_finished", type_=_APP.c.finished_at.type))
)
_CLOSE_TASK = Write(
    update(_TASK).where(_TASK.c.id == bindparam("b_id"), _TASK.c.status == "open")
    .values(status=bindparam("b_status"), acted_by=bindparam("b_user"), acted_name=bindparam("b_name"),
            acted_at=bindparam("b_at", type_=_TASK.c.acted_at.type))
)
_CANCEL_TASK = Write(update(_TASK).where(_TASK.c.id == bindparam("b_id"), _TASK.c.status == "open").values(status="cancelled"))
_INSERT_TASKS, _INSERT_ACTIONS = Write(insert(_TASK)), Write(insert(_ACTION))


@dataclass
class StartResult:
    application_id: int | None = None
    issues: list[Issue] = field(default_factory=list)
    cleaned: CleanResult | None = None
    outcome: Outcome | None = None

    @property
    def ok(self) -> bool:
        return self.application_id is not None and not self.issues


@dataclass
class Bundle:
    """One application with its tasks and timeline, as the application page shows it."""

    application: Application
    tasks: list[ApplicationTask]
    actions: list[ApplicationAction]

    def state(self) -> State:
        return State(self.application.status, self.application.step, tuple(as_task(t) for t in self.tasks),
                     self.application.round)


@dataclass(frozen=True)
class Effect:
    """What a final approval writes to the record (None: nothing to change) and says in the timeline."""

    update: PreparedUpdate | None
    note: str


@dataclass(frozen=True)
class Plan:
    """A decision worked out: the application as read, its workflow version, the routing outcome, the effect."""

    app: Row
    spec: WorkflowSpec
    outcome: Outcome
    effect: Effect | None


class NeedsLock(Exception):
    """A plan made before the lock would have to write (draw a generated number): make it under the lock."""


class Decision:
    """One decision on an application, carried out by calling it: `decision()` → Outcome.

    On SQLite the write lock is the whole database (`Database.one_writer`): every other write of every worker waits
    while one decision holds it. So there the decision is worked out first in a read transaction (`plan_ahead`):
    reading the application, its tasks and record, routing, validating the record with its effect — about half of a
    decision's time. The write transaction then only writes, each UPDATE naming the revision or task status the plan
    read. If another decision or a save got there in between (Stale), the decision is worked out again under the
    lock. A call that found the lock busy (LockBusy, engine/storage/db.py:no_lock_waits) and is called again keeps its
    plan. PostgreSQL locks rows, not the database, so there the decision is worked out under its row locks in one
    transaction."""

    def __init__(self, service: WorkflowService, definitions: Definitions, principal: Principal, application_id: int,
                 task_id: int, action: str, comment: str, upload: UploadedFile | None) -> None:
        self.service, self.definitions, self.principal = service, definitions, principal
        self.application_id, self.task_id, self.action = application_id, task_id, action
        self.comment, self.upload = comment, upload
        # Not on PostgreSQL: there a planned write would have to lock the application's row without waiting first.
        self.plan_ahead = service.db.one_writer
        self.plan: Plan | None = None

    def __call__(self) -> Outcome:
        service = self.service
        if self.plan_ahead:
            self.plan_ahead = False
            try:
                with service.db.read() as s:
                    self.plan = service._plan(s, self, lock=False)
            except NeedsLock:
                pass
        with service.db.write() as s:
            if self.plan is not None:
                try:
                    return service._carry_out(s, self, self.plan)
                except Stale:
                    self.plan = None
                    s.rollback()
            return service._carry_out(s, self, service._plan(s, self, lock=True))


class WorkflowService:
    def __init__(self, db: Database, records: RecordService) -> None:
        self.db, self.records = db, records

    def _kept_units(self) -> list[Unit] | None:
        """The app's kept org tree (RecordService.org_tree), if it has one; None: read it in the transaction."""
        tree = getattr(self.records, "org_tree", None)
        return tree.units() if tree is not None else None

    # --- starting -------------------------------------------------------------------------------
    def start(self, definitions: Definitions, spec: WorkflowSpec, principal: Principal, record_id: int,
              raw: Mapping[str, Any], chosen_unit_id: int | None = None, draft: bool = False) -> StartResult:
        """Validate and submit an application (or keep it as a draft for the applicant to complete)."""
        form = definitions.forms[spec.form]
        kept = self._kept_units()  # before the write transaction: reading 23,000 units inside it holds every writer
        with self.db.write() as s:
            _lock(s, select(Record.id).where(Record.id == record_id))
            units = kept if kept is not None else all_units(s)
            record = self.startable_record(s, spec, form, principal, record_id, units)
            if record is None:
                raise StartNotAllowed(workflow=spec.title)
            open_id = self.open_application(spec, record_id, s)
            if open_id is not None:
                raise AlreadyOpen(workflow=spec.title, id=open_id)
            self.refuse_exclusive(s, definitions, spec, record_id)
            cleaned, issues, changes = self.validate(spec, form, record, raw, chosen_unit_id, units)
            if draft:
                issues = [i for i in issues if i.path in spec.changes]
            if issues:
                return StartResult(issues=issues, cleaned=cleaned)
            if not draft:
                self.refuse_failing_checks(s, definitions, spec, record_id, record.values, cleaned.values)
            versions.remember(s, spec)
            app = Application(
                workflow_key=spec.key, version=spec.version, form_key=form.key, record_id=record_id,
                subject=_subject(form, record), applicant_id=principal.user_id, applicant_name=principal.display_name,
                status="draft", step="", step_title="", round=1, revision=1, data={}, changes=changes,
                units=_snapshot(record.unit_path, chosen_unit_id, principal, units), chosen_unit_id=chosen_unit_id,
                record_path=record.unit_path,
                record_snapshot=record_snapshot(spec, form, record.values, record.unit_path, units),
                chosen_path=_path_of(units, chosen_unit_id),
            )
            s.add(app)
            s.flush()
            application_id = app.id
            app.data = self._store(s, spec, application_id, principal, cleaned.values, {})
            s.flush()
            outcome = None
            if draft:
                self._log(s, app, "draft", principal)
            else:
                ctx = self._context(app, spec, record.values)
                outcome = routing.submit(spec, ctx)
                self._apply(s, definitions, spec, app, outcome, principal, "submit")
            s.commit()
            return StartResult(application_id=application_id, cleaned=cleaned, outcome=outcome)

    def open_application(self, spec: WorkflowSpec, record_id: int, s: DbSession | None = None) -> int | None:
        """The id of an application of `spec` on the record still in flight (draft, pending or returned)."""
        stmt = select(Application.id).where(Application.workflow_key == spec.key, Application.form_key == spec.form,
                                            Application.record_id == record_id, Application.status.in_(OPEN_STATUSES))
        if s is not None:
            return s.scalar(stmt)
        with self.db.read() as read:
            return read.scalar(stmt)

    def exclusive_conflict(self, definitions: Definitions, spec: WorkflowSpec, record_id: int,
                           s: DbSession | None = None, before: Application | Row | None = None) -> Row | None:
        """Another application of `spec`'s exclusive group in flight on the record (None: none, or no group).
        `before`: for a decision on that application, only one submitted earlier (the first one is decided first)."""
        keys = [w.key for w in definitions.workflows.values()
                if spec.exclusive and w.exclusive == spec.exclusive and w.form == spec.form]
        if not keys:
            return None
        stmt = (select(Application.id, Application.workflow_key).where(
            Application.workflow_key.in_(keys), Application.form_key == spec.form, Application.record_id == record_id,
            Application.status.in_(("pending", "returned")))  # a draft claims nothing until it is submitted
            .order_by(Application.id))
        if before is not None:
            stmt = stmt.where(Application.id < before.id)
        if s is not None:
            return s.execute(stmt).first()
        with self.db.read() as read:
            return read.execute(stmt).first()

    def refuse_exclusive(self, s: DbSession | None, definitions: Definitions, spec: WorkflowSpec, record_id: int,
                         before: Application | Row | None = None) -> None:
        other = self.exclusive_conflict(definitions, spec, record_id, s, before)
        if other is not None:
            title = definitions.workflows[other.workflow_key].title if other.workflow_key in definitions.workflows \
                else other.workflow_key
            raise ExclusiveOpen(other=title, id=other.id, workflow=spec.title)

    def refuse_failing_checks(self, s: DbSession, definitions: Definitions, spec: WorkflowSpec, record_id: int,
                              record: Mapping[str, Any], application: Mapping[str, Any]) -> None:
        """ChecksFailed, listing every reason, when the record does not meet the workflow's checks."""
        reasons = checks.failing(checks.results(s, definitions, spec, self.db.dialect, record_id, record, application))
        if reasons:
            raise ChecksFailed(spec.title, reasons)

    def check_results(self, definitions: Definitions, spec: WorkflowSpec, record_id: int, record: Mapping[str, Any],
                      application: Mapping[str, Any]) -> list[checks.CheckResult]:
        """The workflow's checks on the record as it is now, for the pages (start and application)."""
        if not spec.checks:
            return []
        with self.db.read() as s:
            return checks.results(s, definitions, spec, self.db.dialect, record_id, record, application)

    @staticmethod
    def start_values(spec: WorkflowSpec, record: StoredRecord) -> dict[str, Any]:
        """What a new application starts from: its fields' defaults, and a change request's fields as the record has them."""
        values = {k: f.default for k, f in spec.application.fields.items()}
        values.update({k: record.values.get(k) for k in spec.changes})
        return values

    def startable_record(self, s: DbSession | None, spec: WorkflowSpec, form: FormSpec, principal: Principal,
                         record_id: int, units: list[Unit]) -> StoredRecord | None:
        """The record if one of the user's start roles reaches it and the start condition holds for it."""
        roles = tuple(r for r in principal.roles if r.key in spec.start_roles)
        if not roles:
            return None
        starter = Principal(principal.user_id, principal.username, principal.display_name, roles,
                            principal.unit_paths, principal.anchors)
        record = self.records.get(form, record_id, starter, "read", session=s)
        if record is None:
            return None
        ctx = Context({}, record.values, {"record_unit": _levels(record.unit_path, units)}, principal.user_id)
        return record if routing.start_allowed(spec, Actor.of(principal), ctx) else None

    def validate(self, spec: WorkflowSpec, form: FormSpec, record: StoredRecord, raw: Mapping[str, Any],
                 chosen_unit_id: int | None, units: list[Unit]) -> tuple[CleanResult, list[Issue], dict[str, Any]]:
        """The application through the one validator; proposed values also through the target form's rules."""
        cleaned = clean_record(spec.application, raw, context={RECORD: record.values})
        issues = list(cleaned.issues)
        if spec.unit_choice is not None:
            allowed = {u.id for u in unit_options(spec, record.unit_path, units, record.values)}
            if chosen_unit_id is None:
                if spec.unit_choice.required:
                    issues.append(Issue("wf_unit_required", {"label": spec.unit_choice.label}, path="_unit"))
            elif chosen_unit_id not in allowed:
                issues.append(Issue("wf_unit_invalid", {"label": spec.unit_choice.label}, path="_unit"))
        changes: dict[str, Any] = {}
        if spec.changes:
            proposed = {k: cleaned.values.get(k) for k in spec.changes}
            merged = clean_record(form, {**record.values, **proposed})
            issues += [i for i in merged.issues if i.path.split(".")[0] in spec.changes and i not in issues]
            for key in spec.changes:
                kind = form.fields[key].kind
                old = None if record.values.get(key) is None else kind.to_json(record.values[key])
                new = None if proposed[key] is None else kind.to_json(proposed[key])
                if old != new:
                    changes[key] = [old, new]
            if not changes and not any(i.path in spec.changes for i in issues):
                labels = "、".join(form.fields[k].label for k in spec.changes)
                issues.append(Issue("wf_no_change", {"fields": labels}, path=spec.changes[0]))
        return cleaned, issues, changes

    # --- deciding -------------------------------------------------------------------------------
    def decide(self, definitions: Definitions, principal: Principal, application_id: int, task_id: int, action: str,
               comment: str = "", upload: UploadedFile | None = None) -> Outcome:
        """One decision, routed and committed with its effects (see `decision`)."""
        return self.decision(definitions, principal, application_id, task_id, action, comment, upload)()

    def decision(self, definitions: Definitions, principal: Principal, application_id: int, task_id: int, action: str,
                 comment: str = "", upload: UploadedFile | None = None) -> Decision:
        """A decision to carry out by calling it (`decision()`, as web/writes.py:WriteRunner does, maybe more than once
        when a lock was busy).

        Refused first, before anything else is looked at: no such application (ApplicationNotFound), a user in none
        of its assignee groups (NoAssigneeGroup), an unknown action."""
        if upload is not None and not upload.filename and not upload.data:
            upload = None
        return Decision(self, definitions, principal, application_id, task_id, action, comment, upload)

    def _plan(self, s: DbSession, decision: Decision, lock: bool) -> Plan:
        """What `decision` will write, worked out from the application, its tasks and its record as `s` reads them
        (`lock`: locked, in the write transaction)."""
        actor, definitions = Actor.of(decision.principal), decision.definitions
        app, state = self._locked_row(s, decision.application_id) if lock else self._row(s, decision.application_id)
        if not any(routing.is_member(t, actor) for t in state.tasks):
            raise NoAssigneeGroup()
        if decision.action not in routing.DECISIONS:
            raise ActionNotAllowed(action=ACTION_LABELS.get(decision.action, decision.action or "（未选择）"))
        if decision.upload is not None:
            _, problems = DECISION_FILE.clean(decision.upload)
            if problems:
                raise AttachmentInvalid(detail=render(problems[0], "附件"))
        spec = versions.spec_for(s, definitions, app.workflow_key, app.version)
        # The group is today's definition's: applications in flight when it was declared are covered too.
        group = definitions.workflows.get(app.workflow_key, spec)
        recheck = decision.action == "approve" and bool(group.exclusive)
        record_values = self._record_values(s, definitions, app) if spec.reads_record or recheck else {}
        outcome = routing.decide(spec, self._context(app, spec, record_values), state, decision.task_id, decision.action,
                                 actor, decision.comment, decision.upload is not None)
        if recheck:  # after routing: a decision on a closed task is refused as such first
            # Exclusive workflows change the same thing (学籍状态): the one submitted first is decided first, and an
            # approval still needs the record to be as the start condition wants it (another may have changed it).
            self.refuse_exclusive(s, definitions, group, app.record_id, before=app)
            if spec.start_when is not None and not holds(spec.start_when, self._context(app, spec, record_values).names()):
                raise StartConditionLost(workflow=spec.title)
        if outcome.effects and spec.checks:  # the record may have changed since submission: checked again
            values = record_values or self._record_values(s, definitions, app)
            self.refuse_failing_checks(s, definitions, spec, app.record_id, values, self.values(spec, app))
        effect = self._plan_effects(s, definitions, spec, app, decision.principal, lock) if outcome.effects else None
        return Plan(app, spec, outcome, effect)

    def _carry_out(self, s: DbSession, decision: Decision, plan: Plan) -> Outcome:
        """Write a planned decision and commit; Stale if the application or its record moved on since the plan."""
        attachment = store_attachment(s, ATTACHMENT_FORM.format(key=plan.spec.key), plan.app.id, "_decision",
                                      decision.upload, decision.principal.user_id) if decision.upload is not None else None
        self._apply(s, decision.definitions, plan.spec, plan.app, plan.outcome, decision.principal, decision.action,
                    decision.comment.strip(), decision.task_id, attachment, effect=plan.effect)
        s.commit()
        return plan.outcome

    def withdraw(self, definitions: Definitions, principal: Principal, application_id: int) -> Outcome:
        with self.db.write() as s:
            app, state = self._locked_row(s, application_id)
            spec = versions.spec_for(s, definitions, app.workflow_key, app.version)
            outcome = routing.withdraw(state, Actor.of(principal), app.applicant_id)
            self._apply(s, definitions, spec, app, outcome, principal, "withdraw")
            s.commit()
            return outcome

    def resubmit(self, definitions: Definitions, principal: Principal, application_id: int, raw: Mapping[str, Any],
                 chosen_unit_id: int | None = None) -> StartResult:
        """The applicant's corrected application after 退回修改 (or a completed draft): a new round from step one."""
        with self.db.write() as s:
            app = self._locked(s, application_id)
            spec = versions.spec_for(s, definitions, app.workflow_key, app.version)
            form = definitions.forms[spec.form]
            record = self.records.get(form, app.record_id, system_principal(principal, form), "read", session=s)
            if record is None:
                raise RecordMissing()
            state = Bundle(app, self._tasks(s, app.id), []).state()
            routing.ensure_with_applicant(state, Actor.of(principal), app.applicant_id)
            kept = self._kept_units()
            units = kept if kept is not None else all_units(s)
            values = {**self.values(spec, app), **raw}
            cleaned, issues, changes = self.validate(spec, form, record, values, chosen_unit_id, units)
            if issues:
                return StartResult(issues=issues, cleaned=cleaned)
            self.refuse_failing_checks(s, definitions, spec, app.record_id, record.values, cleaned.values)
            action = "submit" if app.status == "draft" else "resubmit"
            application_id = app.id
            app.data = self._store(s, spec, app.id, principal, cleaned.values, app.data)
            app.changes = changes
            app.units = _snapshot(record.unit_path, chosen_unit_id, principal, units, app.units.get("applicant_unit"))
            moved = chosen_unit_id != app.chosen_unit_id
            app.chosen_unit_id = chosen_unit_id
            app.record_path = record.unit_path
            app.record_snapshot = record_snapshot(spec, form, record.values, record.unit_path, units)
            app.chosen_path = _path_of(units, chosen_unit_id)
            app.round += 1
            s.flush()
            outcome = routing.resubmit(spec, self._context(app, spec, record.values), state, Actor.of(principal),
                                       restart=moved)
            self._apply(s, definitions, spec, app, outcome, principal, action)
            s.commit()
            return StartResult(application_id=application_id, cleaned=cleaned, outcome=outcome)

    # --- persistence ----------------------------------------------------------------------------
    def _apply(self, s: DbSession, definitions: Definitions, spec: WorkflowSpec, app: Application | Row,
               outcome: Outcome,
               principal: Principal, action: str, comment: str = "", task_id: int | None = None,
               attachment: dict[str, Any] | None = None, effect: Effect | None = None) -> None:
        """Persist one transition; every UPDATE names what it read, so a lost race raises instead of overwriting."""
        now = utcnow()
        step = spec.step(outcome.step)
        acted_step = spec.step(app.step)
        read_revision = app.revision
        s.flush()  # a new or resubmitted application goes out with its ORM object, before these statements
        connection = s.connection()
        changed = _ADVANCE.run(connection, {
            "b_id": app.id, "b_revision": read_revision, "b_status": outcome.status, "b_step": outcome.step,
            "b_title": step.title if step else "", "b_now": now, "b_finished": now if outcome.finished else None,
        })
        if changed != 1:
            raise Stale()
        for closed_id, status in outcome.closed.items():
            if status == "cancelled":
                done = _CANCEL_TASK.run(connection, {"b_id": closed_id})
            else:
                done = _CLOSE_TASK.run(connection, {"b_id": closed_id, "b_status": status, "b_at": now,
                                                    "b_user": principal.user_id, "b_name": principal.display_name})
            if done != 1:
                raise Stale()
        if outcome.opened:
            _INSERT_TASKS.run(connection, [_new_task(spec, app, slot, now) for slot in outcome.opened])
        decided = acted_step is not None and bool(task_id)
        actions = [_action(app, principal, action, now, comment, step=acted_step.key if decided else "",
                           step_title=acted_step.title if decided else "", task_id=task_id, attachment=attachment)]
        if outcome.effects:
            effect = effect or self._plan_effects(s, definitions, spec, app, principal, lock=True)
            if effect.update is not None:
                written = self.records.write_update(s, effect.update, caller_session=s)
                if written.conflict is not None:  # only a plan made before the lock: under it the record cannot move
                    raise Stale()
                if not written.ok:  # a unique value someone else saved since the check
                    raise _effect_failed(effect.update.form, written.issues)
            notes = [effect.note] if effect.note else []
            notes += self._create_children(s, definitions, spec, app, principal)
            notes += hand_over_on_approval(
                s, spec, app, lambda: self._context(app, spec, self._record_values(s, definitions, app)).names(), principal)
            self._snapshot_decided(s, definitions, spec, app, principal)
            actions.append(_action(app, principal, "effects", now, "；".join(notes)))
            # The one hook for certificates (engine/certificates): issued in this transaction, with the approval.
            issue_on_approval(s, definitions, spec.key, app.form_key, app.record_id, app.id,
                              lambda: self.values(spec, app), principal)
        _INSERT_ACTIONS.run(connection, actions)

    def _plan_effects(self, s: DbSession, definitions: Definitions, spec: WorkflowSpec, app: Application | Row,
                      principal: Principal, lock: bool) -> Effect:
        """`on_approve` (and a change request's new values) as a RecordService update built from the record as `s`
        reads it (`lock`: locked, in the write transaction; otherwise read-only, see Decision)."""
        form = definitions.forms[spec.form]
        submitted: dict[str, Any] = dict(spec.effects.set)
        for key, (_old, new) in (app.changes or {}).items():
            if key in form.fields:
                submitted[key] = None if new is None else form.fields[key].kind.from_json(new)
        target = spec.target
        system = system_principal(principal, target)
        # Read once; under `lock` also locked (PostgreSQL), so that the revision this update starts from cannot move.
        current = self.records.get(target, app.record_id, system, "update", session=s, lock=lock)
        if current is None:
            raise RecordMissing()
        if spec.effects.compute:  # expressions over the application and the record as it is now
            names = self._context(app, spec, current.values).names()
            submitted.update({k: value_of(e, names) for k, e in spec.effects.compute.items()})
        unit_id = app.chosen_unit_id if spec.effects.move_to_chosen_unit else None
        prepared = self.records.prepare_update(s, target, system, current, submitted, current.revision, unit_id,
                                               note=f"{spec.title}申请 #{app.id} 审批通过后生效", caller_session=s,
                                               read_only=not lock)
        if prepared is None:
            raise NeedsLock()
        if isinstance(prepared, SaveResult):
            if not prepared.ok:
                raise _effect_failed(form, prepared.issues)
            prepared = None  # nothing to change
        # Sensitive values stay out of the timeline: it is shown to every viewer of the application.
        before = current.values
        notes = [f"{form.fields[k].label}已更新" if form.fields[k].sensitive else
                 f"{form.fields[k].label}：{form.fields[k].kind.to_text(before.get(k)) or '（空）'} → "
                 f"{form.fields[k].kind.to_text(v) or '（空）'}"
                 for k, v in submitted.items() if before.get(k) != v]
        if unit_id is not None and unit_id != current.unit_id:
            notes.append(f"{form.unit_label}：{_full_name(s, current.unit_id)} → {_full_name(s, unit_id)}")
        return Effect(prepared, "；".join(notes))

    def _snapshot_decided(self, s: DbSession, definitions: Definitions, spec: WorkflowSpec, app: Application | Row,
                          principal: Principal) -> None:
        """The record as final approval left it, kept with the application (the page shows it to viewers the
        record is out of reach for now: the sending school after a transfer)."""
        form = definitions.forms[spec.form]
        # The stored document, not the record service's read: no projection columns (unique values) to fetch.
        row = s.execute(select(Record.data, OrgUnit.path).join(OrgUnit, OrgUnit.id == Record.unit_id)
                        .where(Record.id == app.record_id)).first()
        if row is not None:
            kept = self._kept_units()
            snapshot = record_snapshot(spec, form, read_values(form, row.data or {}), row.path,
                                       kept if kept is not None else all_units(s))
            s.execute(update(Application).where(Application.id == app.id).values(record_snapshot=snapshot))

    def _create_children(self, s: DbSession, definitions: Definitions, spec: WorkflowSpec, app: Application | Row,
                         principal: Principal) -> list[str]:
        """`on_approve.create`, in the approving transaction (a refusal fails the whole approval): the timeline's notes."""
        if not spec.effects.create:
            return []
        names = self._context(app, spec, self._record_values(s, definitions, app)).names()
        return create_linked(s, self.records, definitions, definitions.forms[spec.form], spec.effects.create, names,
                             _units_of(app.units), app.record_id, principal)

    def _store(self, s: DbSession, spec: WorkflowSpec, application_id: int, principal: Principal,
               values: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
        """Application values in stored form; uploads become attachment references (kept if not replaced)."""
        document = dict(previous)
        for key, spec_field in spec.application.fields.items():
            value = values.get(key)
            if isinstance(value, UploadedFile):
                document[key] = store_attachment(s, ATTACHMENT_FORM.format(key=spec.key), application_id, key, value,
                                                 principal.user_id)
            else:
                document[key] = None if value is None else spec_field.kind.to_json(value)
        return document

    def _log(self, s: DbSession, app: Application | Row, action: str, principal: Principal, comment: str = "") -> None:
        _INSERT_ACTIONS.run(s.connection(), [_action(app, principal, action, utcnow(), comment)])

    def _locked(self, s: DbSession, application_id: int) -> Application:
        """The application as an ORM object (resubmit changes its data), locked."""
        app = s.scalars(select(Application).where(Application.id == application_id).with_for_update()).first()
        if app is None:
            raise ApplicationNotFound(application_id)
        return app

    @staticmethod
    def _locked_row(s: DbSession, application_id: int) -> tuple[Row, State]:
        """The application as a plain row, locked, then its state with every task: what a decision or
        withdrawal reads."""
        connection = s.connection()
        app = lock_rows(s, _LOCK_APPLICATION_NOWAIT, _LOCK_APPLICATION).first(connection, {"b_id": application_id})
        if app is None:
            raise ApplicationNotFound(application_id)
        tasks = tuple(as_task(t) for t in _TASKS.all(connection, {"b_app": app.id}))
        return app, State(app.status, app.step, tasks, app.round)

    @staticmethod
    def _row(s: DbSession, application_id: int) -> tuple[Row, State]:
        """As _locked_row, without the lock (a read transaction's snapshot)."""
        connection = s.connection()
        app = _APPLICATION.first(connection, {"b_id": application_id})
        if app is None:
            raise ApplicationNotFound(application_id)
        tasks = tuple(as_task(t) for t in _TASKS.all(connection, {"b_app": app.id}))
        return app, State(app.status, app.step, tasks, app.round)

    def _tasks(self, s: DbSession, application_id: int) -> list[ApplicationTask]:
        return list(s.scalars(select(ApplicationTask).where(ApplicationTask.application_id == application_id)
                              .order_by(ApplicationTask.id)))

    def _record_values(self, s: DbSession, definitions: Definitions, app: Application | Row) -> dict[str, Any]:
        form = definitions.forms.get(app.form_key)
        data = s.scalar(select(Record.data).where(Record.id == app.record_id))
        return read_values(form, data or {}) if form is not None else {}

    def _context(self, app: Application | Row, spec: WorkflowSpec, record_values: Mapping[str, Any]) -> Context:
        return Context(self.values(spec, app), record_values, _units_of(app.units), app.applicant_id)

    @staticmethod
    def values(spec: WorkflowSpec, app: Application | Row) -> dict[str, Any]:
        """Python values of the application (stored attachment references stay references)."""
        return read_values(spec.application, app.data or {})

    # --- reading --------------------------------------------------------------------------------
    def load(self, application_id: int, timeline: bool = True) -> Bundle | None:
        with self.db.read() as s:
            app = s.get(Application, application_id)
            if app is None:
                return None
            actions = list(s.scalars(select(ApplicationAction).where(ApplicationAction.application_id == app.id)
                                     .order_by(ApplicationAction.id))) if timeline else []
            return Bundle(app, self._tasks(s, app.id), actions)

    def spec_of(self, definitions: Definitions, app: Application) -> WorkflowSpec:
        with self.db.read() as s:
            return versions.spec_for(s, definitions, app.workflow_key, app.version)

    def can_view(self, definitions: Definitions, principal: Principal, bundle: Bundle) -> bool:
        """Applicant, anyone who acted or may act on it, and anyone whose read scope reaches the record."""
        app, actor = bundle.application, Actor.of(principal)
        if principal.is_admin or app.applicant_id == principal.user_id:
            return True
        if any(a.user_id == principal.user_id for a in bundle.actions):
            return True
        if any(routing.is_member(as_task(t), actor) for t in bundle.tasks):
            return True
        form = definitions.forms.get(app.form_key)
        if form is None:
            return False
        # Who read the record when it was submitted still reads the application (the sending school after a
        # transfer, for its 学籍异动); the page then shows the record as kept with the application, not as it is now.
        if app.record_path and scope(principal, "read", form).contains(app.record_path, None, principal.user_id):
            return True
        return self.records.get(form, app.record_id, principal, "read") is not None

    def moves(self, definitions: Definitions, principal: Principal, workflow: str = "", side: str = "",
              page: int = 1) -> Listing:
        """学籍异动: approved applications whose approval changed a record (`on_approve`), in or out of the units
        this user reads: an entry is the user's "out" side when the record was in their units when submitted, "in"
        when the chosen unit (a transfer's destination) is theirs. Both schools list a transfer, each its part."""
        keys = [k for k, w in definitions.workflows.items() if w.effects.set or w.effects.compute
                or w.effects.move_to_chosen_unit or w.effects.create]
        if workflow:
            keys = [k for k in keys if k == workflow]
        # Only a workflow that moves the record into the chosen unit (a transfer) brings it in on approval; another
        # that names a unit (毕业's destination school, which still has to confirm the handover) does not.
        moving = [k for k in keys if definitions.workflows[k].effects.move_to_chosen_unit]
        out_side = self._reach(definitions, principal, keys, "record_path")
        in_side = and_(Application.workflow_key.in_(moving), self._reach(definitions, principal, moving, "chosen_path"))
        chosen = {"out": out_side, "in": in_side}.get(side)
        condition = and_(Application.status == "approved", Application.workflow_key.in_(keys),
                         chosen if chosen is not None else or_(out_side, in_side))
        page = max(1, page)
        stmt = select(*LIST_COLUMNS, Application.finished_at, Application.record_path, Application.chosen_path) \
            .where(condition)
        with self.db.read() as s:
            total = s.scalar(select(func.count()).select_from(Application).where(condition)) or 0
            rows = s.execute(stmt.order_by(Application.finished_at.desc(), Application.id.desc())
                             .limit(PER_PAGE).offset((page - 1) * PER_PAGE)).all()
        return Listing([dict(row._mapping) for row in rows], total, page)

    @staticmethod
    def _reach(definitions: Definitions, principal: Principal, keys: list[str], column: str) -> Any:
        """Applications whose `column` (a unit path) lies in the read scope of this user on their workflow's form."""
        target = getattr(Application, column)
        parts = []
        for form_key in {definitions.workflows[k].form for k in keys}:
            form = definitions.forms.get(form_key)
            reach = scope(principal, "read", form) if form is not None else None
            if reach is None or (not reach.everything and not reach.paths):
                continue
            inside = target != "" if reach.everything else or_(*(target.startswith(p, autoescape=True) for p in sorted(reach.paths)))
            parts.append(and_(Application.form_key == form_key, inside))
        return or_(*parts) if parts else false()

    def for_record(self, form_key: str, record_id: int) -> list[Application]:
        with self.db.read() as s:
            return list(s.scalars(select(Application).where(Application.form_key == form_key,
                                                            Application.record_id == record_id)
                                  .order_by(Application.id.desc())))

    def count_inbox(self, principal: Principal) -> int:
        with self.db.read() as s:
            return s.scalar(select(func.count(func.distinct(ApplicationTask.application_id))).where(_inbox(principal))) or 0

    def count_returned(self, principal: Principal) -> int:
        """The user's applications returned to them for changes (the 我的申请 badge)."""
        with self.db.read() as s:
            return s.scalar(select(func.count()).select_from(Application).where(
                Application.applicant_id == principal.user_id, Application.status == "returned")) or 0

    def inbox(self, principal: Principal, workflow: str = "", status: str = "", page: int = 1,
              total: int | None = None, within: str = "") -> Listing:
        """Open tasks' applications, newest first; `total` may be passed in (the 待办 badge has just counted it).
        `within`: only records that were in the unit at this path (or below it) when submitted."""
        ids = select(ApplicationTask.application_id).where(_inbox(principal))
        if workflow or status or within:
            return self._listing(Application.id.in_(ids), workflow, status, page, within=within)
        page = max(1, page)
        with self.db.read() as s:
            if total is None:
                total = s.scalar(select(func.count(func.distinct(ApplicationTask.application_id))).where(_inbox(principal))) or 0
            # The page of ids straight from the inbox index, newest first, before touching the applications.
            chosen = list(s.scalars(ids.distinct().order_by(ApplicationTask.application_id.desc())
                                    .limit(PER_PAGE).offset((page - 1) * PER_PAGE)))
            rows = s.execute(select(*LIST_COLUMNS).where(Application.id.in_(chosen)).order_by(Application.id.desc())).all()
        return Listing([dict(row._mapping) for row in rows], total, page)

    def done(self, principal: Principal, workflow: str = "", status: str = "", page: int = 1, within: str = "") -> Listing:
        ids = select(ApplicationAction.application_id).where(
            ApplicationAction.user_id == principal.user_id, ApplicationAction.action.in_(routing.DECISIONS))
        return self._listing(Application.id.in_(ids), workflow, status, page, within=within)

    def mine(self, principal: Principal, workflow: str = "", status: str = "", page: int = 1, within: str = "") -> Listing:
        """The user's applications: those returned to them for changes first, each with the reason it came back
        (`returned_reason`, the comment of its current round's return), then the rest, newest first."""
        returned_first = case((Application.status == "returned", 0), else_=1)
        listing = self._listing(Application.applicant_id == principal.user_id, workflow, status, page, within=within,
                                first=returned_first)
        returned = [row["id"] for row in listing.rows if row["status"] == "returned"]
        if returned:
            with self.db.read() as s:
                reasons = dict(s.execute(
                    select(ApplicationAction.application_id, ApplicationAction.comment)
                    .join(Application, Application.id == ApplicationAction.application_id)
                    .where(ApplicationAction.application_id.in_(returned), ApplicationAction.action == "return",
                           ApplicationAction.round == Application.round)
                    .order_by(ApplicationAction.id)).all())  # the last return of the round wins
            for row in listing.rows:
                row["returned_reason"] = reasons.get(row["id"], "")
        return listing

    def _listing(self, condition: Any, workflow: str, status: str, page: int, total: int | None = None,
                 within: str = "", first: Any = None) -> Listing:
        stmt = select(*LIST_COLUMNS).where(condition)
        if within:
            stmt = stmt.where(Application.record_path.startswith(within, autoescape=True))
        if workflow:
            stmt = stmt.where(Application.workflow_key == workflow)
        if status:
            stmt = stmt.where(Application.status == status)
        page = max(1, page)
        with self.db.read() as s:
            if total is None:
                total = s.scalar(select(func.count()).select_from(stmt.with_only_columns(Application.id).subquery())) or 0
            order = (Application.id.desc(),) if first is None else (first, Application.id.desc())
            rows = s.execute(stmt.order_by(*order).limit(PER_PAGE).offset((page - 1) * PER_PAGE)).all()
        return Listing([dict(row._mapping) for row in rows], total, page)


# --- helpers ------------------------------------------------------------------------------------

def unit_options(spec: WorkflowSpec, record_path: str, units: Iterable[Unit],
                 record: Mapping[str, Any] | None = None) -> list[Unit]:
    """Units the applicant may choose: at the choice's level, outside the record's own `outside` unit, and fitting
    the record by the choice's `when` (a 高一 student goes to a 高一 class; a 初三 graduate to a school with a 高一)."""
    choice = spec.unit_choice
    if choice is None:
        return []
    units = list(units)
    own = next((u.path for u in units if u.level == choice.outside and record_path.startswith(u.path)), None) \
        if choice.outside else None
    found = [u for u in units if u.level == choice.level and not (own and u.path.startswith(own))]
    if choice.when is None:
        return found
    names = {u.path: u for u in units}
    inside = _names_inside(found, units) if choice.reads_below else {}
    record_values = dict(record or {})

    def fits(unit: Unit) -> bool:
        above = (names.get(p) for p in _paths_above(unit.path))
        seen: dict[str, Any] = {u.level: u.name for u in above if u is not None}
        seen[BELOW] = inside.get(unit.path, {})
        return holds(choice.when, {"unit": seen, RECORD: record_values})
    return [u for u in found if fits(u)]


def _names_inside(candidates: list[Unit], units: list[Unit]) -> dict[str, dict[str, list[str]]]:
    """Candidate path -> level -> the names of the units of that level inside it (a school's grades: 初一, 初二 …)."""
    levels = {u.level for u in units}
    inside: dict[str, dict[str, list[str]]] = {u.path: {level: [] for level in levels} for u in candidates}
    for unit in units:
        for path in _paths_above(unit.path)[:-1]:
            if path in inside:
                inside[path][unit.level].append(unit.name)
    return inside


def _paths_above(path: str) -> list[str]:
    """"/1/2/3/" → ["/1/", "/1/2/", "/1/2/3/"]: the unit and every unit above it."""
    parts = [p for p in path.strip("/").split("/") if p]
    return ["/" + "/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1)]


def _inbox(principal: Principal) -> Any:
    actor = Actor.of(principal)
    return and_(
        ApplicationTask.status == "open",
        ApplicationTask.role_key.in_(sorted(actor.roles)),
        ApplicationTask.unit_path.in_(sorted(actor.paths)),
        or_(ApplicationTask.excluded_user_id.is_(None), ApplicationTask.excluded_user_id != principal.user_id),
    )


def _lock(s: DbSession, stmt: Any) -> None:
    """A row lock on PostgreSQL; on SQLite the write transaction's BEGIN IMMEDIATE already holds the database."""
    if s.get_bind().dialect.name != "sqlite":
        s.execute(stmt.with_for_update())


def as_task(row: ApplicationTask | Row) -> Task:
    return Task(row.id, row.step, row.slot, row.role_key, row.unit_path, row.status, row.round, row.acted_by,
                row.acted_name, row.acted_at)


def _new_task(spec: WorkflowSpec, app: Application | Row, slot: Slot, now: dt.datetime) -> dict[str, Any]:
    """A wf_tasks row (for one multi-row INSERT)."""
    step = spec.step(slot.step)
    excluded = None if step is not None and step.allow_self_approval else app.applicant_id
    return {"application_id": app.id, "round": app.round, "step": slot.step, "step_title": step.title if step else "",
            "slot": slot.index, "label": slot.label, "role_key": slot.role, "unit_id": slot.unit.id,
            "unit_path": slot.unit.path, "unit_name": slot.unit.name, "excluded_user_id": excluded, "status": "open",
            "acted_by": None, "acted_name": "", "acted_at": None, "created_at": now}


def _action(app: Application | Row, principal: Principal, action: str, now: dt.datetime, comment: str = "",
            step: str = "", step_title: str = "", task_id: int | None = None,
            attachment: dict[str, Any] | None = None) -> dict[str, Any]:
    """A wf_actions row: one entry of the timeline."""
    return {"application_id": app.id, "round": app.round, "step": step, "step_title": step_title, "task_id": task_id,
            "action": action, "user_id": principal.user_id, "username": principal.username,
            "display_name": principal.display_name, "comment": comment, "attachment": attachment, "at": now}


LIST_COLUMNS = (  # what a list row shows: no record or application documents (units: a few ids and names)
    Application.id, Application.workflow_key.label("workflow"), Application.subject,
    Application.applicant_name.label("applicant"), Application.status, Application.step_title, Application.created_at,
    Application.updated_at, Application.units,
)


def _subject(form: FormSpec, record: StoredRecord) -> str:
    spec = form.fields.get(form.title_field)
    value = record.values.get(form.title_field) if spec is not None else None
    return (spec.kind.to_text(value) if spec is not None and value is not None else "") or f"#{record.id}"


def _path_of(units: Iterable[Unit], unit_id: int | None) -> str:
    return next((u.path for u in units if u.id == unit_id), "") if unit_id is not None else ""


def record_snapshot(spec: WorkflowSpec, form: FormSpec, values: Mapping[str, Any], unit_path: str,
                    units: Iterable[Unit]) -> dict[str, Any]:
    """The record's summary fields (stored form) and unit names, as an application keeps them."""
    kept = {k: None if values.get(k) is None else form.fields[k].kind.to_json(values[k])
            for k in spec.summary if k in form.fields}
    names = [u.name for u in sorted((u for u in units if unit_path.startswith(u.path)), key=lambda u: len(u.path))]
    return {"values": kept, "unit": "/".join(names)}


def _levels(path: str, units: Iterable[Unit]) -> dict[str, UnitInfo]:
    """The unit at `path` and every unit above it, by org level: looked up by the ids in the path, not by a scan
    of every unit (23,000 of them, for each workflow a record page offers)."""
    index = _unit_index(units)
    found = {}
    for unit_id in ancestor_ids(path):
        unit = index.get(unit_id)
        if unit is not None:
            found[unit.level] = UnitInfo(unit.id, unit.path, unit.name)
    return found


_indexed: tuple[Any, dict[int, Unit]] | None = None  # the last tree indexed: OrgTree hands out one list until it changes


def _unit_index(units: Iterable[Unit]) -> dict[int, Unit]:
    global _indexed
    kept = _indexed
    if kept is not None and kept[0] is units:
        return kept[1]
    index = {u.id: u for u in units}
    _indexed = (units, index)
    return index


def _snapshot(record_path: str, chosen_unit_id: int | None, principal: Principal, units: list[Unit],
              applicant: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Units of each side by level, fixed at submission so routing does not change under a running application."""
    by_id = {u.id: u for u in units}
    chosen = by_id.get(chosen_unit_id) if chosen_unit_id is not None else None
    sides = {"record_unit": _levels(record_path, units), "chosen_unit": _levels(chosen.path, units) if chosen else {}}
    if applicant is not None:
        result = {side: {level: [u.id, u.path, u.name] for level, u in found.items()} for side, found in sides.items()}
        result["applicant_unit"] = dict(applicant)
        return result
    mine: dict[str, UnitInfo] = {}
    for level, paths in principal.anchors.items():
        # Several units at one level: prefer the one the record belongs to.
        best = sorted(paths, key=lambda p: (not record_path.startswith(p), p))[0]
        unit = _unit_index(units).get(ancestor_ids(best)[-1]) if ancestor_ids(best) else None
        if unit is not None:
            mine[level] = UnitInfo(unit.id, unit.path, unit.name)
    sides["applicant_unit"] = mine
    return {side: {level: [u.id, u.path, u.name] for level, u in found.items()} for side, found in sides.items()}


_ACTING = FormPolicy(actions=frozenset({"read", "update"}), reveal_sensitive=True)


def system_principal(principal: Principal, form: FormSpec) -> Principal:
    """The approver acting for the workflow: may update this form anywhere, sees everything (audit keeps their name).
    A role of a few frozen objects, made per call: nothing about it is worth keeping between calls."""
    role = RoleSpec(key="_workflow", name="审批流程", scope="all", forms=MappingProxyType({form.key: _ACTING}))
    return Principal(principal.user_id, principal.username, principal.display_name, (role,))


def _full_name(s: DbSession, unit_id: int) -> str:
    unit = s.get(OrgUnit, unit_id)
    if unit is None:
        return str(unit_id)
    names = dict(s.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(ancestor_ids(unit.path)))).all())
    return "/".join(names.get(i, "?") for i in ancestor_ids(unit.path))


def beijing(moment: dt.datetime | None) -> str:
    return (moment + dt.timedelta(hours=8)).strftime("%Y-%m-%d %H:%M") if moment else ""
