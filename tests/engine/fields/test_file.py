import pytest

from engine.fields import UploadedFile
from engine.fields.files import FileField, human_size, parse_size
from engine.issues import FieldError

PDF = UploadedFile("成绩单.pdf", "application/pdf", b"%PDF-1.7 ...")
STORED = {"id": "f1", "name": "成绩单.pdf", "size": 12, "type": "application/pdf"}


@pytest.fixture
def file():
    return FileField.build({"accept": [".pdf", "DOCX"], "max_size": "1KB"})


def codes(issues):
    return [(i.code, dict(i.params)) for i in issues]


def test_build__normalises_accept(file):
    assert file.accept == (".pdf", ".docx")


def test_build__defaults():
    assert FileField.build({}).max_size == 5 * 1024 * 1024


def test_to_python__upload_unchanged(file):
    assert file.clean(PDF) == (PDF, [])


def test_to_python__extension_case_insensitive(file):
    assert file.clean(UploadedFile("成绩单.PDF", "", b"%PDF"))[1] == []


def test_to_python__windows_path_in_name(file):
    assert file.clean(UploadedFile("C:\\Users\\a.b\\成绩单.pdf", "", b"%PDF"))[1] == []


@pytest.mark.parametrize("name", ["病毒.exe", "成绩单.pdf.exe", "无扩展名"])
def test_file_type__error(file, name):
    upload = UploadedFile(name, "application/pdf", b"x")
    assert codes(file.clean(upload)[1]) == [("file_type", {"allowed": ".pdf、.docx"})]


def test_file_empty__error(file):
    assert codes(file.clean(UploadedFile("a.pdf", "application/pdf", b""))[1]) == [("file_empty", {})]


def test_file_size__error(file):
    upload = UploadedFile("a.pdf", "application/pdf", b"x" * 1536)
    assert codes(file.clean(upload)[1]) == [("file_size", {"limit": "1KB", "size": "1.5KB"})]


def test_file_size__exactly_the_limit_ok(file):
    assert file.clean(UploadedFile("a.pdf", "", b"x" * 1024))[1] == []


def test_to_python__no_file_chosen(file):
    assert file.clean(UploadedFile("", "application/octet-stream", b"")) == (None, [])


def test_to_python__stored_reference(file):
    assert file.clean(STORED) == (STORED, [])


@pytest.mark.parametrize("raw", ["成绩单.pdf", {"name": "成绩单.pdf"}, 3])
def test_to_python__not_a_file(file, raw):
    assert codes(file.clean(raw)[1]) == [("invalid", {})]


@pytest.mark.parametrize(("value", "text"), [(PDF, "成绩单.pdf"), (STORED, "成绩单.pdf")])
def test_to_text__name(file, value, text):
    assert file.to_text(value) == text


def test_from_cell__not_importable(file):
    with pytest.raises(FieldError) as caught:
        file.from_cell("成绩单.pdf")
    assert caught.value.issue.code == "file_not_importable"


def test_widget_context(file):
    assert file.widget_context() == {"accept": ".pdf,.docx", "max_size": 1024, "max_size_text": "1KB"}


@pytest.mark.parametrize(
    ("size", "expected"),
    [(500, 500), ("500B", 500), ("500KB", 512000), ("2MB", 2097152), (" 1.5 mb ", 1572864), ("1GB", 1 << 30)],
)
def test_parse_size__ok(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize("size", ["2", "MB", "2TB", "-1KB"])
def test_parse_size__error(size):
    with pytest.raises(ValueError):
        parse_size(size)


@pytest.mark.parametrize(
    ("size", "text"), [(512, "512B"), (1024, "1KB"), (5 * 1024 * 1024, "5MB"), (1288490188, "1.2GB")]
)
def test_human_size(size, text):
    assert human_size(size) == text


def test_declaration(file):
    assert (file.widget.name, file.excel_format) == ("file", "@")
