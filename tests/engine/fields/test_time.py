import datetime

import pytest

from engine.fields.times import TimeField

HALF_PAST_SEVEN = datetime.time(7, 30)


@pytest.fixture
def time():
    return TimeField.build({})


@pytest.mark.parametrize(
    "raw",
    ["07:30", "7:30", " 7:30 ", "07:30:00", "７：３０", "7点30分", "7点半", "7时30分", "0730",
     HALF_PAST_SEVEN, datetime.datetime(2024, 9, 1, 7, 30)],
)
def test_to_python__ok(time, raw):
    assert time.to_python(raw) == HALF_PAST_SEVEN


@pytest.mark.parametrize("raw", ["24:00", "7:60", "7:30:15", "早上", "7.30", "730", 7, 0.3125, True, datetime.time(7, 30, 15)])
def test_to_python__error(time, raw):
    _, issues = time.clean(raw)
    assert [(i.code, dict(i.params)) for i in issues] == [("time", {})]


def test_to_python__hour_alone(time):
    assert time.to_python("7点") == datetime.time(7, 0)


def test_to_python__midnight(time):
    assert time.to_python("0:00") == datetime.time(0, 0)


@pytest.mark.parametrize("cell", [HALF_PAST_SEVEN, 0.3125, 45536.3125, datetime.datetime(1899, 12, 30, 7, 30),
                                  datetime.timedelta(hours=7, minutes=30), "7:30"])
def test_from_cell__time_day_fraction_or_text(time, cell):
    assert time.to_python(time.from_cell(cell)) == HALF_PAST_SEVEN


def test_from_cell__fraction_rounded_to_the_minute(time):
    assert time.from_cell(0.31250001) == HALF_PAST_SEVEN


def test_from_cell__whole_day_is_not_a_time(time):
    assert time.clean(time.from_cell(datetime.timedelta(days=1)))[1][0].code == "time"


def test_to_cell__time(time):
    assert time.to_cell(HALF_PAST_SEVEN) == HALF_PAST_SEVEN


def test_json__round_trip(time):
    stored = time.to_json(HALF_PAST_SEVEN)
    assert (stored, time.from_json(stored)) == ("07:30", HALF_PAST_SEVEN)


def test_json__sorts_as_text(time):
    times = [datetime.time(h, m) for h, m in ((13, 5), (7, 30), (9, 0), (0, 0))]
    assert sorted(times, key=time.to_json) == sorted(times)


def test_to_text__hh_mm(time):
    assert time.to_text(datetime.time(9, 5)) == "09:05"


def test_to_sql__a_time(time):
    assert time.to_sql(HALF_PAST_SEVEN) == HALF_PAST_SEVEN


def test_parse_limit__hh_mm(time):
    limit = time.parse_limit("min", "07:30")
    assert (limit.value(), limit.shown) == (HALF_PAST_SEVEN, "07:30")


def test_parse_limit__refused_with_the_key(time):
    with pytest.raises(ValueError, match="“max”应为时间"):
        time.parse_limit("max", "晚上")


def test_widget__time_input(time):
    assert (time.widget.template_name, time.widget.input_type, time.widget.format_value(HALF_PAST_SEVEN)) == (
        "widgets/text.html", "time", "07:30",
    )


def test_sample(time):
    assert time.sample() == datetime.time(8, 0)


def test_declaration(time):
    assert (time.excel_format, time.orderable, time.constraints, time.importable) == ("hh:mm", True, {"min", "max"}, True)
