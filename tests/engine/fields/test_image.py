import pytest

from engine.fields import UploadedFile
from engine.fields.files import FileField, ImageField

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
GIF = b"GIF89a" + b"\x00" * 16
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8


@pytest.fixture
def image():
    return ImageField.build({})


def codes(issues):
    return [(i.code, dict(i.params)) for i in issues]


def test_defaults(image):
    assert (image.accept, image.max_size) == ((".jpg", ".jpeg", ".png"), 2 * 1024 * 1024)


def test_is_a_file_type(image):
    assert isinstance(image, FileField)


@pytest.mark.parametrize(("name", "data"), [("照片.png", PNG), ("照片.JPG", JPEG), ("照片.jpeg", JPEG)])
def test_magic_bytes__ok(image, name, data):
    assert image.clean(UploadedFile(name, "image/png", data))[1] == []


def test_magic_bytes__text_named_png(image):
    upload = UploadedFile("照片.png", "image/png", b"<html>not an image</html>")
    assert codes(image.clean(upload)[1]) == [("file_type", {"allowed": ".jpg、.jpeg、.png"})]


def test_magic_bytes__gif_named_jpg_not_accepted(image):
    assert codes(image.clean(UploadedFile("照片.jpg", "image/jpeg", GIF))[1])[0][0] == "file_type"


def test_magic_bytes__png_named_jpg_when_only_jpg_accepted():
    image = ImageField.build({"accept": [".jpg"]})
    assert codes(image.clean(UploadedFile("照片.jpg", "image/jpeg", PNG))[1]) == [("file_type", {"allowed": ".jpg"})]


@pytest.mark.parametrize(("name", "data"), [("动图.gif", GIF), ("照片.webp", WEBP)])
def test_magic_bytes__gif_and_webp_when_accepted(name, data):
    image = ImageField.build({"accept": [".gif", ".webp"]})
    assert image.clean(UploadedFile(name, "", data))[1] == []


def test_file_size__error():
    image = ImageField.build({"max_size": "1KB"})
    assert codes(image.clean(UploadedFile("a.png", "", PNG + b"\x00" * 2048))[1])[0][0] == "file_size"


def test_build__unsupported_image_extension():
    with pytest.raises(ValueError, match=".bmp"):
        ImageField.build({"accept": [".bmp"]})


def test_widget_context(image):
    assert image.widget_context()["accept"] == ".jpg,.jpeg,.png"


def test_widget(image):
    assert image.widget.name == "image"
