import dataclasses

import pytest
from jsonschema import Draft202012Validator

import engine.fields as fields
from engine.fields import FIELD_TYPES
from engine.fields.base import FieldType
from engine.fields.text import TextField
from engine.messages import MESSAGES
from engine.spec import FieldSpec
from engine.validation.rules import RULES

MINIMAL_PARAMS = {
    "choice": {"options": ["男", "女"]},
    "multi_choice": {"options": ["篮球", "足球"]},
    "table": {"columns": (FieldSpec("name", "姓名", TextField(), required=True),)},
    "generated": {"pattern": "G{seq:4}"},
}
# Every code a field type raises or yields; each needs a sentence in the catalogue.
CODES = {
    "integer", "decimal", "decimal_places", "date", "choice", "boolean", "email", "phone", "invalid",
    "id_card_length", "id_card_chars", "id_card_region", "id_card_birth", "id_card_check", "id_card_float",
    "file_type", "file_size", "file_empty", "file_not_importable",
    "table_rows_min", "table_rows_max", "table_row", "table_not_importable",
}


def build(name):
    return FIELD_TYPES[name].build(MINIMAL_PARAMS.get(name, {}), {})


def test_registry__read_only():
    with pytest.raises(TypeError):
        FIELD_TYPES["text2"] = TextField  # type: ignore[index]


def test_registry__every_type():
    assert set(FIELD_TYPES) == {
        "text", "textarea", "integer", "decimal", "date", "choice", "multi_choice", "boolean", "email", "phone",
        "id_card", "file", "image", "table", "generated",
    }


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_registry__keyed_by_name(name):
    assert FIELD_TYPES[name].name == name


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_declaration__complete(name):
    kind = FIELD_TYPES[name]
    assert issubclass(kind, FieldType) and kind.title and kind.widget


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_constraints__known_rules(name):
    assert FIELD_TYPES[name].constraints <= set(RULES)


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_params_schema__valid_json_schema(name):
    Draft202012Validator.check_schema({"type": "object", "properties": dict(FIELD_TYPES[name].params_schema)})


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_params_schema__lists_every_parameter(name):
    kind = FIELD_TYPES[name]
    init_fields = {f.name for f in dataclasses.fields(kind) if f.init}
    assert init_fields == set(kind.params_schema)


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_sample__valid(name):
    kind = build(name)
    assert kind.clean(kind.sample())[1] == []


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_sample__json_round_trip(name):
    kind = build(name)
    value = kind.clean(kind.sample())[0]
    assert kind.from_json(kind.to_json(value)) == value


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_empty__none_without_issues(name):
    assert build(name).clean("") == (None, [])


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_format_hint__text(name):
    assert build(name).format_hint()


def test_messages__every_code_has_a_sentence():
    assert CODES - set(MESSAGES) == set()


def test_exports():
    assert {"Option", "UploadedFile", "id_card_birth", "id_card_gender"} <= set(fields.__all__)
