"""A pluggable SMS sender for tests (DANGAN_SMS_SENDER=tests.web.sms_plugin:CollectingSms): keeps what it sends."""
from __future__ import annotations

from dataclasses import dataclass

SENT: list[tuple[str, str]] = []


@dataclass
class CollectingSms:
    channel: str = "sms"

    def send(self, to: str, subject: str, text: str) -> None:
        SENT.append((to, text))
