"""Workflow screens (the package of the workflows feature): 待办, 已办, 我的申请, starting an application, the application page and its actions.

Every route declares `opt={"workflow": ...}`, read by `workflow_guard`:
  "inbox"     any signed-in user (lists and the start hub show only what concerns them)
  "start"     the workflow exists (else 404) and the user holds one of its start roles (else 403)
  "view"      the application exists and the user may see it (else 404)
  "decide"    the application exists (else 404) and the user belongs to one of its assignee groups (else 403);
              checked by the decision itself, first thing under the application's lock (one read, not two)
  "applicant" the application exists (else 404) and the user is its applicant (else 403)
  "file"      the attachment belongs to an application the user may see (else 404)

Modules: `badge` (the 待办 count cache), `guard`, `controller` (routes), `pages` (page builders), `views` (what the
pages show, from specs and applications), `record_hooks` (buttons, panels and held edits on record pages), `wiring`.
"""
from __future__ import annotations

from web.workflows.badge import InboxCounts
from web.workflows.controller import DONE_MESSAGES, WorkflowController
from web.workflows.guard import workflow_guard
from web.workflows.wiring import workflows_feature

__all__ = ["DONE_MESSAGES", "InboxCounts", "WorkflowController", "workflow_guard", "workflows_feature"]
