"""engine/storage/jsontext.py writes the same text as json.dumps (what SQLAlchemy's JSON type stores on SQLite)."""
from __future__ import annotations

import json
import math

import pytest

from engine.storage.jsontext import dumps

VALUES = [
    {"name": "张三", "gender": "男", "born": "2008-05-12", "note": None, "only": True, "year": 2023, "score": 91.5},
    {"quote": "a\"b\\c\n\t\u0000\u001f", "nbsp": "\u00a0x\u3000", "emoji": "\U0001f600", "rtl": "\u202e"},
    {"rows": [{"k": [1, 2.0, -0.0, 1e100, 1.5e-7]}, [], {}], "big": 2**70, "neg": -12, "f": False},
    {1: "int key", 2.5: "float key", True: "bool key", None: "none key"},
    {"nan": math.nan, "inf": math.inf, "-inf": -math.inf},
    [None, [None, "值"], {"a": [None, 1]}],
    {},
    [],
    "纯文本",
    17,
    None,
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_same_text_as_json_dumps(value: object) -> None:
    assert dumps(value) == json.dumps(value)


def test_refuses_what_json_dumps_refuses() -> None:
    with pytest.raises(TypeError):
        dumps({"when": object()})
    with pytest.raises(TypeError):
        json.dumps({"when": object()})
