"""Ed25519 signatures over a certificate's canonical content, the installation's key pair, and the QR payload.

The key pair is made on first use in the key directory (`<DANGAN_VAR>/keys` for the web app): the private key in
`certificate-signing.key` (PKCS#8 PEM, mode 0600, directory 0700: only the service account reads it; it is not in
the database, so a database dump or backup does not carry it), every public key ever used in
`certificate-public-<key id>.pem`, so that a certificate printed before a key change still verifies.
Ed25519 signatures are deterministic: the same content signed with the same key gives the same bytes, so a
certificate's PDF and QR code are the same each time they are made.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PRIVATE_FILE = "certificate-signing.key"
PUBLIC_PREFIX = "certificate-public-"
VERIFY_PATH = "/verify"
CONTENT_VERSION = 1


def canonical(content: Mapping[str, Any]) -> str:
    """The one text a certificate's content is signed as: sorted keys, no spaces, UTF-8 characters kept."""
    return json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_keys(pems: Iterable[bytes]) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id; anything that is not an Ed25519 public key in PEM raises ValueError."""
    keys = {}
    for pem in pems:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("不是 Ed25519 公钥")
        keys[key_id(key)] = key
    return keys


class KeyStore:
    """The installation's signing key in `directory`, made on first use (by whichever process gets there first)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._private: Ed25519PrivateKey | None = None

    @property
    def private_path(self) -> Path:
        return self.directory / PRIVATE_FILE

    def signing_key(self) -> Ed25519PrivateKey:
        with self._lock:
            if self._private is None:
                self._private = self._load_or_create()
            return self._private

    def current_id(self) -> str:
        return key_id(self.signing_key().public_key())

    def current_public_pem(self) -> bytes:
        return public_pem(self.signing_key().public_key())

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every public key in the directory (the current one made first if there is none yet)."""
        self.signing_key()
        return load_public_keys(p.read_bytes() for p in sorted(self.directory.glob(f"{PUBLIC_PREFIX}*.pem")))

    def sign(self, text: str) -> tuple[str, bytes]:
        """(key id, signature) over the UTF-8 bytes of `text`."""
        key = self.signing_key()
        return key_id(key.public_key()), key.sign(text.encode("utf-8"))

    def _load_or_create(self) -> Ed25519PrivateKey:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.private_path
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            try:
                # O_EXCL: two workers starting at once must not each write a key; the loser reads the winner's.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(pem)
                    out.flush()
                    os.fsync(out.fileno())
        private = _read_private(path)
        public = self.directory / f"{PUBLIC_PREFIX}{key_id(private.public_key())}.pem"
        if not public.exists():
            public.write_bytes(public_pem(private.public_key()))
        return private


def _read_private(path: Path) -> Ed25519PrivateKey:
    # A key just created by another process may still be being written: its PEM is short, retry briefly.
    for _ in range(50):
        data = path.read_bytes()
        if data.rstrip().endswith(b"-----END PRIVATE KEY-----"):
            key = serialization.load_pem_private_key(data, password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{path} 不是 Ed25519 私钥")
            return key
        threading.Event().wait(0.02)
    raise ValueError(f"{path} 不是完整的私钥文件")


# --- the QR payload ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Payload:
    """What a certificate's QR code carries: its number, the signed content, the key id and the signature."""

    number: str
    content: str  # canonical JSON text
    key: str
    signature: bytes

    def url(self, base_url: str) -> str:
        query = urlencode({"n": self.number, "c": _b64(self.content.encode("utf-8")), "k": self.key,
                           "s": _b64(self.signature)})
        return f"{base_url.rstrip('/')}{VERIFY_PATH}?{query}"

    def data(self) -> dict[str, Any]:
        return json.loads(self.content)


class PayloadError(ValueError):
    """Text that is not a certificate's QR payload (or is one cut short)."""


def parse_payload(text: str) -> Payload:
    """The payload in a scanned QR code's text (a verification URL), or PayloadError."""
    query = parse_qs(urlsplit(text.strip()).query)
    try:
        number, content, key, signature = (query[name][0] for name in ("n", "c", "k", "s"))
        decoded = _unb64(content).decode("utf-8")
        json.loads(decoded)
        return Payload(number, decoded, key, _unb64(signature))
    except (KeyError, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise PayloadError("不是证书二维码的内容（缺少编号、内容或签名，或已损坏）") from exc


def query_payload(params: Mapping[str, str]) -> Payload | None:
    """The payload in the verify page's query (a scanned QR code opened in a browser); None when it has none."""
    if not all(params.get(name) for name in ("n", "c", "k", "s")):
        return None
    return parse_payload("?" + urlencode({name: params[name] for name in ("n", "c", "k", "s")}))


def verify_signature(payload: Payload, keys: Mapping[str, Ed25519PublicKey]) -> str:
    """"valid"; "unknown_key" (signed with a key not among `keys`); or "invalid" (forged or altered)."""
    key = keys.get(payload.key)
    if key is None:
        return "unknown_key"
    try:
        key.verify(payload.signature, payload.content.encode("utf-8"))
    except InvalidSignature:
        return "invalid"
    return "valid"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
