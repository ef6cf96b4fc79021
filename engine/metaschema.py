"""JSON Schemas that every definition file must satisfy before it is compiled."""
from __future__ import annotations

from typing import Any, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from engine.errors import DefinitionError, did_you_mean
from engine.spec import Origin
from engine.yaml_source import origin_of

KEY = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}
KEY_LIST = {"type": "array", "items": KEY}
TEXT = {"type": "string", "minLength": 1}
ACTIONS = ["create", "read", "update", "delete", "export", "import"]

# Keys every field may carry, whatever its type; type-specific keys come from the type's params_schema.
FIELD_COMMON: dict[str, Any] = {
    "key": KEY,
    "label": TEXT,
    "type": {"type": "string"},
    "required": {"type": "boolean"},
    "help": {"type": "string"},
    "placeholder": {"type": "string"},
    "default": {},
    "readonly": {"type": "boolean"},
    "unique": {"type": "boolean"},
    "sensitive": {"type": "boolean"},
    "visible_if": {"type": "string"},
    "required_if": {"type": "string"},
    "compute": {"type": "string"},
    "renamed_from": {"anyOf": [KEY, KEY_LIST]},
    "aliases": {"type": "array", "items": {"type": "string", "minLength": 1}},
    "messages": {"type": "object", "additionalProperties": {"type": "string"}},
    "min_length": {"type": "integer", "minimum": 0},
    "max_length": {"type": "integer", "minimum": 1},
    "pattern": {"type": "string"},
    "min": {"type": ["number", "string"]},
    "max": {"type": ["number", "string"]},
}
FIELD = {"type": "object", "required": ["key", "label", "type"], "properties": FIELD_COMMON}

FORM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "title", "sections"],
    "properties": {
        "key": KEY,
        "title": TEXT,
        "description": {"type": "string"},
        "unit": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"level": KEY, "label": TEXT},
        },
        "title_field": KEY,
        "belongs_to": KEY,
        "natural_key": KEY_LIST,
        "grid": {
            "type": "object",
            "additionalProperties": False,
            "required": ["rows", "columns"],
            "properties": {"rows": KEY, "fixed": KEY_LIST, "columns": KEY_LIST},
        },
        "figures": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "label"],
                "properties": {
                    "key": KEY, "label": TEXT,
                    "rank": KEY, "avg": KEY, "sum": KEY, "min": KEY, "max": KEY, "count": KEY, "pass_rate": KEY,
                    "within": KEY_LIST,
                    "order": {"enum": ["desc", "asc"]},
                    "places": {"type": "integer", "minimum": 0, "maximum": 4},
                    "at_least": {"type": "number"},
                },
            },
        },
        # A record's printout (PDF): its title, and the fields of the record it belongs to printed above its own.
        "print": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"title": TEXT, "parent_fields": KEY_LIST},
        },
        "list": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "columns": KEY_LIST,
                "filters": KEY_LIST,
                "search": KEY_LIST,
                "sort": {"type": "string", "pattern": "^-?[a-z][a-z0-9_]*$"},
            },
        },
        "sections": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "title", "fields"],
                "properties": {"key": KEY, "title": TEXT, "fields": {"type": "array", "items": FIELD}},
            },
        },
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "check", "message"],
                "properties": {
                    "key": KEY,
                    "check": {"type": "string"},
                    "when": {"type": "string"},
                    "message": TEXT,
                    "fields": KEY_LIST,
                },
            },
        },
    },
}

OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "options"],
    "properties": {
        "key": KEY,
        "label": TEXT,
        "options": {
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    {"type": ["string", "integer"]},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["value"],
                        "properties": {"value": {"type": ["string", "integer"]}, "label": TEXT,
                                       "aliases": {"type": "array", "items": {"type": "string", "minLength": 1}}},
                    },
                ]
            },
        },
    },
}

