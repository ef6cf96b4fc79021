"""An archive package: one .zip file that carries records, their child records, history and attachments from one
Dangan installation to another, signed by the sender.

Members: `manifest.json` (the sender, the definitions' version, each form's fields as the sender defines them, and
the sha256 and size of every other member), `records.json` (the records: stored JSON values per the sender's
definitions, their text as shown, history), `attachments/<sha256>` (the files), and `signature.json` (an Ed25519
signature over the exact bytes of manifest.json, by the installation key of engine/certificates/signing.py). A
reader checks, in this order: that it is a zip of a sane size, the signature against the keys it trusts, then every
member against the manifest (none missing, none extra, none altered). Only then is anything parsed.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine.certificates.signing import KeyStore, canonical
from engine.refusals import Refused

FORMAT = "dangan-archive"
FORMAT_VERSION = 1
MANIFEST, SIGNATURE, RECORDS, ATTACHMENTS = "manifest.json", "signature.json", "records.json", "attachments/"
MAX_MEMBERS = 100_000
MAX_UNPACKED = 4 * 1024 ** 3  # what all members may add up to, unpacked: a class's photos and scans, not a bomb
MAX_RATIO = 200  # a member that unpacks to more than 200 times its packed size is not a scan or a JSON file


class PackageRefused(Refused):
    """The file is not a package this installation can accept; `code` says why."""

    code, kind = "archive_invalid", "invalid"


class NotAPackage(PackageRefused):
    code = "archive_not_package"


class Untrusted(PackageRefused):
    code, kind = "archive_untrusted", "forbidden"


class Tampered(PackageRefused):
    code = "archive_tampered"


class Incomplete(PackageRefused):
    code = "archive_incomplete"


@dataclass
class Package:
    """A package's content as read (verified) or to be written."""

    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    attachments: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes
    key: str = ""  # the signing key's id
    digest: str = ""  # sha256 of the whole file, as read

    @property
    def forms(self) -> Mapping[str, Any]:
        return self.manifest.get("forms", {})


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_package(manifest: dict[str, Any], records: list[dict[str, Any]], attachments: Mapping[str, bytes],
                  keys: KeyStore) -> bytes:
    """The signed .zip: `manifest` gets the format, the key id and the members' checksums added."""
    members = {RECORDS: json.dumps(records, ensure_ascii=False, sort_keys=True).encode("utf-8")}
    members.update({ATTACHMENTS + sha: data for sha, data in sorted(attachments.items())})
    signed = {**manifest, "format": FORMAT, "format_version": FORMAT_VERSION, "key": keys.current_id(),
              "members": {name: {"sha256": _sha(data), "size": len(data)} for name, data in members.items()}}
    manifest_bytes = canonical(signed).encode("utf-8")
    key_id, signature = keys.sign(manifest_bytes.decode("utf-8"))
    signature_doc = {"key": key_id, "signature": base64.b64encode(signature).decode("ascii"),
                     "public_key": keys.current_public_pem().decode("ascii")}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in ((MANIFEST, manifest_bytes), (SIGNATURE, canonical(signature_doc).encode("utf-8")), *members.items()):
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if name.startswith(ATTACHMENTS) else zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return out.getvalue()


def read_package(data: bytes, trusted: Mapping[str, Ed25519PublicKey]) -> Package:
    """The verified package in `data`, or a PackageRefused that says what is wrong with it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise NotAPackage() from exc
    with archive:
        if len(infos) > MAX_MEMBERS or sum(i.file_size for i in infos) > MAX_UNPACKED or any(
                i.file_size > MAX_RATIO * max(i.compress_size, 1) + 1024 for i in infos):
            raise NotAPackage()
        names = [i.filename for i in infos]
        if MANIFEST not in names or SIGNATURE not in names:
            raise NotAPackage()
        if len(set(names)) != len(names):
            raise Tampered(detail="文件中有重名的部件")
        try:
            manifest_bytes, signature_doc = archive.read(MANIFEST), json.loads(archive.read(SIGNATURE))
            key_id, signature = signature_doc["key"], base64.b64decode(signature_doc["signature"], validate=True)
        except (zipfile.BadZipFile, ValueError, KeyError, TypeError) as exc:
            raise Tampered(detail="签名文件无法读取") from exc
        key = trusted.get(key_id)
        if key is None:
            raise Untrusted(key=key_id)
        try:
            key.verify(signature, manifest_bytes)
        except InvalidSignature as exc:
            raise Tampered(detail="清单的签名无效") from exc
        manifest = json.loads(manifest_bytes)
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise NotAPackage()
        members: dict[str, Any] = manifest.get("members", {})
        missing = [name for name in members if name not in names]
        if missing:
            raise Incomplete(count=len(missing), first=missing[0])
        extra = [name for name in names if name not in members and name not in (MANIFEST, SIGNATURE)]
        if extra:
            raise Tampered(detail=f"多出了清单中没有的部件“{extra[0]}”")
        contents = {}
        for name, expected in members.items():
            try:
                content = archive.read(name)
            except (zipfile.BadZipFile, ValueError, EOFError) as exc:  # a CRC error: bytes changed after packing
                raise Tampered(detail=f"部件“{name}”已损坏") from exc
            if len(content) != expected.get("size") or _sha(content) != expected.get("sha256"):
                raise Tampered(detail=f"部件“{name}”与清单中的校验值不符")
            contents[name] = content
    try:
        records = json.loads(contents[RECORDS])
    except (KeyError, ValueError) as exc:
        raise Incomplete(count=1, first=RECORDS) from exc
    attachments = {name[len(ATTACHMENTS):]: content for name, content in contents.items() if name.startswith(ATTACHMENTS)}
    return Package(manifest, records, attachments, key_id, _sha(data))


def signer_key(data: bytes) -> str:
    """The id of the key a package says it was signed with (not verified), to name an untrusted sender's key."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return str(json.loads(archive.read(SIGNATURE)).get("key", ""))
    except (zipfile.BadZipFile, ValueError, KeyError, TypeError, EOFError):
        return ""
