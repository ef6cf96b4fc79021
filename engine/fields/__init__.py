"""The registry of field types, keyed by the YAML `type:` name, and helpers expressions may call."""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from engine.fields.base import FieldType
from engine.fields.boolean import BooleanField
from engine.fields.choice import ChoiceField, MultiChoiceField, Option
from engine.fields.contact import EmailField, PhoneField
from engine.fields.dates import DateField
from engine.fields.files import FileField, ImageField, UploadedFile
from engine.fields.generated import GeneratedField
from engine.fields.link import LinkField, LinkRef, LinkValue
from engine.fields.id_card import IdCardField, id_card_birth, id_card_gender
from engine.fields.numbers import DecimalField, IntegerField
from engine.fields.table import TableField
from engine.fields.text import TextareaField, TextField
from engine.fields.times import TimeField

FIELD_TYPES: Mapping[str, type[FieldType]] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            TextField,
            TextareaField,
            IntegerField,
            DecimalField,
            DateField,
            TimeField,
            ChoiceField,
            MultiChoiceField,
            BooleanField,
            EmailField,
            PhoneField,
            IdCardField,
            FileField,
            ImageField,
            TableField,
            GeneratedField,
            LinkField,
        )
    }
)

__all__ = ["FIELD_TYPES", "FieldType", "LinkField", "LinkRef", "LinkValue", "Option", "UploadedFile", "id_card_birth", "id_card_gender"]
