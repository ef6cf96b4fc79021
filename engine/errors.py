"""Definition problems located at `path:line:column`, reported all at once."""
from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Iterable

from engine.spec import Origin


@dataclass(frozen=True)
class DefinitionError:
    origin: Origin | None
    message: str
    hint: str = ""
    # The file could not be read at all (YAML syntax, encoding): what it defines is unknown, so the loader
    # reports such errors alone instead of every reference to that file's contents as unknown.
    syntax: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        where = f"{self.origin}: " if self.origin else ""
        hint = f"（提示：{self.hint}）" if self.hint else ""
        return f"{where}{self.message}{hint}"


class DefinitionErrors(Exception):
    """Raised when a definitions directory does not compile; carries every error found."""

    def __init__(self, errors: Iterable[DefinitionError]) -> None:
        self.errors = sorted(
            errors,
            key=lambda e: (e.origin.path, e.origin.line, e.origin.column) if e.origin else ("", 0, 0),
        )
        super().__init__("\n".join(str(e) for e in self.errors))


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A Levenshtein-style hint, as pyxform's find_sheet_misspellings gives."""
    matches = get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f"是不是“{matches[0]}”？" if matches else ""
