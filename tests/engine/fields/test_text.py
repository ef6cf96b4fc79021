import datetime
from pathlib import Path

import pytest

from engine.fields.text import TextareaField, TextField

DOCS = (Path(__file__).resolve().parents[3] / "docs" / "definitions.md").read_text(encoding="utf-8")


@pytest.fixture
def text():
    return TextField.build({})


def test_to_python__strips(text):
    assert text.to_python("  张三 ") == "张三"


def test_to_python__strips_nbsp_and_ideographic_space(text):
    assert text.to_python("\u00a0张三\u3000") == "张三"


def test_to_python__keeps_inner_spaces(text):
    assert text.to_python(" Li Ming ") == "Li Ming"


def test_to_python__keeps_fullwidth_characters(text):
    assert text.to_python("（一）班") == "（一）班"


@pytest.mark.parametrize("raw", [None, "", "   ", "\u3000\u00a0", "\u200b"])
def test_to_python__empty(text, raw):
    assert text.to_python(raw) is None


def test_to_python__number_becomes_text(text):
    assert text.to_python(42) == "42"


def test_clean__ok(text):
    assert text.clean(" 张三 ") == ("张三", [])


def test_from_cell__integral_float(text):
    assert text.from_cell(20240001.0) == "20240001"


def test_from_cell__fraction(text):
    assert text.from_cell(1.5) == "1.5"


def test_from_cell__midnight_datetime(text):
    assert text.from_cell(datetime.datetime(2010, 3, 5)) == "2010-03-05"


def test_from_cell__text_unchanged(text):
    assert text.from_cell("张三") == "张三"


def test_mask__keeps_first_character(text):
    assert text.mask("张三丰") == "张**"


def test_constraints(text):
    assert text.constraints == {"min_length", "max_length", "pattern"}


def test_textarea__normalises_line_endings():
    assert TextareaField.build({}).to_python(" 第一行\r\n第二行\r") == "第一行\n第二行"


def test_textarea__widget():
    assert (TextareaField.name, TextareaField.widget_type.name) == ("textarea", "textarea")


@pytest.mark.parametrize(("text", "masked"), [
    ("张三", "张*"), ("欧阳修文", "欧**文"), ("新城路12号3单元1号", "新城路******1号"), ("G110105200805120018", "G11010*********0018"),
])
def test_mask__as_docs_definitions_describe_it(text, masked):
    """docs/definitions.md, 敏感字段与脱敏: the examples there are these."""
    assert TextField().mask(text) == masked
    assert f"`{text}` → `{masked}`" in DOCS
