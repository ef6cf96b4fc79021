"""Why an engine service refused a request: one exception type per reason, each a catalogue code with parameters.

Services raise these; they never name an HTTP status. `kind` is the family a caller needs to answer (the web layer
maps kinds to statuses in web/errors.py, the CLI to exit codes): "not_found" (absent, or outside the principal's
scope: the same answer, so that a refusal never confirms that something exists), "forbidden", "conflict",
"invalid".
"""
from __future__ import annotations

from typing import Any, ClassVar

from engine.issues import Issue
from engine.messages import render


class Refused(Exception):
    code: ClassVar[str] = "refused"
    kind: ClassVar[str] = "forbidden"

    def __init__(self, **params: Any) -> None:
        self.params = params
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return render(Issue(self.code, self.params))


class NotFound(Refused, LookupError):
    """Absent or out of the principal's scope (the same answer)."""

    code, kind = "not_found", "not_found"


class NotPermitted(Refused):
    """The principal's roles do not grant the action."""

    code, kind = "not_permitted", "forbidden"


class UnitNotAllowed(Refused):
    """A record may not be placed in this unit by this principal (out of scope, or not of the form's level)."""

    code, kind = "unit_not_allowed", "forbidden"
