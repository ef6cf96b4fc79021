import datetime

import pytest

from engine.fields.choice import ChoiceField
from engine.fields.dates import DateField
from engine.fields.table import TableField
from engine.fields.text import TextField
from engine.issues import FieldError
from engine.spec import FieldSpec

NAME = FieldSpec("name", "姓名", TextField(), required=True)
RELATION = FieldSpec("relation", "关系", ChoiceField.build({"options": ["父亲", "母亲", "其他"]}))
BIRTH = FieldSpec("birth", "出生日期", DateField())


@pytest.fixture
def family():
    return TableField.build({"columns": (NAME, RELATION, BIRTH), "max_rows": 3})


def codes(issues):
    return [(i.code, i.path, dict(i.params)) for i in issues]


def test_clean__list_of_rows(family):
    value, issues = family.clean([{"name": " 张大山 ", "relation": "父亲", "birth": "1980/1/2"}])
    assert (value, issues) == ([{"name": "张大山", "relation": "父亲", "birth": datetime.date(1980, 1, 2)}], [])


def test_clean__form_dict_in_numeric_order(family):
    value, _ = family.clean({"10": {"name": "丙"}, "2": {"name": "乙"}, "0": {"name": "甲"}})
    assert [row["name"] for row in value] == ["甲", "乙", "丙"]


def test_clean__blank_rows_dropped(family):
    value, _ = family.clean([{"name": "", "relation": " "}, {"name": "张大山"}, {}])
    assert [row["name"] for row in value] == ["张大山"]


def test_clean__all_blank_is_empty(family):
    assert family.clean([{"name": ""}, {"birth": None}]) == (None, [])


def test_clean__cell_issue_path(family):
    _, issues = family.clean([{"name": "甲"}, {"name": "乙", "birth": "2010-02-30"}])
    assert codes(issues) == [("date", "1.birth", {})]


def test_clean__required_cell_path_uses_form_key(family):
    _, issues = family.clean({"0": {"name": "甲"}, "3": {"relation": "母亲"}})
    assert codes(issues) == [("required", "3.name", {})]


def test_clean__unknown_choice_in_cell(family):
    _, issues = family.clean([{"name": "甲", "relation": "舅舅"}])
    assert codes(issues) == [("choice", "0.relation", {"value": "舅舅"})]


def test_rows__max_error(family):
    _, issues = family.clean([{"name": str(i)} for i in range(4)])
    assert codes(issues) == [("table_rows_max", "", {"limit": 3})]


def test_rows__min_error():
    table = TableField.build({"columns": (NAME,), "min_rows": 2})
    assert codes(table.clean([{"name": "甲"}])[1]) == [("table_rows_min", "", {"limit": 2})]


@pytest.mark.parametrize("raw", ["张大山", {"a": {"name": "甲"}}, ["张大山"], 3])
def test_clean__wrong_shape(family, raw):
    assert codes(family.clean(raw)[1]) == [("table_row", "", {})]


def test_json__round_trip(family):
    value = [{"name": "甲", "relation": None, "birth": datetime.date(1980, 1, 2)}]
    stored = family.to_json(value)
    assert (stored[0]["birth"], family.from_json(stored)) == ("1980-01-02", value)


def test_to_text__row_count(family):
    assert family.to_text([{"name": "甲"}, {"name": "乙"}]) == "2行"


def test_from_cell__not_importable(family):
    with pytest.raises(FieldError) as caught:
        family.from_cell("2行")
    assert caught.value.issue.code == "table_not_importable"


def test_sample__valid(family):
    assert family.clean(family.sample())[1] == []


def test_widget_context(family):
    assert family.widget_context() == {"columns": (NAME, RELATION, BIRTH), "min_rows": None, "max_rows": 3}


def test_build__min_above_max():
    with pytest.raises(ValueError):
        TableField.build({"columns": (NAME,), "min_rows": 3, "max_rows": 2})


def test_build__duplicate_column_keys():
    with pytest.raises(ValueError):
        TableField.build({"columns": (NAME, NAME)})


def test_build__no_columns():
    with pytest.raises(ValueError):
        TableField.build({"columns": ()})
