import pytest

from engine.fields.contact import PhoneField


@pytest.fixture
def phone():
    return PhoneField.build({})


@pytest.mark.parametrize(
    "raw",
    ["13812345678", " 138 1234 5678 ", "138-1234-5678", "+86 138 1234 5678", "+8613812345678", "8613812345678",
     "008613812345678", "１３８１２３４５６７８"],
)
def test_mobile__ok(phone, raw):
    assert phone.to_python(raw) == "13812345678"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("010-12345678", "010-12345678"), ("0755-1234567", "0755-1234567"), ("(010)12345678", "010-12345678"),
     ("（010）12345678", "010-12345678"), ("(010) 12345678", "010-12345678"), ("010 12345678", "010-12345678"),
     ("010-12345678-123", "010-12345678-123"), ("０１０－１２３４５６７８", "010-12345678")],
)
def test_landline__ok(phone, raw, expected):
    assert phone.to_python(raw) == expected


@pytest.mark.parametrize(
    "raw", ["12812345678", "1381234567", "138123456789", "01012345678", "10-12345678", "010-123456", "phone"]
)
def test_to_python__error(phone, raw):
    _, issues = phone.clean(raw)
    assert [(i.code, dict(i.params)) for i in issues] == [("phone", {})]


def test_mask__mobile(phone):
    assert phone.mask("13812345678") == "138****5678"


def test_mask__landline(phone):
    assert phone.mask("010-12345678") == "010-****5678"


def test_mask__short_landline(phone):
    assert phone.mask("0755-1234567") == "0755-***4567"


def test_from_cell__float(phone):
    assert phone.to_python(phone.from_cell(13812345678.0)) == "13812345678"


def test_from_cell__int(phone):
    assert phone.from_cell(13812345678) == "13812345678"


def test_to_cell__text(phone):
    assert phone.to_cell("13812345678") == "13812345678"


def test_declaration(phone):
    assert (phone.widget.name, phone.input_type, phone.excel_format) == ("text", "tel", "@")
