import pytest

from engine.fields.choice import MultiChoiceField

SPORTS = {"options": [{"value": "bb", "label": "篮球"}, {"value": "fb", "label": "足球"}, {"value": "tt", "label": "乒乓球"}]}


@pytest.fixture
def sports():
    return MultiChoiceField.build(SPORTS)


def test_to_python__list_of_values(sports):
    assert sports.to_python(["tt", "bb"]) == ["bb", "tt"]


@pytest.mark.parametrize("raw", ["乒乓球、篮球", "乒乓球,篮球", "乒乓球，篮球", "乒乓球;篮球", "乒乓球；篮球", " 乒乓球 、 bb "])
def test_to_python__separators(sports, raw):
    assert sports.to_python(raw) == ["bb", "tt"]


def test_to_python__duplicates_once(sports):
    assert sports.to_python("篮球、bb") == ["bb"]


@pytest.mark.parametrize("raw", ["", "、", [], [""]])
def test_to_python__empty(sports, raw):
    assert sports.to_python(raw) is None


def test_clean__each_unknown_item_is_an_issue(sports):
    _, issues = sports.clean("篮球、排球、游泳")
    assert [(i.code, dict(i.params)) for i in issues] == [("choice", {"value": "排球"}), ("choice", {"value": "游泳"})]


def test_to_text__labels(sports):
    assert sports.to_text(["bb", "tt"]) == "篮球、乒乓球"


def test_excel__round_trip(sports):
    assert sports.to_python(sports.from_cell(sports.to_cell(["bb", "fb"]))) == ["bb", "fb"]


def test_json__round_trip(sports):
    assert sports.from_json(sports.to_json(["bb"])) == ["bb"]


def test_build__separator_in_option():
    with pytest.raises(ValueError):
        MultiChoiceField.build({"options": ["篮球、足球", "游泳"]})


def test_sample__valid(sports):
    assert sports.clean(sports.sample()) == (["bb"], [])


def test_widget(sports):
    assert sports.widget.name == "checkboxes"
