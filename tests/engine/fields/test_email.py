import pytest

from engine.fields.contact import EmailField


@pytest.fixture
def email():
    return EmailField.build({})


def test_to_python__ok(email):
    assert email.to_python(" zhang.san+school@example.com ") == "zhang.san+school@example.com"


def test_to_python__lowercases_domain_only(email):
    assert email.to_python("ZhangSan@QQ.COM") == "ZhangSan@qq.com"


def test_to_python__fullwidth_at(email):
    assert email.to_python("zhangsan＠163.com") == "zhangsan@163.com"


@pytest.mark.parametrize(
    "raw",
    ["zhangsan", "zhangsan@", "@qq.com", "zhang san@qq.com", "zhangsan@qq", "a..b@qq.com", "a@-qq.com", "张三@qq.com"],
)
def test_to_python__error(email, raw):
    _, issues = email.clean(raw)
    assert [(i.code, dict(i.params)) for i in issues] == [("email", {})]


def test_to_python__too_long(email):
    assert email.clean("a" * 250 + "@qq.com")[1][0].code == "email"


def test_mask(email):
    assert email.mask("zhangsan@qq.com") == "z***@qq.com"


def test_declaration(email):
    assert (email.widget.name, email.input_type, email.constraints) == ("text", "email", {"max_length"})
