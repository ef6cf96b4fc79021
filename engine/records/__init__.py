"""Records of any form: read, listed, and saved through one service and one write path."""
from engine.records.model import (
    Conflict, ListQuery, Page, PreparedUpdate, RecordWrite, SaveResult, StoredRecord,
)
from engine.records.service import RecordService
from engine.records.writer import RecordWriter, Stale, store_attachment

__all__ = [
    "Conflict", "ListQuery", "Page", "PreparedUpdate", "RecordService", "RecordWrite", "RecordWriter", "SaveResult",
    "Stale", "StoredRecord", "store_attachment",
]
