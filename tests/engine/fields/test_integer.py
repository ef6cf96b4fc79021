from decimal import Decimal

import pytest

from engine.fields.numbers import IntegerField


@pytest.fixture
def integer():
    return IntegerField.build({})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(12, 12), ("12", 12), (" -3 ", -3), ("+7", 7), ("１２", 12), (12.0, 12), ("12.0", 12), (Decimal("12.00"), 12)],
)
def test_to_python__ok(integer, raw, expected):
    assert integer.to_python(raw) == expected


@pytest.mark.parametrize("raw", [12.5, "12.5", "abc", "1e3", "١٢", True, float("nan"), Decimal("1.5")])
def test_to_python__error(integer, raw):
    value, issues = integer.clean(raw)
    assert value is None
    assert [(i.code, dict(i.params)) for i in issues] == [("integer", {})]


def test_to_python__empty(integer):
    assert integer.to_python("  ") is None


def test_to_python__zero_is_not_empty(integer):
    assert integer.to_python(0) == 0


def test_excel__round_trip(integer):
    assert integer.to_python(integer.from_cell(integer.to_cell(12) * 1.0)) == 12


def test_to_cell__number(integer):
    assert integer.to_cell(12) == 12


def test_declaration(integer):
    assert (integer.widget.name, integer.excel_format, integer.orderable, integer.constraints) == (
        "number", "0", True, {"min", "max"},
    )
