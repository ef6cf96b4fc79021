import datetime

import pytest

from engine.fields.dates import DateField

MARCH_5 = datetime.date(2010, 3, 5)


@pytest.fixture
def date():
    return DateField.build({})


@pytest.mark.parametrize(
    "raw",
    [
        "2010-03-05", "2010-3-5", "2010/03/05", "2010/3/5", "2010.3.5", "2010年3月5日", "2010年3月5",
        "20100305", "２０１０－０３－０５", "２０１０年３月５日", " 2010-03-05 ", "2010-03-05 00:00:00",
        MARCH_5, datetime.datetime(2010, 3, 5, 14, 30),
    ],
)
def test_to_python__ok(date, raw):
    assert date.to_python(raw) == MARCH_5


@pytest.mark.parametrize("raw", ["2010-02-30", "2010-13-01", "20100230", "2010-3/5", "3/5/2010", "明天", "2010", 40242.0])
def test_to_python__error(date, raw):
    _, issues = date.clean(raw)
    assert [(i.code, dict(i.params)) for i in issues] == [("date", {})]


def test_to_python__leap_day(date):
    assert date.to_python("2012-02-29") == datetime.date(2012, 2, 29)


def test_from_cell__serial_int(date):
    assert date.from_cell(40242) == MARCH_5


def test_from_cell__serial_float_with_time(date):
    assert date.from_cell(40242.5) == MARCH_5


def test_from_cell__datetime(date):
    assert date.from_cell(datetime.datetime(2010, 3, 5)) == MARCH_5


def test_from_cell__number_typed_as_digits(date):
    assert date.to_python(date.from_cell(20100305)) == MARCH_5


def test_from_cell__text_unchanged(date):
    assert date.from_cell("2010/3/5") == "2010/3/5"


def test_to_cell__date(date):
    assert date.to_cell(MARCH_5) == MARCH_5


def test_json__round_trip(date):
    stored = date.to_json(MARCH_5)
    assert (stored, date.from_json(stored)) == ("2010-03-05", MARCH_5)


def test_to_text__iso(date):
    assert date.to_text(MARCH_5) == "2010-03-05"


def test_mask__keeps_year(date):
    assert date.mask("2010-03-05") == "2010-**-**"


def test_sample(date):
    assert date.sample() == MARCH_5


def test_declaration(date):
    assert (date.widget.name, date.input_type, date.excel_format, date.orderable, date.constraints) == (
        "date", "date", "yyyy-mm-dd", True, {"min", "max"},
    )
