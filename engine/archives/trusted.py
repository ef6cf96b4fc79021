"""The senders' public keys an installation trusts for archive packages (`<var>/keys/trusted/*.pem`): listed with
their fingerprints, added and removed by administrators only. `dangan import-archive` and the import page read the
same directory (web/archive_commands.py:trusted_keys)."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine.certificates.signing import key_id, public_pem
from engine.permissions import Principal
from engine.refusals import NotFound, NotPermitted, Refused

LABEL_LIMIT = 100
PEM_LIMIT = 10_000  # an Ed25519 public key in PEM is 113 bytes
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


class KeyInvalid(Refused):
    code, kind = "trusted_key_invalid", "invalid"


class KeyNotFound(NotFound):
    code = "trusted_key_not_found"


@dataclass(frozen=True)
class TrustedKey:
    key_id: str  # the id packages name their signing key by (engine/certificates/signing.py:key_id)
    fingerprint: str  # SHA-256 of the raw key, in colon-separated pairs: what to compare with the sender by phone
    label: str
    added_at: dt.datetime


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    digest = hashlib.sha256(raw).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


class TrustedKeys:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def list(self, principal: Principal) -> list[TrustedKey]:
        _admin(principal)
        found = []
        for path in sorted(self.directory.glob("*.pem")):
            try:
                public = _load(path.read_bytes())
            except KeyInvalid:
                continue  # a file an administrator put there by hand that is no key: the import ignores it too
            label_file = path.with_suffix(".label")
            label = label_file.read_text(encoding="utf-8") if label_file.is_file() else path.stem
            found.append(TrustedKey(key_id(public), fingerprint(public), label,
                                    dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).replace(tzinfo=None)))
        return found

    def add(self, principal: Principal, pem: bytes, label: str) -> TrustedKey:
        """Trust a sender's key (PEM text as the sender's /verify/key.pem gives it), saved as `<key id>.pem`."""
        _admin(principal)
        if len(pem) > PEM_LIMIT:
            raise KeyInvalid()
        public = _load(pem)
        label = " ".join(label.split())[:LABEL_LIMIT]
        self.directory.mkdir(parents=True, exist_ok=True)
        ident = key_id(public)
        (self.directory / f"{ident}.pem").write_bytes(public_pem(public))
        (self.directory / f"{ident}.label").write_text(label or ident, encoding="utf-8")
        return next(k for k in self.list(principal) if k.key_id == ident)

    def remove(self, principal: Principal, ident: str) -> None:
        """Every file holding that key (one added here, or one an administrator copied in under another name)."""
        _admin(principal)
        if not _KEY_ID.match(ident):
            raise KeyNotFound()
        holding = [p for p in sorted(self.directory.glob("*.pem")) if _id_of(p) == ident]
        if not holding:
            raise KeyNotFound()
        for path in holding:
            path.unlink()
            path.with_suffix(".label").unlink(missing_ok=True)


def _admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise NotPermitted()


def _id_of(path: Path) -> str:
    try:
        return key_id(_load(path.read_bytes()))
    except KeyInvalid:
        return ""


def _load(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.strip())
    except (ValueError, TypeError) as exc:
        raise KeyInvalid() from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyInvalid()
    return key
