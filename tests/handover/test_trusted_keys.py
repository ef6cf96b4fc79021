"""Archive packages' trusted sender keys on an administrator's page, and uploaded packages not kept past a day."""
from __future__ import annotations

import os
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from engine.archives.trusted import fingerprint
from engine.certificates.signing import key_id, public_pem
from engine.issues import Issue
from engine.messages import render
from web.archive_commands import trusted_keys
from web.archives import STAGED_FOR, STAGING, sweep_staged


def test_admin_adds_lists_and_removes_a_sender_key(world) -> None:
    w = world("admin2", "reg")
    sender = Ed25519PrivateKey.generate().public_key()
    admin = w.login("admin2")
    added = admin.post("/admin/keys/", {"label": "滨江区教育局", "pem": public_pem(sender).decode()})
    assert added.status_code == 303
    page = admin.get("/admin/keys/").text
    ident = key_id(sender)
    assert f'id="key-{ident}"' in page and "滨江区教育局" in page and fingerprint(sender) in page
    assert len(fingerprint(sender)) == 95  # 32 bytes as colon-separated pairs
    var = w.state.settings.var_dir
    assert ident in trusted_keys(var, [])  # what the import trusts now
    removed = admin.post(f"/admin/keys/{ident}/remove")
    assert removed.status_code == 303 and ident not in trusted_keys(var, [])
    assert f'id="key-{ident}"' not in admin.get("/admin/keys/").text
    assert admin.post(f"/admin/keys/{ident}/remove").status_code == 404


def test_not_a_key__refused_with_a_message(world) -> None:
    w = world("admin2")
    admin = w.login("admin2")
    rsa = generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_pem = rsa.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for pem in ("不是公钥", rsa_pem, ""):
        refused = admin.post("/admin/keys/", {"label": "x", "pem": pem})
        assert refused.status_code == 422 and render(Issue("trusted_key_invalid", {})) in refused.text
    assert not list((w.state.settings.var_dir / "keys" / "trusted").glob("*.pem"))


def test_only_admins(world) -> None:
    w = world("reg")
    reg = w.login("reg")
    assert reg.get("/admin/keys/").status_code == 403
    key = public_pem(Ed25519PrivateKey.generate().public_key()).decode()
    assert reg.post("/admin/keys/", {"label": "x", "pem": key}).status_code == 403


def test_uploaded_packages_older_than_a_day__removed(world) -> None:
    w = world("reg")
    staging = w.state.settings.var_dir / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    old, fresh = staging / "1-old.zip", staging / "1-fresh.zip"
    old.write_bytes(b"old")
    fresh.write_bytes(b"fresh")
    past = time.time() - STAGED_FOR - 60
    os.utime(old, (past, past))
    assert sweep_staged(staging) == [old]
    assert not old.exists() and fresh.exists()
