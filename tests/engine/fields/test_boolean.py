import pytest

from engine.fields.boolean import BooleanField


@pytest.fixture
def boolean():
    return BooleanField.build({})


@pytest.mark.parametrize("raw", [True, "是", "Y", "y", "yes", "YES", "TRUE", "true", "1", 1, 1.0, "on", " 是 ", "Ｙ"])
def test_to_python__true(boolean, raw):
    assert boolean.to_python(raw) is True


@pytest.mark.parametrize("raw", [False, "否", "N", "n", "no", "FALSE", "false", "0", 0, 0.0])
def test_to_python__false(boolean, raw):
    assert boolean.to_python(raw) is False


@pytest.mark.parametrize("raw", ["2", 2, 0.5, "maybe", "X", "有"])
def test_to_python__error(boolean, raw):
    _, issues = boolean.clean(raw)
    assert [(i.code, dict(i.params)) for i in issues] == [("boolean", {})]


def test_to_python__empty(boolean):
    assert boolean.to_python("") is None


@pytest.mark.parametrize(("value", "text"), [(True, "是"), (False, "否")])
def test_to_text(boolean, value, text):
    assert boolean.to_text(value) == text


@pytest.mark.parametrize("value", [True, False])
def test_excel__round_trip(boolean, value):
    assert boolean.to_python(boolean.from_cell(boolean.to_cell(value))) is value


def test_declaration(boolean):
    assert (boolean.widget.name, boolean.excel_format) == ("boolean", "@")
