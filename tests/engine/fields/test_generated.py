import datetime

import pytest

from engine.fields.generated import GeneratedField, Part


def build(pattern):
    return GeneratedField.build({"pattern": pattern})


def test_parse__fields_text_and_sequence():
    assert build("G{enrol_year}-{seq:5}").parts == (
        Part("text", "G"), Part("field", "enrol_year"), Part("text", "-"), Part("seq", 5),
    )


def test_parse__literal_braces():
    assert build("{{x}}{seq:2}").parts == (Part("text", "{x}"), Part("seq", 2))


@pytest.mark.parametrize(
    "pattern", ["G{id_card", "G}id_card", "{seq}", "{seq:}", "{seq:0}", "{seq:2}{seq:3}", "{1abc}", "{}", "{a:3}", ""]
)
def test_parse__error(pattern):
    with pytest.raises(ValueError):
        build(pattern)


def test_referenced_fields__in_order_once():
    assert build("{school}{enrol_year}{school}{seq:3}").referenced_fields() == ("school", "enrol_year")


@pytest.mark.parametrize(("pattern", "expected"), [("G{id_card}", False), ("{enrol_year}{seq:5}", True)])
def test_has_sequence(pattern, expected):
    assert build(pattern).has_sequence is expected


def test_scope_key__text_before_sequence():
    assert build("{enrol_year}{seq:5}{class}").scope_key({"enrol_year": 2024, "class": "A"}) == "2024"


def test_render__field_value():
    assert build("G{id_card}").render({"id_card": "11010519491231002X"}) == "G11010519491231002X"


def test_render__sequence_zero_padded_per_scope():
    scopes = []

    def next_seq(scope):
        scopes.append(scope)
        return 7

    assert (build("{enrol_year}{seq:5}").render({"enrol_year": 2024}, next_seq), scopes) == ("202400007", ["2024"])


def test_render__date_as_year():
    assert build("{enrolled}{seq:3}").render({"enrolled": datetime.date(2024, 9, 1)}, lambda scope: 1) == "2024001"


@pytest.mark.parametrize("values", [{}, {"id_card": None}, {"id_card": " "}])
def test_render__missing_value(values):
    with pytest.raises(ValueError, match="id_card"):
        build("G{id_card}").render(values)


def test_render__sequence_without_source():
    with pytest.raises(ValueError):
        build("{seq:3}").render({})


def test_to_python__stored_value_stripped():
    assert build("G{id_card}").to_python(" G123 ") == "G123"


def test_sample__shape():
    assert build("G{enrol_year}{seq:4}").sample() == "G示例0001"


def test_not_user_input():
    assert build("{seq:4}").user_input is False


def test_widget():
    assert build("{seq:4}").widget.name == "generated"
