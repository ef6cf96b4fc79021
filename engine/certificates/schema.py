"""The JSON Schema every certificate file must satisfy before it is compiled."""
from __future__ import annotations

from engine.certificates.spec import PAPER_SIZES
from engine.metaschema import KEY, TEXT

ROLE_LIST = {"type": "array", "minItems": 1, "items": KEY}

CERTIFICATE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "title", "form", "holder", "number", "fields", "layout", "roles"],
    "properties": {
        "key": KEY,
        "title": TEXT,
        "description": {"type": "string"},
        "form": KEY,
        "holder": KEY,
        "issue": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"workflow": KEY, "when": {"type": "string"}, "batch": KEY},
        },
        "roles": {
            "type": "object",
            "additionalProperties": False,
            "required": ["issue", "revoke"],
            "properties": {"issue": ROLE_LIST, "revoke": ROLE_LIST},
        },
        "number": TEXT,
        "fields": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "label", "from"],
                "properties": {
                    "key": KEY,
                    "label": TEXT,
                    "from": TEXT,
                    "required": {"type": "boolean"},
                },
            },
        },
        "layout": {
            "type": "object",
            "additionalProperties": False,
            "required": ["title", "text"],
            "properties": {
                "title": TEXT,
                "text": TEXT,
                "paper": {"enum": list(PAPER_SIZES)},
                "orientation": {"enum": ["portrait", "landscape"]},
                "school": KEY,
                "photo": KEY,
                "seal": TEXT,
                "font": TEXT,
            },
        },
    },
}
