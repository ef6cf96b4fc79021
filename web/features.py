"""Feature packages composed into the app; each contributes routes, navigation and page hooks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

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


def enabled_features() -> list[Feature]:
    """The features this build ships, in navigation order."""
    return []
