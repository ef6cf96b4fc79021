from decimal import Decimal

import pytest

from engine.fields.numbers import DecimalField


@pytest.fixture
def decimal():
    return DecimalField.build({})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1.5", "1.5"), ("１．５", "1.5"), (" -0.25", "-0.25"), (".5", "0.5"), (3, "3"), (0.1, "0.1"),
     (Decimal("2.50"), "2.50")],
)
def test_to_python__ok(decimal, raw, expected):
    assert decimal.to_python(raw) == Decimal(expected)


@pytest.mark.parametrize("raw", ["abc", "1.2.3", "1e5", "NaN", float("inf"), True])
def test_to_python__error(decimal, raw):
    _, issues = decimal.clean(raw)
    assert [(i.code, dict(i.params)) for i in issues] == [("decimal", {})]


def test_places__ok():
    assert DecimalField.build({"places": 2}).clean("1.25") == (Decimal("1.25"), [])


def test_places__trailing_zeros_ok():
    assert DecimalField.build({"places": 1}).clean("1.50")[1] == []


def test_places__error():
    _, issues = DecimalField.build({"places": 2}).clean("1.255")
    assert [(i.code, dict(i.params)) for i in issues] == [("decimal_places", {"places": 2})]


def test_places__whole_number_with_zero_places():
    assert DecimalField.build({"places": 0}).clean("100")[1] == []


def test_json__round_trip(decimal):
    value = decimal.to_python("12.30")
    stored = decimal.to_json(value)
    assert (stored, decimal.from_json(stored)) == ("12.30", Decimal("12.30"))


def test_to_text__no_exponent(decimal):
    assert decimal.to_text(Decimal("1E+2")) == "100"


def test_from_cell__drops_float_noise(decimal):
    assert decimal.to_python(decimal.from_cell(12.300000000000001)) == Decimal("12.3")


def test_to_cell__decimal(decimal):
    assert decimal.to_cell(Decimal("1.5")) == Decimal("1.5")


@pytest.mark.parametrize(("places", "expected"), [(None, "General"), (0, "0"), (2, "0.00")])
def test_excel_format__follows_places(places, expected):
    assert DecimalField(places=places).excel_format == expected


def test_constraints(decimal):
    assert decimal.constraints == {"min", "max"}
