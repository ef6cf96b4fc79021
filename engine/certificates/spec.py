"""The compiled, frozen certificate model: what `definitions/certificates/*.yaml` says, checked and resolved."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from engine.fields.generated import GeneratedField
from engine.spec import Expression, FieldSpec, FormSpec, Origin

RECORD, APPLICATION = "record", "application"  # where a certificate field takes its value from
YEAR = "year"  # the number pattern's {year}: the year the certificate is issued in
PAPER_SIZES = {"A3": (297.0, 420.0), "A4": (210.0, 297.0), "A5": (148.0, 210.0), "B5": (176.0, 250.0)}  # mm


@dataclass(frozen=True)
class CertificateField:
    """One value printed on and signed with the certificate: `source` is "record" or "application"."""

    key: str
    label: str
    source: str
    name: str  # the field of the record or of the application it is copied from
    spec: FieldSpec  # that field's compiled spec, which turns the value into text
    required: bool = True
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class LayoutSpec:
    title: str
    text: Callable[[Mapping[str, Any]], str] = field(compare=False, repr=False)  # the sandboxed template
    text_source: str
    paper: str = "A4"
    landscape: bool = True
    school_level: str = ""  # the org level whose unit name is printed as the school ("" = the record's unit)
    photo: str = ""  # an image field of the record
    seal: str = ""  # absolute path of the seal image under the definitions directory ("" = none)
    font: str = ""  # absolute path of a font file under the definitions directory ("" = the system CJK font)

    @property
    def size_mm(self) -> tuple[float, float]:
        short, long = PAPER_SIZES[self.paper]
        return (long, short) if self.landscape else (short, long)


@dataclass(frozen=True)
class CertificateSpec:
    key: str
    title: str
    form: str
    holder: str  # the certificate field holding the holder's name (masked on the public page)
    fields: tuple[CertificateField, ...]
    number: GeneratedField  # the number pattern, e.g. "{year}{school_no}{seq:2}"
    layout: LayoutSpec
    issue_roles: tuple[str, ...]
    revoke_roles: tuple[str, ...]
    version: str
    workflow: str = ""  # issued when an application of this workflow is finally approved
    when: Expression | None = None  # which records get one (on approval and in a batch)
    batch_level: str = ""  # the org level a batch is chosen at ("" = no batch issuance)
    # What a batch asks for once, for every record: the application fields an approval would have provided, as a form
    # the one validator checks (None: the certificate takes nothing from an application).
    batch_form: FormSpec | None = None
    path: str = ""
    origin: Origin | None = field(default=None, compare=False)

    def field(self, key: str) -> CertificateField | None:
        return next((f for f in self.fields if f.key == key), None)

    @property
    def application_fields(self) -> tuple[CertificateField, ...]:
        """Fields an approval provides; a batch asks for them once for every record it issues to."""
        return tuple(f for f in self.fields if f.source == APPLICATION)
