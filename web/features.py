"""The feature contract: what a feature package (Excel, workflows, certificates) contributes to the app.

Only the contract lives here; the app assembles the features (web/app.py), so a feature module imports this one
and nothing imports a feature module back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from engine.issues import Issue
from engine.permissions import Principal
from engine.records import StoredRecord
from engine.spec import FormSpec
from web.pages import NavItem
from web.state import AppState

Action = dict[str, str]  # {"href": ..., "label": ...}


@dataclass(frozen=True)
class Feature:
    name: str
    routes: tuple[Any, ...] = ()
    nav: Callable[[AppState], list[NavItem]] = lambda _state: []
    # Buttons on a form's list page and on a record's page; panels are extra sections on a record's page.
    list_actions: Callable[[FormSpec, Principal], list[Action]] = lambda _form, _principal: []
    record_actions: Callable[[FormSpec, Principal, StoredRecord], list[Action]] = lambda _f, _p, _r: []
    # -> [{"template": "x.html", ...context}], rendered inside the record page.
    record_panels: Callable[[Any, FormSpec, Principal, StoredRecord], list[dict[str, Any]]] = lambda _q, _f, _p, _r: []
    # Called by the record edit POST with what the user submitted; may take fields out of the direct save.
    hold_update: Callable[[Any, FormSpec, Principal, StoredRecord, dict[str, Any]], HeldUpdate | None] = lambda *_: None
    # Called with the Litestar app when it starts and stops (the Excel import worker thread).
    on_startup: tuple[Callable[[Any], None], ...] = ()
    on_shutdown: tuple[Callable[[Any], None], ...] = ()


@dataclass(frozen=True)
class HeldUpdate:
    """Submitted fields a feature keeps out of a direct save (protected fields become a change request)."""

    keys: frozenset[str]
    issues: tuple[Issue, ...] = ()  # problems with the held values: shown like validation issues, nothing is saved
    # Runs once the rest of the edit saved; returns a message for the flash and where to go next ("" = the record).
    commit: Callable[[], tuple[str, str]] = lambda: ("", "")
