"""The 待办 badge's count cache and the workflow service of a request."""
from __future__ import annotations

import time
from typing import Any, Callable

from litestar.connection import ASGIConnection

from engine.permissions import Principal
from engine.workflows.routing import Actor
from engine.workflows.service import WorkflowService
from web import generations
from web.auth import app_state
from web.generations import Generation
from web.state import AppState

class InboxCounts:
    """The 待办 badge is on every page: counted at most once per TTL per user, and afresh after any workflow
    write by any worker of this server (a shared counter); another server's or command's writes show within TTL."""

    def __init__(self, ttl: float = 10.0, size: int = 4096, generation: Generation = generations.workflows) -> None:
        self.ttl, self.size = ttl, size
        self.generation = generation
        self.entries: dict[tuple[Any, ...], tuple[int, float, int]] = {}

    def get(self, key: tuple[Any, ...], compute: Callable[[], int]) -> int:
        found = self.entries.get(key)
        now, generation = time.monotonic(), self.generation.value
        if found is not None and found[0] == generation and now - found[1] < self.ttl:
            return found[2]
        if len(self.entries) >= self.size:
            self.entries.clear()
        value = compute()
        self.entries[key] = (generation, now, value)
        return value

    def changed(self) -> None:
        self.generation.bump()


counts = InboxCounts()


def per_user(state: AppState, principal: Principal, badge: str, compute: Callable[[], int]) -> int:
    """A navigation badge's count for this user as their roles and units are now, through the shared cache."""
    actor = Actor.of(principal)
    return counts.get((badge, state.db.url, principal.user_id, actor.roles, actor.paths), compute)


def inbox_count(state: AppState, principal: Principal) -> int:
    return per_user(state, principal, "inbox", lambda: WorkflowService(state.db, state.records).count_inbox(principal))


def returned_count(state: AppState, principal: Principal) -> int:
    """The 我的申请 badge: the user's applications returned to them for changes."""
    return per_user(state, principal, "returned", lambda: WorkflowService(state.db, state.records).count_returned(principal))


def service(connection: ASGIConnection) -> WorkflowService:
    state = app_state(connection)
    return WorkflowService(state.db, state.records)
