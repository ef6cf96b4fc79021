"""信息变更: edits of a workflow's protected fields (`changes:`) are held out of a direct save and become a change request."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.issues import Issue
from engine.org import Unit
from engine.permissions import Principal, policy, writable_keys
from engine.records import StoredRecord
from engine.spec import Definitions, FormSpec
from engine.workflows.service import StartResult, WorkflowService
from engine.workflows.spec import WorkflowSpec


@dataclass(frozen=True)
class HeldChanges:
    """Protected fields an edit changed: kept out of the save, with the problems that stop a change request
    (none: `raw` is what the draft application starts from)."""

    spec: WorkflowSpec
    keys: frozenset[str]
    issues: tuple[Issue, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)


class ChangeRequests:
    """The change-request policy: which edits are held, when a request may start, and starting it as a draft."""

    def __init__(self, workflows: WorkflowService) -> None:
        self.workflows = workflows

    @staticmethod
    def workflow(definitions: Definitions, form: FormSpec) -> WorkflowSpec | None:
        """The workflow that reviews `form`'s protected fields, if any."""
        return next((w for w in definitions.workflows.values() if w.form == form.key and w.changes), None)

    def hold(self, definitions: Definitions, form: FormSpec, principal: Principal, record: StoredRecord,
             submitted: Mapping[str, Any], units: list[Unit]) -> HeldChanges | None:
        """What of an edit is held: the protected fields the user may write and changed (None: nothing)."""
        spec = self.workflow(definitions, form)
        if spec is None:
            return None
        writable = writable_keys(policy(principal, form), form)
        changed = {}
        for key in spec.changes:
            if key in writable and key in submitted:
                value, problems = form.fields[key].kind.clean(submitted[key])
                if problems or value != record.values.get(key):
                    changed[key] = submitted[key]
        if not changed:
            return None
        keys = frozenset(changed)
        if self.workflows.startable_record(None, spec, form, principal, record.id, units) is None:
            return HeldChanges(spec, keys, tuple(Issue("wf_change_forbidden", {"workflow": spec.title}, path=k) for k in changed))
        pending = self.workflows.open_application(spec, record.id)
        if pending is not None:
            return HeldChanges(spec, keys, tuple(Issue("wf_change_pending", {"id": pending}, path=k) for k in changed))
        raw = {**WorkflowService.start_values(spec, record), **changed}
        _, problems, _ = self.workflows.validate(spec, form, record, raw, None, units)
        problems = [i for i in problems if i.path.split(".")[0] in spec.changes]
        return HeldChanges(spec, keys, tuple(problems), raw)

    def submit_draft(self, definitions: Definitions, held: HeldChanges, principal: Principal, record_id: int) -> StartResult:
        """The held change as a draft application the editor completes (WorkflowError if it may not start now)."""
        return self.workflows.start(definitions, held.spec, principal, record_id, held.raw, draft=True)
