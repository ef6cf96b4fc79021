import dataclasses
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import engine.fields as fields
from engine.fields import LinkField, LinkRef, FIELD_TYPES
from engine.fields.base import FieldType
from engine.fields.text import TextField
from engine.issues import FieldError
from engine.messages import MESSAGES
from engine.spec import FieldSpec
from engine.validation.rules import RULES

REPO = Path(__file__).resolve().parents[3]
MINIMAL_PARAMS = {
    "choice": {"options": ["男", "女"]},
    "multi_choice": {"options": ["篮球", "足球"]},
    "table": {"columns": (FieldSpec("name", "姓名", TextField(), required=True),)},
    "generated": {"pattern": "G{seq:4}"},
    "link": {"form": "student"},
}
# Every code a field type raises or yields; each needs a sentence in the catalogue.
CODES = {
    "integer", "decimal", "decimal_places", "date", "time", "choice", "boolean", "email", "phone", "invalid",
    "id_card_length", "id_card_chars", "id_card_region", "id_card_birth", "id_card_check", "id_card_float",
    "file_type", "file_size", "file_empty", "file_not_importable", "choice_removed",
    "table_rows_min", "table_rows_max", "table_row", "table_not_importable", "link", "link_unresolved",
}


def build(name):
    return FIELD_TYPES[name].build(MINIMAL_PARAMS.get(name, {}), {})


def test_registry__read_only():
    with pytest.raises(TypeError):
        FIELD_TYPES["text2"] = TextField  # type: ignore[index]


def test_registry__every_type():
    assert set(FIELD_TYPES) == {
        "text", "textarea", "integer", "decimal", "date", "time", "choice", "multi_choice", "boolean", "email", "phone",
        "id_card", "file", "image", "table", "generated", "link",
    }


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_registry__keyed_by_name(name):
    assert FIELD_TYPES[name].name == name


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_declaration__complete(name):
    kind = FIELD_TYPES[name]
    assert issubclass(kind, FieldType) and kind.title and kind.widget_type.name


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


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_to_sql__python_type_of_sql_type(name):
    kind = build(name)
    value = kind.clean(kind.sample())[0]
    if kind.sql_type is None:
        assert kind.to_sql(value) is None
    else:
        assert isinstance(kind.to_sql(value), kind.sql_type().python_type)


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_to_sql__empty_is_null(name):
    assert build(name).to_sql(None) is None


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_widget__template_exists(name):
    widget = build(name).widget
    assert (REPO / "web" / "templates" / widget.template_name).is_file()


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_importable__cell_reader_accepts_sample(name):
    kind = build(name)
    if isinstance(kind, LinkField):
        # A cell names the linked record (学号, 学籍号…); the record service finds it when the row is saved.
        assert kind.from_cell("2025000001") == LinkRef("2025000001")
    elif kind.importable:
        cell = kind.to_cell(kind.clean(kind.sample())[0])
        assert kind.clean(kind.from_cell(cell)) == kind.clean(kind.sample())
    else:
        with pytest.raises(FieldError):
            kind.from_cell("x")


@pytest.mark.parametrize("name", [n for n, kind in FIELD_TYPES.items() if {"min", "max"} & kind.constraints])
def test_parse_limit__sample_is_a_limit(name):
    kind = build(name)
    limit = kind.parse_limit("min", kind.to_text(kind.sample()))
    assert (limit.value(), limit.shown) == (kind.clean(kind.sample())[0], kind.to_text(kind.sample()))


@pytest.mark.parametrize("name", [n for n, kind in FIELD_TYPES.items() if {"min", "max"} & kind.constraints])
def test_parse_limit__nonsense_refused(name):
    with pytest.raises(ValueError, match="“max”"):
        build(name).parse_limit("max", "很多")


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_cell_reader__from_cell_or_none_when_cells_pass_as_they_are(name):
    kind = build(name)
    reader = kind.cell_reader()
    assert reader == kind.from_cell if type(kind).from_cell is not FieldType.from_cell else reader is None
