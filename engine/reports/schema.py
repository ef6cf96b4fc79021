"""JSON Schemas of report and dashboard files (`definitions/reports/*.yaml`, `definitions/dashboards/*.yaml`)."""
from __future__ import annotations

from typing import Any

from engine.metaschema import KEY, KEY_LIST, TEXT

CHARTS = ["bar", "stacked_bar", "pie", "donut", "line", "none"]
DATE_BUCKETS = ["year", "term", "month"]
NUMBER = {"type": "number"}
# A filter's value: one value (equals), {from, to} (from ≤ value < to) or {empty: true}.
FILTER_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": ["string", "integer", "boolean", "number"]},
        {"type": "object", "additionalProperties": False, "minProperties": 1,
         "properties": {"from": {"type": ["string", "number"]}, "to": {"type": ["string", "number"]}}},
        {"type": "object", "additionalProperties": False, "required": ["empty"],
         "properties": {"empty": {"const": True}}},
    ]
}
FILTERS = {"type": "object", "propertyNames": KEY, "additionalProperties": FILTER_VALUE}
BANDS = {"type": "array", "minItems": 1, "items": NUMBER}
DIMENSION: dict[str, Any] = {
    "anyOf": [
        KEY,  # a field of the form
        {"type": "object", "additionalProperties": False, "required": ["level"],
         "properties": {"level": KEY, "label": TEXT}},
        {"type": "object", "additionalProperties": False, "required": ["field"],
         "properties": {"field": KEY, "by": {"enum": DATE_BUCKETS}, "bands": BANDS, "label": TEXT}},
        {"type": "object", "additionalProperties": False, "required": ["age", "bands"],
         "properties": {"age": KEY, "bands": BANDS, "label": TEXT}},
    ]
}
MEASURE: dict[str, Any] = {
    "anyOf": [
        {"enum": ["count", "share"]},
        {"type": "object", "additionalProperties": False, "minProperties": 1,
         "properties": {"count": {"const": True}, "share": {"const": True}, "count_distinct": KEY, "sum": KEY,
                        "avg": KEY, "min": KEY, "max": KEY, "rate": KEY, "at_least": NUMBER, "label": TEXT,
                        "places": {"type": "integer", "minimum": 0, "maximum": 4}}},
    ]
}
REPORT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "title", "form"],
    "properties": {
        "key": KEY,
        "title": TEXT,
        "description": {"type": "string"},
        "form": KEY,
        "kind": {"enum": ["table", "completeness"]},
        "roles": KEY_LIST,
        "filters": FILTERS,
        "pick": KEY_LIST,
        "rows": DIMENSION,
        "columns": DIMENSION,
        "measures": {"type": "array", "minItems": 1, "items": MEASURE},
        "fields": KEY_LIST,  # completeness: the fields to count (default: every field)
        "chart": {"enum": CHARTS},
    },
}
DASHBOARD = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "title", "roles"],
    "properties": {
        "key": KEY,
        "title": TEXT,
        "roles": {"type": "array", "minItems": 1, "items": KEY},
        "cards": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["label"],
                "properties": {"label": TEXT, "form": KEY, "filters": FILTERS, "incomplete": {"type": "boolean"},
                               "tasks": {"const": True}, "help": {"type": "string"},
                               "current": {"type": "object", "additionalProperties": False, "required": ["field", "period"],
                                           "properties": {"field": KEY, "period": {"enum": ["month", "year"]}}}},
            },
        },
        "charts": {"type": "array", "maxItems": 4, "items": KEY},
    },
}
