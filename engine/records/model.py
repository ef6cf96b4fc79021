"""What the record service reads and writes: stored records, save results, list queries, pending writes."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.issues import Issue
from engine.permissions import Principal
from engine.spec import FormSpec
from engine.storage.models import AuditEntry
from engine.validation import CleanResult

PER_PAGE = 20


@dataclass
class StoredRecord:
    id: int
    form_key: str
    unit_id: int
    unit_path: str
    unit_name: str
    data: dict[str, Any]
    values: dict[str, Any]
    revision: int
    created_by: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    def_version: str
    figures: dict[str, Any] = field(default_factory=dict)  # figures across records, when asked for

    def shown(self, key: str) -> Any:
        """A field's value or a figure's, by key (what a list column or a record line shows)."""
        return self.values[key] if key in self.values else self.figures.get(key)


@dataclass
class Conflict:
    """What others saved since the revision the user started editing from."""

    entries: list[AuditEntry]
    current_revision: int


@dataclass
class SaveResult:
    record_id: int | None = None
    cleaned: CleanResult | None = None
    issues: list[Issue] = field(default_factory=list)
    conflict: Conflict | None = None

    @property
    def ok(self) -> bool:
        return self.record_id is not None and not self.issues and self.conflict is None


@dataclass(eq=False)
class RecordWrite:
    """One record on its way to storage: validated values, where it goes, and (filled by the writer) what became
    of it. A new record has no `current`; an update names the record as read (`current`) and the revision the
    user started from (`base_revision`), and moves only when `unit_id` differs from the record's unit."""

    form: FormSpec
    cleaned: CleanResult
    unit_id: int | None = None
    current: StoredRecord | None = None
    base_revision: int = 0
    note: str = ""
    submitted: Mapping[str, Any] = field(default_factory=dict)  # what the user gave (the fields they write)
    # Filled by the writer.
    values: dict[str, Any] = field(default_factory=dict)
    uploads: dict[str, Any] = field(default_factory=dict)  # new files among `values`, stored as attachments
    record_id: int | None = None
    document: dict[str, Any] | None = None
    changes: dict[str, Any] | None = None
    issues: list[Issue] = field(default_factory=list)
    conflict: bool = False

    def __post_init__(self) -> None:
        if not self.values:
            self.values = dict(self.cleaned.values)
        if self.current is not None:
            self.record_id = self.current.id

    def reset(self) -> None:
        """Back to what it was before a write the database refused and rolled back: the numbers drawn, ids and
        attachments of that attempt are gone with it."""
        self.values = dict(self.cleaned.values)
        self.uploads, self.document, self.changes = {}, None, None
        self.record_id = None if self.current is None else self.current.id
        self.issues.clear()
        self.conflict = False

    @property
    def is_new(self) -> bool:
        return self.current is None

    @property
    def moves(self) -> bool:
        return self.current is not None and self.unit_id is not None and self.unit_id != self.current.unit_id

    @property
    def failed(self) -> bool:
        return bool(self.issues) or self.conflict


@dataclass(frozen=True)
class PreparedUpdate:
    """An update validated and built from the record at `base_revision`, for RecordService.write_update."""

    principal: Principal
    write: RecordWrite

    @property
    def form(self) -> FormSpec:
        return self.write.form

    @property
    def record_id(self) -> int:
        assert self.write.record_id is not None
        return self.write.record_id


@dataclass
class Page:
    records: list[StoredRecord]
    total: int
    page: int
    per_page: int
    capped: bool = False  # more than `total` records match; the exact number was not counted

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages or (self.capped and len(self.records) == self.per_page)


@dataclass(frozen=True)
class ListQuery:
    """What a list asks for. Filters, ranges and emptiness may name any field; the service ignores those the
    principal may not probe (hidden or masked fields)."""

    filters: Mapping[str, Any] = field(default_factory=dict)  # field -> value (text as typed, or a Python value)
    search: str = ""
    sort: str = ""  # field key or "-key"; "" = form default, then newest first
    page: int = 1
    per_page: int = PER_PAGE
    incomplete: bool = False
    # Count at most this many matches (0 = exact): counting every JSON document of a large school
    # costs more than the page itself, and "1000+ 条" tells a person as much.
    count_limit: int = 0
    unit: int | None = None  # only records in this org unit's subtree (within the principal's scope)
    ranges: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (from, to): from <= value < to
    empty: frozenset[str] = frozenset()  # fields that must be empty

    @classmethod
    def parse(cls, form: FormSpec, params: Mapping[str, str], **fixed: Any) -> ListQuery:
        """A list's query string as a query: `<field>=v`, `<field>__ge=`/`<field>__lt=` (a range, as a report's
        band or month links to it), `<field>__empty=1`, `unit=<id>`, `q`, `sort`, `page`, `incomplete=1`."""
        filters: dict[str, Any] = {}
        ranges: dict[str, list[Any]] = {}
        empty = set()
        for name, value in params.items():
            key, _, op = name.partition("__")
            if key not in form.fields or value in (None, ""):
                continue
            if not op:
                filters[key] = value
            elif op in ("ge", "lt"):
                ranges.setdefault(key, [None, None])[0 if op == "ge" else 1] = value
            elif op == "empty" and value == "1":
                empty.add(key)
        page_text, unit_text = params.get("page") or "1", params.get("unit") or ""
        values: dict[str, Any] = {
            "filters": filters, "ranges": {k: (v[0], v[1]) for k, v in ranges.items()}, "empty": frozenset(empty),
            "search": params.get("q") or "", "sort": params.get("sort") or "",
            "page": _small_int(page_text) or 1,
            "incomplete": params.get("incomplete") == "1",
            "unit": _small_int(unit_text),
        }
        values.update(fixed)
        return cls(**values)


def _small_int(text: str) -> int | None:
    """A positive number written in ASCII digits (not "²", which str.isdigit accepts), short enough for any id."""
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) < 10 and int(text) > 0 else None
