"""Uploaded attachments and images; storage swaps the upload for a stored reference."""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote
from typing import Any, Mapping

from engine.fields.base import FieldType, is_empty
from engine.fields.widgets import Files, PostedData, Widget
from engine.issues import FieldError

KB = 1024
MB = 1024 * KB
_UNITS = {"b": 1, "kb": KB, "mb": MB, "gb": 1024 * MB}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmg]?b)\s*", re.IGNORECASE)
_SIZE_SCHEMA = {
    "oneOf": [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*[KkMmGg]?[Bb]\s*$"},
    ]
}
_ACCEPT_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "pattern": r"^\.?[A-Za-z0-9]+$"},
}
_REFERENCE_KEYS = frozenset({"id", "name", "size", "type"})

# Image formats recognised from their first bytes, and the extensions each may carry.
_IMAGE_EXTENSIONS = {
    "jpeg": frozenset({".jpg", ".jpeg"}),
    "png": frozenset({".png"}),
    "gif": frozenset({".gif"}),
    "webp": frozenset({".webp"}),
}


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content_type: str  # as the browser claims it; never trusted
    data: bytes = b""

    @property
    def extension(self) -> str:
        # Old browsers send the full client path, with either separator.
        base = re.split(r"[\\/]", self.filename)[-1]
        return "." + base.rsplit(".", 1)[1].lower() if "." in base else ""


class FileInput(Widget):
    """A file input: the upload comes with the post's files; choosing nothing keeps the stored file.

    A browser cannot put a chosen file back into a file input, so when the form comes back without saving (添加一行,
    a validation error) the upload travels in a hidden `<name>._kept` field and is read from there unless another
    file is chosen: no round trip loses a chosen file. It is checked like any upload when the record is saved."""

    name = "file"

    def value_from_datadict(self, data: PostedData, files: Files, name: str) -> Any:
        return files.get(name) or unkeep(data.get(name + KEPT))

    def value_omitted_from_data(self, data: PostedData, files: Files, name: str) -> bool:
        return name not in files and not data.get(name + KEPT)

    def claims(self, name: str, posted: str) -> bool:
        return posted in (name, name + KEPT)

    def get_context(self, value: Any, raw: Any = None) -> dict[str, Any]:
        context = super().get_context(value, raw)
        if isinstance(raw, UploadedFile) and raw.data:
            context["extra"] = {**context["extra"], "kept": keep(raw), "kept_name": raw.filename}
        return context


KEPT = "._kept"


def keep(upload: UploadedFile) -> str:
    """An upload as the text of a hidden input."""
    return "|".join((quote(upload.filename), quote(upload.content_type), base64.b64encode(upload.data).decode("ascii")))


def unkeep(text: str | None) -> UploadedFile | None:
    if not text or text.count("|") != 2:
        return None
    name, kind, data = text.split("|")
    try:
        return UploadedFile(unquote(name)[:255], unquote(kind)[:255], base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return None


class ImageInput(FileInput):
    name = "image"


def parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = _SIZE.fullmatch(size)
    if not match:
        raise ValueError(f"文件大小“{size}”应写成如 2MB、500KB 的形式")
    return int(float(match[1]) * _UNITS[match[2].lower()])


def human_size(size: int) -> str:
    for unit, factor in (("GB", 1024 * MB), ("MB", MB), ("KB", KB)):
        if size >= factor:
            return f"{size / factor:.2f}".rstrip("0").rstrip(".") + unit
    return f"{size}B"


def image_format(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass(frozen=True)
class FileField(FieldType):
    name = "file"
    title = "附件"
    widget_type = FileInput
    importable = False
    sql_type = None  # a reference to an attachment, not a value to sort or filter by
    params_schema = {"accept": _ACCEPT_SCHEMA, "max_size": _SIZE_SCHEMA}

    accept: tuple[str, ...] = (".pdf", ".jpg", ".jpeg", ".png", ".doc", ".docx", ".xls", ".xlsx")
    max_size: int = 5 * MB

    @classmethod
    def build(cls, params: Mapping[str, Any], options: Mapping[str, tuple] | None = None) -> "FileField":
        kwargs: dict[str, Any] = {}
        if "accept" in params:
            kwargs["accept"] = tuple(dict.fromkeys(_extension(item) for item in params["accept"]))
        if "max_size" in params:
            kwargs["max_size"] = parse_size(params["max_size"])
        return cls(**kwargs)

    def __post_init__(self) -> None:
        if self.max_size <= 0:
            raise ValueError("文件大小上限应大于0")

    def to_python(self, raw: Any) -> Any:
        if isinstance(raw, UploadedFile):
            # A file input left empty still posts a part with no name and no bytes.
            if not raw.filename and not raw.data:
                return None
            self._check_upload(raw)
            return raw
        if is_empty(raw):
            return None
        if isinstance(raw, Mapping) and _REFERENCE_KEYS <= raw.keys():
            return raw
        raise FieldError("invalid")

    def _check_upload(self, upload: UploadedFile) -> None:
        if upload.extension not in self.accept:
            raise FieldError("file_type", allowed="、".join(self.accept))
        if not upload.data:
            raise FieldError("file_empty")
        if len(upload.data) > self.max_size:
            raise FieldError("file_size", limit=human_size(self.max_size), size=human_size(len(upload.data)))

    def to_text(self, value: Any) -> str:
        if value is None:
            return ""
        return value.filename if isinstance(value, UploadedFile) else str(value.get("name", ""))

    def widget_context(self) -> dict[str, Any]:
        return {"accept": ",".join(self.accept), "max_size": self.max_size, "max_size_text": human_size(self.max_size)}

    def from_cell(self, cell: Any) -> Any:
        raise FieldError("file_not_importable")

    def sample(self) -> Any:
        return {"id": "sample", "name": "示例.pdf", "size": 1024, "type": "application/pdf"}

    def format_hint(self) -> str:
        return f"附件（{'、'.join(self.accept)}，不超过{human_size(self.max_size)}），只能在网页上上传"


@dataclass(frozen=True)
class ImageField(FileField):
    name = "image"
    title = "图片"
    widget_type = ImageInput

    accept: tuple[str, ...] = (".jpg", ".jpeg", ".png")
    max_size: int = 2 * MB

    def __post_init__(self) -> None:
        super().__post_init__()
        known = frozenset().union(*_IMAGE_EXTENSIONS.values())
        unknown = [ext for ext in self.accept if ext not in known]
        if unknown:
            raise ValueError(f"图片不支持“{unknown[0]}”，可用：{'、'.join(sorted(known))}")

    def _check_upload(self, upload: UploadedFile) -> None:
        super()._check_upload(upload)
        # The browser's content type is whatever the client says; the bytes are what we serve back.
        kind = image_format(upload.data)
        if kind is None or not _IMAGE_EXTENSIONS[kind] & set(self.accept):
            raise FieldError("file_type", allowed="、".join(self.accept))

    def sample(self) -> Any:
        return {"id": "sample", "name": "示例.jpg", "size": 1024, "type": "image/jpeg"}


def _extension(text: str) -> str:
    text = text.strip().lower()
    return text if text.startswith(".") else "." + text
