"""Widgets read their own part of a post and format their own value (Django's value_from_datadict / format_value)."""
import datetime

import pytest

from engine.fields import FIELD_TYPES, UploadedFile
from engine.fields.choice import RemovedOption
from engine.fields.table import MAX_TABLE_ROWS
from engine.fields.text import TextField
from engine.fields.widgets import PostedData
from engine.spec import FieldSpec


def posted(**values):
    return PostedData({name.replace("__", "."): tuple(v) if isinstance(v, list) else (v,) for name, v in values.items()})


def kind(name, **params):
    return FIELD_TYPES[name].build(params, {})


def test_text__first_value():
    assert kind("text").widget.value_from_datadict(PostedData({"a": ("x", "y")}), {}, "a") == "x"


def test_text__absent_is_none_not_omitted():
    widget = kind("text").widget
    assert (widget.value_from_datadict(posted(), {}, "a"), widget.value_omitted_from_data(posted(), {}, "a")) == (None, False)


def test_checkboxes__every_ticked_value():
    widget = kind("multi_choice", options=["篮球", "足球"]).widget
    assert widget.value_from_datadict(PostedData({"a": ("篮球", " ", "足球")}), {}, "a") == ["篮球", "足球"]


def test_checkboxes__none_ticked_is_empty_list():
    assert kind("multi_choice", options=["篮球"]).widget.value_from_datadict(posted(), {}, "a") == []


def test_file__upload_read_from_files():
    upload = UploadedFile("a.pdf", "application/pdf", b"%PDF")
    assert kind("file").widget.value_from_datadict(posted(), {"a": upload}, "a") is upload


def test_file__nothing_chosen_keeps_stored():
    assert kind("file").widget.value_omitted_from_data(posted(a=""), {}, "a") is True


def test_generated__never_read():
    widget = kind("generated", pattern="G{seq:3}").widget
    assert widget.value_omitted_from_data(posted(a="G001"), {}, "a") is True


def test_table__rows_by_index_each_cell_its_column_widget():
    table = kind("table", columns=(FieldSpec("who", "姓名", TextField()),
                                   FieldSpec("sports", "运动", kind("multi_choice", options=["篮球", "足球"]))))
    data = posted(family__3__who="乙", family__0__who="甲", family__0__sports=["篮球", "足球"], other="x")
    assert table.widget.value_from_datadict(data, {}, "family") == [
        {"who": "甲", "sports": ["篮球", "足球"]}, {"who": "乙", "sports": []},
    ]


def test_table__rows_beyond_the_cap_dropped():
    table = kind("table", columns=(FieldSpec("who", "姓名", TextField()),))
    data = PostedData({f"t.{MAX_TABLE_ROWS}.who": ("多",), "t.1.who": ("一",)})
    assert table.widget.value_from_datadict(data, {}, "t") == [{"who": "一"}]


@pytest.mark.parametrize(("posted_name", "claimed"), [("t.0.who", True), ("t.x", False), ("t", True), ("tt.0.who", False)])
def test_table__claims_its_cells(posted_name, claimed):
    table = kind("table", columns=(FieldSpec("who", "姓名", TextField()),))
    assert table.widget.claims("t", posted_name) is claimed


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("date", datetime.date(2010, 3, 5), "2010-03-05"),
    ("decimal", __import__("decimal").Decimal("12.50"), "12.50"),
    ("boolean", True, "是"),
    ("integer", None, ""),
])
def test_format_value(name, value, shown):
    assert kind(name).widget.format_value(value) == shown


def test_select__format_value_is_the_code():
    assert kind("choice", options=[{"value": "01", "label": "汉族"}]).widget.format_value("01") == "01"


def test_select__removed_value_offered_and_marked():
    widget = kind("choice", options=["甲", "乙"]).widget
    context = widget.get_context(RemovedOption("丙"))
    assert (context["selected"], context["extra"]["removed"]) == ({"丙"}, [("丙", "丙（已不在选项中）")])


def test_select__removed_value_posted_back_stays_marked():
    value = kind("choice", options=["甲"]).widget.value_from_datadict(PostedData({"a": ("丙",), "_was.a": ("丙",)}), {}, "a")
    assert isinstance(value, RemovedOption) and value == "丙"


def test_select__other_value_posted_is_plain():
    value = kind("choice", options=["甲"]).widget.value_from_datadict(PostedData({"a": ("甲",), "_was.a": ("丙",)}), {}, "a")
    assert type(value) is str
