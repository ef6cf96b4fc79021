"""Why a workflow action was refused: one type per reason, each a catalogue code with its parameters."""
from __future__ import annotations

from typing import Any

from engine.issues import Issue
from engine.messages import render


class WorkflowError(Exception):
    """A refusal shown to the user as it is; `status` is the HTTP status the web layer answers with."""

    code = ""
    status = 409

    def __init__(self, **params: Any) -> None:
        self.params = params
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return render(Issue(self.code, self.params))


class ApplicationNotFound(LookupError):
    """No application with this id (a 404, not a refusal with a message)."""


class NotInProgress(WorkflowError):
    code = "wf_not_in_progress"


class TaskClosed(WorkflowError):
    """Someone else decided this step (or this group's part of it) first."""

    code = "wf_task_closed"


class NotAssignee(WorkflowError):
    code, status = "wf_not_assignee", 403


class NoAssigneeGroup(NotAssignee):
    """The user holds none of the application's assignee groups: refused before anything of it is shown."""


class SelfApprovalForbidden(WorkflowError):
    code, status = "wf_self_approval", 403


class NotApplicant(WorkflowError):
    code, status = "wf_not_applicant", 403


class StartNotAllowed(WorkflowError):
    code, status = "wf_start_not_allowed", 403


class CommentRequired(WorkflowError):
    code, status = "wf_comment_required", 422


class CommentTooLong(WorkflowError):
    code, status = "wf_comment_too_long", 422


class AttachmentRequired(WorkflowError):
    code, status = "wf_attachment_required", 422


class ActionNotAllowed(WorkflowError):
    code, status = "wf_action_not_allowed", 422


class WithdrawNotAllowed(WorkflowError):
    code = "wf_withdraw_not_allowed"


class ScopeUnresolved(WorkflowError):
    code, status = "wf_scope_unresolved", 422


class AlreadyOpen(WorkflowError):
    code = "wf_already_open"


class EffectFailed(WorkflowError):
    """Final approval could not change the record (e.g. a duplicate ID number); nothing was saved."""

    code = "wf_effect_failed"


class RecordMissing(WorkflowError):
    code = "wf_record_missing"


class VersionBroken(WorkflowError):
    code = "wf_version_broken"


class Stale(WorkflowError):
    """The application changed between reading and writing (a safety net behind the row lock)."""

    code = "wf_stale"


class AttachmentInvalid(WorkflowError):
    code, status = "wf_attachment_invalid", 422


class ExclusiveOpen(WorkflowError):
    """Another workflow of the same exclusive group is in flight on the record (a 休学 while a 退学 is pending)."""

    code = "wf_exclusive_open"


class StartConditionLost(WorkflowError):
    """An exclusive workflow's approval found the record no longer meets its start condition."""

    code = "wf_start_condition_lost"


class ChecksFailed(WorkflowError):
    """The record does not meet the workflow's checks (审核条件): every failing reason, numbered."""

    code = "wf_checks_failed"

    def __init__(self, workflow: str, reasons: list[str]) -> None:
        self.reasons = reasons
        numbered = "；".join(f"{i}. {r}" for i, r in enumerate(reasons, 1))
        super().__init__(workflow=workflow, reasons=numbered)