POLICY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["actions"],
    "properties": {
        "actions": {"type": "array", "items": {"enum": ACTIONS}},
        "readonly": KEY_LIST,
        "hidden": KEY_LIST,
        "masked": KEY_LIST,
        "reveal_sensitive": {"type": "boolean"},
        "scope": KEY,
    },
}

ROLE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "name", "scope"],
    "properties": {
        "key": KEY,
        "name": TEXT,
        "description": {"type": "string"},
        "scope": KEY,
        "admin": {"type": "boolean"},
        "require_2fa": {"type": "boolean"},
        "issue_reset_codes": {"type": "boolean"},
        "forms": {"type": "object", "additionalProperties": POLICY},
    },
}

UNIT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "level"],
    "properties": {"name": TEXT, "level": KEY, "children": {"type": "array", "items": {"$ref": "#/$defs/unit"}},
                   # Old names (under the same parent) or old full paths: `dangan org-apply` renames or moves that unit.
                   "renamed_from": {"oneOf": [TEXT, {"type": "array", "items": TEXT}]}},
}
ORG = {
    "$defs": {"unit": UNIT},
    "type": "object",
    "additionalProperties": False,
    "required": ["levels"],
    "properties": {
        "levels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "label"],
                "properties": {"key": KEY, "label": TEXT, "number": TEXT},
            },
        },
        "demo_units": {"type": "array", "items": {"$ref": "#/$defs/unit"}},
    },
}

_TYPE_NAMES = {"string": "文本", "integer": "整数", "number": "数字", "boolean": "true/false", "array": "列表", "object": "键值映射（key: value）"}


def check_shape(data: Any, schema: dict, path: str) -> list[DefinitionError]:
    """Every schema violation in one file, located and translated."""
    validator = Draft202012Validator(schema)
    fallback = getattr(data, "origin", Origin(path, 1, 1))
    return [_translate(err, data, fallback) for err in _leaves(validator.iter_errors(data))]


def _leaves(errors: Any) -> Iterator[ValidationError]:
    for err in errors:
        if err.validator in ("anyOf", "oneOf") and err.context:
            # Report the alternative that got furthest rather than "is not valid under any".
            deepest = max(err.context, key=lambda e: len(e.absolute_path))
            yield deepest if len(deepest.absolute_path) > len(err.absolute_path) else err
        else:
            yield err


def _translate(err: ValidationError, data: Any, fallback: Origin) -> DefinitionError:
    where = tuple(err.absolute_path)
    origin = origin_of(data, where, fallback)
    name = str(where[-1]) if where else "文件"
    kind, value = err.validator, err.validator_value
    if kind == "additionalProperties":
        extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
        allowed = list(err.schema.get("properties", {}))
        origin = origin_of(data, (*where, extra[0]), fallback, name=True) if extra else origin
        return DefinitionError(origin, f"不认识的键“{extra[0] if extra else '?'}”", did_you_mean(extra[0], allowed) or f"可用的键：{'、'.join(allowed)}")
    if kind == "required":
        missing = err.message.split("'")[1] if "'" in err.message else "?"
        return DefinitionError(origin, f"缺少必填的键“{missing}”")
    if kind == "type":
        types = value if isinstance(value, list) else [value]
        return DefinitionError(origin, f"“{name}”应为{'或'.join(_TYPE_NAMES.get(t, t) for t in types)}")
    if kind == "pattern" and value == KEY["pattern"]:
        return DefinitionError(origin, f"“{err.instance}”不是合法的标识符", "只用小写英文字母、数字和下划线，并以字母开头，例如 birth_date")
    if kind == "enum":
        return DefinitionError(origin, f"取值“{err.instance}”无效", did_you_mean(err.instance, map(str, value)) or f"可选：{'、'.join(map(str, value))}")
    if kind in ("minItems", "minLength"):
        return DefinitionError(origin, f"“{name}”不能为空")
    if kind in ("minimum", "maximum"):
        return DefinitionError(origin, f"“{name}”的值 {err.instance} 超出范围")
    return DefinitionError(origin, f"“{name}”不符合要求：{err.message}")
