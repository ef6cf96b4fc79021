"""Validation problems as data: a code, its parameters and where they belong."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping


@dataclass(frozen=True)
class Issue:
    """One problem with one value.

    `path` is the field key, or `table.2.col` for a cell of a table field; the runner fills it in,
    rules never format a location themselves.
    """

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    def at(self, path: str) -> "Issue":
        return replace(self, path=path if not self.path else f"{path}.{self.path}")


class FieldError(ValueError):
    """Raised by `FieldType.to_python` when a raw value cannot be converted at all."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.issue = Issue(code, params)
