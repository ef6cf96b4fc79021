"""Two installations for archive package tests: a sender on the demo definitions, and a receiver whose definitions
name some fields differently (a key renamed with the label kept, a renamed_from, a field only a mapping places, a
field it lacks)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.archives.service import ArchiveService
from engine.certificates.signing import KeyStore
from tests.support import OTHER_DISTRICT_CLASS, copy_definitions
from tests.workflows.support import World, make_world

SENDER_PEOPLE = {"reg": ("registrar", "示范区教育局/示范区第一中学"), "teacher": ("teacher", "示范区教育局/示范区第一中学/高一/高一(1)班"),
                 "head": ("head_teacher", "示范区教育局/示范区第一中学/高一/高一(1)班"),
                 "bureau": ("bureau", "示范区教育局")}
RECEIVER_PEOPLE = {"reg_in": ("registrar", "滨江区教育局/滨江中学"), "reg_far": ("registrar", "示范区教育局/示范区第一中学")}
RECEIVING_CLASS = OTHER_DISTRICT_CLASS
# sender form -> {sender field: receiver field} for the fields the receiver names differently
MAPPING = {"fields": {"student": {"address": "home_address"}, "evaluation": {"conduct": "behaviour"}}}


def _edit(path: Path, *pairs: tuple[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in pairs:
        assert old in text, (path, old)
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def receiver_definitions(root: Path) -> Path:
    copy_definitions(root)
    forms = root / "forms"
    _edit(forms / "student.yaml",
          ("- key: native_place\n", "- key: hometown\n"),  # same label 籍贯: placed by label
          ("- key: address\n        label: 家庭住址\n", "- key: home_address\n        label: 居住地址\n"),  # only by the mapping
          ("- key: remarks\n        label: 备注\n", "- key: notes\n        renamed_from: [remarks]\n        label: 其他说明\n"))
    text = (forms / "student.yaml").read_text(encoding="utf-8")
    text, count = re.subn(r"      - key: political_status\n(?:        .*\n)*", "", text)
    assert count == 1
    (forms / "student.yaml").write_text(text, encoding="utf-8")
    _edit(root / "roles" / "teacher.yaml", ("- address\n", "- home_address\n"), ("- remarks\n", "- notes\n"))
    _edit(root / "roles" / "parent.yaml", ("hidden: [remarks,", "hidden: [notes,"))
    _edit(forms / "evaluation.yaml",
          ("{key: moral, label: 思想品德,", "{key: ethics, renamed_from: [moral], label: 思想品德,"),  # by renamed_from
          ("{key: conduct, label: 平时表现,", "{key: behaviour, label: 日常表现,"),  # only by the mapping
          ("columns: [student, term, moral,", "columns: [student, term, ethics,"),
          ("(1 if moral == 'A' else 0)", "(1 if ethics == 'A' else 0)"))
    return root


@dataclass
class Pair:
    sender: World
    receiver: World
    sender_keys: KeyStore
    receiver_keys: KeyStore

    def archives(self, side: World) -> ArchiveService:
        keys = self.sender_keys if side is self.sender else self.receiver_keys
        return ArchiveService(side.state.db, side.state.records, keys)

    def close(self) -> None:
        self.sender.state.db.dispose()
        self.receiver.state.db.dispose()


def make_pair(sender_url: str, receiver_url: str, tmp: Path) -> Pair:
    for name in ("var_a", "var_b"):
        (tmp / name).mkdir(exist_ok=True)
    sender = make_world(sender_url, tmp / "var_a", SENDER_PEOPLE)
    receiver = make_world(receiver_url, tmp / "var_b", RECEIVER_PEOPLE, receiver_definitions(tmp / "defs_b"))
    return Pair(sender, receiver, KeyStore(tmp / "var_a" / "keys"), KeyStore(tmp / "var_b" / "keys"))


__all__ = ["MAPPING", "Pair", "RECEIVING_CLASS", "make_pair", "receiver_definitions"]
