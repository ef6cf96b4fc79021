import datetime

import pytest

from engine.fields import id_card_birth, id_card_gender
from engine.fields.id_card import IdCardField, id_card_issues
from engine.issues import FieldError

PUBLISHED = "11010519491231002X"  # the examples in GB 11643-1999
PUBLISHED_1880 = "440524188001010014"
MALE = "440524198001010013"


def gb11643_check(first17: str) -> str:
    """Written out independently of the implementation: ISO 7064 MOD 11-2."""
    total = sum(int(digit) * (2 ** (17 - i) % 11) for i, digit in enumerate(first17))
    return "0123456789X"[(12 - total % 11) % 11]


def valid(first17: str) -> str:
    return first17 + gb11643_check(first17)


@pytest.fixture
def id_card():
    return IdCardField.build({})


@pytest.mark.parametrize(
    "number",
    [PUBLISHED, MALE, valid("44030120050607123"), valid("65010119991231456"),
     valid("82000020100305002"), valid("31011520120229001")],
)
def test_check_digit__ok(id_card, number):
    assert id_card.clean(number) == (number, [])


@pytest.mark.parametrize("number", [PUBLISHED, PUBLISHED_1880, MALE])
def test_check_digit__independent_algorithm_agrees_with_examples(number):
    assert valid(number[:17]) == number


def test_birth__before_1900_error(id_card):
    assert [i.code for i in id_card.clean(PUBLISHED_1880)[1]] == ["id_card_birth"]


def test_check_digit__error(id_card):
    _, issues = id_card.clean("110105194912310021")
    assert [(i.code, dict(i.params)) for i in issues] == [("id_card_check", {"expected": "X"})]


def test_normalise__lowercase_x(id_card):
    assert id_card.to_python("11010519491231002x") == PUBLISHED


def test_normalise__fullwidth_and_spaces(id_card):
    assert id_card.to_python(" １１０１０５ 19491231 002Ｘ\u3000") == PUBLISHED


@pytest.mark.parametrize("raw", ["11010519491231002", "1101051949123100231", "110105491231002"])
def test_length__error(id_card, raw):
    assert [i.code for i in id_card.clean(raw)[1]] == ["id_card_length"]


@pytest.mark.parametrize("raw", ["1101051949123100X2", "11010519491231002Y", "11010519491231-02X"])
def test_chars__error(id_card, raw):
    assert [i.code for i in id_card.clean(raw)[1]] == ["id_card_chars"]


@pytest.mark.parametrize("region", ["00", "10", "16", "24", "55", "70", "83", "99"])
def test_region__error(id_card, region):
    assert [i.code for i in id_card.clean(valid(region + "010519491231002"))[1]] == ["id_card_region"]


@pytest.mark.parametrize("birth", ["20100230", "20101301", "18991231"])
def test_birth__error(id_card, birth):
    assert [i.code for i in id_card.clean(valid(f"110105{birth}002"))[1]] == ["id_card_birth"]


def test_birth__future():
    number = valid("11010520300101002")
    assert [i.code for i in id_card_issues(number, today=datetime.date(2029, 12, 31))] == ["id_card_birth"]


def test_birth__today_ok():
    number = valid("11010520240901002")
    assert list(id_card_issues(number, today=datetime.date(2024, 9, 1))) == []


def test_validate__only_the_first_problem(id_card):
    # Wrong birth date and wrong check digit: only the birth date is reported.
    assert [i.code for i in id_card.clean("110105194902300020")[1]] == ["id_card_birth"]


def test_mask(id_card):
    assert id_card.mask(PUBLISHED) == "110105********002X"


def test_from_cell__int(id_card):
    assert id_card.clean(id_card.from_cell(int(MALE))) == (MALE, [])


def test_from_cell__float_error(id_card):
    with pytest.raises(FieldError) as caught:
        id_card.from_cell(1.1010519491231002e17)
    assert (caught.value.issue.code, dict(caught.value.issue.params)) == ("id_card_float", {})


def test_to_cell__text(id_card):
    assert id_card.to_cell(PUBLISHED) == PUBLISHED


def test_sample__valid(id_card):
    assert id_card.clean(id_card.sample())[1] == []


def test_id_card_birth__ok():
    assert id_card_birth(PUBLISHED) == datetime.date(1949, 12, 31)


def test_id_card_birth__tolerates_input_needing_normalisation():
    assert id_card_birth("11010519491231002x") == datetime.date(1949, 12, 31)


@pytest.mark.parametrize("value", [None, "", 123, "abc", "110105194912310021", valid("11010519490230002")])
def test_id_card_birth__invalid_is_none(value):
    assert id_card_birth(value) is None


@pytest.mark.parametrize(("number", "gender"), [(PUBLISHED, "女"), (MALE, "男")])
def test_id_card_gender__ok(number, gender):
    assert id_card_gender(number) == gender


@pytest.mark.parametrize("value", [None, "", 42, "11010519491231002"])
def test_id_card_gender__invalid_is_none(value):
    assert id_card_gender(value) is None


def test_declaration(id_card):
    assert (id_card.name, id_card.widget.name, id_card.excel_format) == ("id_card", "text", "@")
