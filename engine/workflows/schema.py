"""The JSON Schema every workflow file must satisfy before it is compiled."""
from __future__ import annotations

from typing import Any

from engine.metaschema import FIELD, FORM, KEY, KEY_LIST, TEXT

NONEMPTY_KEYS = {**KEY_LIST, "minItems": 1}

ASSIGNEE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["role", "unit"],
    "properties": {"role": KEY, "unit": {"type": "string"}, "label": TEXT, "when": {"type": "string"}},
}

STEP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "title", "assignees"],
    "properties": {
        "key": KEY,
        "title": TEXT,
        "mode": {"enum": ["all", "any"]},
        "when": {"type": "string"},
        "next": KEY,
        "assignees": {"type": "array", "minItems": 1, "items": ASSIGNEE},
        "require_comment": {"type": "boolean"},
        "require_attachment": {"type": "boolean"},
        "allow_return": {"type": "boolean"},
        "allow_self_approval": {"type": "boolean"},
    },
}

EXPRESSIONS = {"type": "object", "additionalProperties": {"type": "string"}}  # field -> expression

CHILD = {  # on_approve.create: a record of a child form, or of a form with `link` + `unit`; fields from expressions
    "type": "object",
    "additionalProperties": False,
    "required": ["form"],
    "properties": {"form": KEY, "compute": EXPRESSIONS, "link": KEY, "unit": {"type": "string"}},
}

SET = {"type": "object", "additionalProperties": {"type": ["string", "integer", "number", "boolean"]}}
HAND_OVER = {  # on_approve.hand_over: offer the record to the chosen unit; it moves there once confirmed (升学衔接)
    "type": "object",
    "additionalProperties": False,
    "required": ["to", "confirm_by"],
    "properties": {"to": {"enum": ["chosen_unit"]}, "confirm_by": KEY, "when": {"type": "string"},
                   # on_confirm.create: records made when the receiving unit confirms (as on_approve.create)
                   "on_confirm": {"type": "object", "additionalProperties": False,
                                  "properties": {"set": SET, "create": {"type": "array", "minItems": 1, "items": CHILD}}}},
}

TALLY = {  # figures: one figure over the record's child records (count: <form> | sum/avg/min/max: <form>.<field>)
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "label"],
    "properties": {"key": KEY, "label": TEXT, "count": KEY, "sum": TEXT, "avg": TEXT, "min": TEXT, "max": TEXT,
                   "where": {"type": "string"}},
}

CHECK = {  # checks: a condition the record must meet, with the reason shown when it does not
    "type": "object",
    "additionalProperties": False,
    "required": ["label", "require"],
    "properties": {"label": TEXT, "require": {"type": "string"}, "message": TEXT},
}

APPLICATION: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "fields": {"type": "array", "items": FIELD},
        "sections": FORM["properties"]["sections"],
        "rules": FORM["properties"]["rules"],
    },
}

WORKFLOW = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "title", "form", "start", "steps"],
    "properties": {
        "key": KEY,
        "title": TEXT,
        "description": {"type": "string"},
        "form": KEY,
        "start": {
            "type": "object",
            "additionalProperties": False,
            "required": ["roles"],
            "properties": {"roles": NONEMPTY_KEYS, "when": {"type": "string"}, "label": TEXT},
        },
        "allow_self_approval": {"type": "boolean"},
        "exclusive": KEY,
        "on_return": {"enum": ["resume", "restart"]},
        "summary": KEY_LIST,
        "choose_unit": {
            "type": "object",
            "additionalProperties": False,
            "required": ["label", "level"],
            "properties": {"label": TEXT, "level": KEY, "outside": KEY, "help": {"type": "string"}, "when": {"type": "string"},
                           "required": {"type": "boolean"}},
        },
        "changes": NONEMPTY_KEYS,
        "application": APPLICATION,
        "steps": {"type": "array", "minItems": 1, "items": STEP},
        "figures": {"type": "array", "minItems": 1, "items": TALLY},
        "checks": {"type": "array", "minItems": 1, "items": CHECK},
        "on_approve": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "set": {"type": "object", "additionalProperties": {"type": ["string", "integer", "number", "boolean"]}},
                "move_to": {"enum": ["chosen_unit"]},
                "compute": EXPRESSIONS,
                "create": {"type": "array", "minItems": 1, "items": CHILD},
                "hand_over": HAND_OVER,
            },
        },
    },
}
