from engine.fields.normalise import clean_spaces, integral_text, normalise_code, remove_spaces, to_halfwidth


def test_to_halfwidth__fullwidth_ascii():
    assert to_halfwidth("１２ＡＢｘ！（）＠") == "12ABx!()@"


def test_to_halfwidth__ideographic_space():
    assert to_halfwidth("张\u3000三") == "张 三"


def test_to_halfwidth__leaves_what_nfkc_would_change():
    # U+F900 is a compatibility ideograph NFKC folds into U+8C48; "①" NFKC turns into "1".
    assert to_halfwidth("\uf900①ｶ") == "\uf900①ｶ"


def test_clean_spaces__strips_every_kind_of_edge_space():
    assert clean_spaces("\u00a0\u3000\u200b 张三 \t\ufeff\n") == "张三"


def test_clean_spaces__keeps_inner_spaces():
    assert clean_spaces(" Li  Ming ") == "Li  Ming"


def test_remove_spaces__inner_too():
    assert remove_spaces("1101 05\u00a0194912\u200b31002X") == "11010519491231002X"


def test_normalise_code__halfwidth_and_trimmed():
    assert normalise_code("\u3000１２３ ") == "123"


def test_integral_text__whole_float():
    assert integral_text(20240001.0) == "20240001"


def test_integral_text__fraction():
    assert integral_text(12.5) is None


def test_integral_text__nan():
    assert integral_text(float("nan")) is None
