"""One page of rows of a list (the workflow lists, the 升学衔接 lists): shared by the services that page plain rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PER_PAGE = 20


@dataclass
class Listing:
    rows: list[dict[str, Any]]
    total: int
    page: int
    per_page: int = PER_PAGE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))
