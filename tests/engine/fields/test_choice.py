import jsonschema
import pytest

from engine.fields import Option
from engine.fields.choice import ChoiceField

GENDER = {"options": [{"value": "M", "label": "男"}, {"value": "F", "label": "女"}]}
SHARED = {"nation": (Option("01", "汉族"), Option("02", "蒙古族"))}


@pytest.fixture
def gender():
    return ChoiceField.build(GENDER)


def test_build__string_items():
    assert ChoiceField.build({"options": ["是", "否"]}).options == (Option("是", "是"), Option("否", "否"))


def test_build__value_without_label():
    assert ChoiceField.build({"options": [{"value": 1}]}).options == (Option("1", "1"),)


def test_build__shared_list():
    assert ChoiceField.build({"options": "nation"}, SHARED).options == SHARED["nation"]


def test_build__unknown_shared_list():
    with pytest.raises(ValueError, match="nation_x"):
        ChoiceField.build({"options": "nation_x"}, SHARED)


def test_build__duplicate_values():
    with pytest.raises(ValueError):
        ChoiceField.build({"options": ["是", "是"]})


def test_build__no_options():
    with pytest.raises(ValueError):
        ChoiceField.build({})


@pytest.mark.parametrize("options", [["男", "女"], [{"value": "M", "label": "男"}], "nation"])
def test_params_schema__ok(options):
    schema = {"type": "object", "properties": ChoiceField.params_schema, "additionalProperties": False}
    jsonschema.validate({"options": options}, schema)


@pytest.mark.parametrize("options", [[], [{"label": "男"}], [{"value": "M", "colour": "red"}], 3])
def test_params_schema__error(options):
    schema = {"type": "object", "properties": ChoiceField.params_schema, "additionalProperties": False}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"options": options}, schema)


def test_to_python__value(gender):
    assert gender.to_python("M") == "M"


def test_to_python__label(gender):
    assert gender.to_python("女") == "F"


def test_to_python__spaces_fullwidth_and_case(gender):
    assert gender.to_python("\u3000ｍ ") == "M"


def test_to_python__value_wins_over_other_label():
    choice = ChoiceField.build({"options": [{"value": "A", "label": "B"}, {"value": "B", "label": "C"}]})
    assert choice.to_python("B") == "B"


def test_to_python__error(gender):
    _, issues = gender.clean(" 未知 ")
    assert [(i.code, dict(i.params)) for i in issues] == [("choice", {"value": "未知"})]


def test_from_cell__number_code():
    choice = ChoiceField.build({"options": "nation"}, {"nation": (Option("1", "汉族"),)})
    assert choice.to_python(choice.from_cell(1.0)) == "1"


def test_to_text__label(gender):
    assert gender.to_text("F") == "女"


def test_to_text__unknown_stored_value(gender):
    assert gender.to_text("X") == "X"


def test_to_cell__label_reimports(gender):
    assert gender.to_python(gender.to_cell("F")) == "F"


def test_widget_context(gender):
    assert gender.widget_context() == {"options": [("M", "男"), ("F", "女")]}


def test_format_hint__short_list_names_every_label(gender):
    assert "男" in gender.format_hint() and "女" in gender.format_hint()


def test_format_hint__long_list_truncated():
    choice = ChoiceField.build({"options": [f"选项{i}" for i in range(12)]})
    assert ("选项9" in choice.format_hint(), "选项10" in choice.format_hint(), "等12项" in choice.format_hint()) == (
        True, False, True,
    )


def test_options__long_list_kept_whole():
    assert len(ChoiceField.build({"options": [str(i) for i in range(60)]}).options) == 60


def test_sample__first_value(gender):
    assert gender.sample() == "M"


def test_declaration(gender):
    assert (gender.widget.name, gender.excel_format, gender.constraints) == ("select", "@", frozenset())


def test_option_aliases__read_as_their_option():
    kind = ChoiceField.build({"options": [{"value": "统一招生", "aliases": ["统招"]}, "借读"]})
    assert kind.clean("统招") == ("统一招生", [])
    assert kind.clean(" 统招 ")[0] == "统一招生"


def test_option_alias__claimed_by_two_options__refused():
    with pytest.raises(ValueError, match="别名“一般”同时属于选项"):
        ChoiceField.build({"options": [{"value": "较好", "aliases": ["一般"]}, {"value": "较弱", "aliases": ["一般"]}]})


def test_option_alias__never_wins_over_another_options_label():
    kind = ChoiceField.build({"options": [{"value": "A", "label": "甲", "aliases": ["乙"]}, {"value": "B", "label": "乙"}]})
    assert kind.clean("乙")[0] == "B"
