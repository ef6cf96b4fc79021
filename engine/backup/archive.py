"""The archive file: a tar whose first members are the manifest and its checksum, then the database and definitions.

Reading it checks everything before anything is used: the manifest against its checksum, every member against the
manifest (name, size, sha256), nothing missing and nothing extra. A flipped byte, a cut-off file or a foreign tar
is refused with the member it concerns.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.backup.manifest import MANIFEST, MANIFEST_SUM, BackupError, Manifest, Member, parse_manifest

CHUNK = 1 << 20
MANIFEST_LIMIT = 16 << 20  # a manifest is a few KB; a larger "manifest" is not ours


def file_member(path: Path) -> Member:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Member(digest.hexdigest(), size)


def bytes_member(data: bytes) -> Member:
    return Member(hashlib.sha256(data).hexdigest(), len(data))


def write_archive(target: Path, manifest: Manifest, files: dict[str, Path], texts: dict[str, bytes]) -> None:
    """`files` (the database) are streamed from disk, `texts` (the definitions) are held in memory; the manifest
    must already list both with their checksums. The file is synced before this returns."""
    raw_manifest = manifest.to_bytes()
    # Readable by the account that runs Dangan only: the archive holds every student's personal data.
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, MANIFEST, raw_manifest)
            _add(tar, MANIFEST_SUM, (hashlib.sha256(raw_manifest).hexdigest() + "\n").encode())
            for name, path in files.items():
                info = _info(name, path.stat().st_size)
                with path.open("rb") as source:
                    tar.addfile(info, source)
            for name, data in texts.items():
                _add(tar, name, data)
        raw.flush()
        os.fsync(raw.fileno())


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, 0
    return info


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


@dataclass(frozen=True)
class Extracted:
    """A verified archive, unpacked into a work directory."""

    manifest: Manifest
    root: Path  # member "a/b" is root / "a/b"

    @property
    def database_file(self) -> Path:
        return self.root / self.manifest.database_member

    def definitions(self) -> dict[str, Path]:
        """Definition files by their path inside the definitions directory."""
        prefix = "definitions/"
        return {name[len(prefix):]: self.root / name for name in self.manifest.members if name.startswith(prefix)}


def read_archive(path: Path, work: Path) -> Extracted:
    """Unpack `path` into `work`, checking every checksum on the way; BackupError if anything does not match."""
    try:
        tar = tarfile.open(path, mode="r:")
    except FileNotFoundError as exc:
        raise BackupError(f"找不到备份文件 {path}") from exc
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{path} 不是 Dangan 备份文件，或文件头已损坏（{exc}）") from exc
    try:
        with tar:
            return _read_members(tar, path, work)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(f"备份文件不完整或已损坏：{path}（{exc}）") from exc


def _read_members(tar: tarfile.TarFile, path: Path, work: Path) -> Extracted:
    manifest: Manifest | None = None
    raw_manifest = b""
    seen: set[str] = set()
    for index, info in enumerate(tar):
        if index == 0:
            if info.name != MANIFEST or not info.isfile() or info.size > MANIFEST_LIMIT:
                raise BackupError(f"{path} 不是 Dangan 备份文件：第一个成员应为 {MANIFEST}，实际为“{info.name}”")
            raw_manifest = _read_small(tar, info)
            continue
        if index == 1:
            if info.name != MANIFEST_SUM or not info.isfile() or info.size > 1024:
                raise BackupError(f"备份文件不完整或已损坏：缺少 {MANIFEST_SUM}")
            expected = _read_small(tar, info).decode("ascii", "replace").strip()
            if hashlib.sha256(raw_manifest).hexdigest() != expected:
                raise BackupError(f"备份文件已损坏：{MANIFEST} 的校验和不符")
            manifest = parse_manifest(raw_manifest)
            continue
        assert manifest is not None
        expected_member = manifest.members.get(info.name)
        if expected_member is None or not info.isfile() or info.name in seen:
            raise BackupError(f"备份文件已损坏：含有清单之外的成员“{info.name}”")
        found = _extract(tar, info, work / info.name)
        if found != expected_member:
            raise BackupError(f"备份文件已损坏：{info.name} 的校验和不符（清单 sha256 {expected_member.sha256[:12]}…，"
                              f"{expected_member.size} 字节；实际 {found.sha256[:12]}…，{found.size} 字节）")
        seen.add(info.name)
    if manifest is None:
        raise BackupError(f"{path} 不是 Dangan 备份文件（没有 {MANIFEST}）")
    missing = sorted(set(manifest.members) - seen)
    if missing:
        shown = "、".join(missing[:5]) + (f" 等 {len(missing)} 个" if len(missing) > 5 else "")
        raise BackupError(f"备份文件不完整或已损坏：缺少 {shown}")
    return Extracted(manifest, work)


def _read_small(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    source = tar.extractfile(info)
    assert source is not None
    data = source.read()
    if len(data) != info.size:
        raise EOFError("unexpected end of data")
    return data


def _extract(tar: tarfile.TarFile, info: tarfile.TarInfo, target: Path) -> Member:
    source = tar.extractfile(info)
    assert source is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        return _copy_hashing(source, out)


def _copy_hashing(source: BinaryIO, out: BinaryIO) -> Member:
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
    return Member(digest.hexdigest(), size)
