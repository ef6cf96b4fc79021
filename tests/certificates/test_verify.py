"""The public verification page: valid, revoked, reissued, unknown, forged; only what a verifier needs; rate-limited."""
from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from litestar.testing import TestClient

from engine.certificates.errors import RateLimited
from engine.certificates.service import LOOKUPS_PER_PERIOD, PERIOD_SECONDS, CertificateService
from engine.certificates.signing import KeyStore, Payload, canonical
from engine.storage.models import VerifyWindow
from tests.certificates.support import certificates_of, graduate, service
from tests.support import valid_id_number


def anonymous(w) -> TestClient:
    return TestClient(app=w.app, base_url="http://testserver.local")


def result_of(html: str) -> str:
    start = html.find('id="verify-result"')
    assert start >= 0, html[-3000:]
    return html[start: html.find("</section>", start)]


def scanned(w, row, **changes: str) -> str:
    """The query a phone opens when it scans the certificate's QR code (optionally altered)."""
    key, signature = service(w).keys.sign(row.content)
    payload = Payload(row.number, row.content, key, signature)
    query = dict(part.split("=", 1) for part in payload.url("").split("?", 1)[1].split("&"))
    query.update(changes)
    return "/verify?" + "&".join(f"{k}={v}" for k, v in query.items())


def test_valid__masked_name_school_year_type_only(world) -> None:
    w = world("reg", "bureau")
    student = w.student(name="欧阳娜娜")
    graduate(w, student)
    (row,) = certificates_of(w, student)
    page = anonymous(w).get(f"/verify?n={row.number}")
    assert page.status_code == 200
    shown = result_of(page.text)
    assert 'data-status="valid"' in shown and "证书有效" in shown
    for expected in (row.number, "欧***", "示范区第一中学", "毕业证书", str(row.issued_on.year)):
        assert expected in shown
    for hidden in ("欧阳娜娜", "2008-05-12", "110105"):  # the name, the birth date, the ID number
        assert hidden not in page.text


def test_unknown_revoked_and_reissued(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    graduate(w, student)
    (first,) = certificates_of(w, student)
    client = anonymous(w)
    assert "未查到编号为“20990000000001”的证书" in result_of(client.get("/verify?n=20990000000001").text)
    assert 'data-status="unknown"' in result_of(client.get("/verify?" + urlencode({"n": "<b>1</b>"})).text)
    service(w).reissue(w.state.definitions, w.principal("reg"), first.id, "遗失")
    old = result_of(client.get(f"/verify?n={first.number}").text)
    assert 'data-status="replaced"' in old and "证书已作废（已补发新证书）" in old
    current = certificates_of(w, student)[-1]
    service(w).revoke(w.state.definitions, w.principal("bureau"), current.id, "学籍信息造假")
    revoked = result_of(client.get(f"/verify?n={current.number}").text)
    assert 'data-status="revoked"' in revoked and "证书已被撤销" in revoked
    assert "学籍信息造假" not in revoked  # the reason is the school's, not the verifier's


def test_scanned_qr__genuine_forged_and_mismatched(world) -> None:
    w = world("reg", "bureau")
    student = w.student()
    graduate(w, student)
    (row,) = certificates_of(w, student)
    client = anonymous(w)
    genuine = result_of(client.get(scanned(w, row)).text)
    assert 'data-signature="valid"' in genuine and "二维码签名有效，与登记的证书内容一致" in genuine
    # The content altered (another name), the school's signature kept: forged.
    content = json.loads(row.content)
    content["f"] = [[k, label, "李四" if k == "name" else v] for k, label, v in content["f"]]
    altered = base64.urlsafe_b64encode(canonical(content).encode()).decode().rstrip("=")
    forged = result_of(client.get(scanned(w, row, c=altered)).text)
    assert 'data-signature="invalid"' in forged and "二维码签名无效" in forged
    # A genuine QR code shown with another certificate's number: signed, but not what that number is registered as.
    other = w.student(name="李四", id_card=valid_id_number("11010520080613001"), birth_date="2008-06-13")
    graduate(w, other)
    (second,) = certificates_of(w, other)
    mismatch = result_of(client.get(scanned(w, row, n=second.number)).text)
    assert 'data-signature="mismatch"' in mismatch and "不一致" in mismatch
    # Signed with a key this school never published.
    stranger = KeyStore(w.state.settings.var_dir / "stranger")
    key, signature = stranger.sign(row.content)
    url = Payload(row.number, row.content, key, signature).url("")
    assert 'data-signature="unknown_key"' in result_of(client.get(url).text)


def test_public__no_login_while_issuing_needs_one(world) -> None:
    w = world("reg")
    client = anonymous(w)
    assert client.get("/verify").status_code == 200
    key = client.get("/verify/key.pem")
    assert key.status_code == 200 and key.content == service(w).keys.current_public_pem()
    assert key.content.startswith(b"-----BEGIN PUBLIC KEY-----")
    for private in ("/cert/", "/cert/c/1/pdf"):
        answer = client.get(private, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert client.post("/verify", data={"n": "1"}).status_code in (403, 405)  # GET only


def test_rate_limit__per_address_and_period(world) -> None:
    w = world("reg")
    now = [1_000 * PERIOD_SECONDS + 5.0]
    limited = CertificateService(w.state.db, w.state.records, service(w).keys, clock=lambda: now[0])
    for _ in range(LOOKUPS_PER_PERIOD):
        assert limited.verify("20990000000001", "198.51.100.7").status == "unknown"
    with pytest.raises(RateLimited) as refused:
        limited.verify("20990000000002", "198.51.100.7")
    assert refused.value.message == f"查询过于频繁，请 {PERIOD_SECONDS - 5} 秒后再试"
    assert limited.verify("20990000000003", "203.0.113.9").status == "unknown"  # another address
    now[0] += PERIOD_SECONDS
    assert limited.verify("20990000000004", "198.51.100.7").status == "unknown"  # the next period
    now[0] += 2 * PERIOD_SECONDS
    limited.verify("20990000000005", "198.51.100.7")
    with w.state.db.read() as s:  # the quiet address's count is gone; the table does not grow with every visitor
        assert s.scalars(select(VerifyWindow.address)).all() == ["198.51.100.7"]


def test_rate_limit__page_says_so_in_chinese(world) -> None:
    w = world("reg")
    client = anonymous(w)
    assert client.get("/verify").status_code == 200  # the empty form is not a look-up
    # A period may end during the loop and start the count again: the limit shows within two periods' worth.
    answers = [client.get(f"/verify?n=2099{i:010d}") for i in range(2 * LOOKUPS_PER_PERIOD + 1)]
    codes = [a.status_code for a in answers]
    assert 429 in codes and codes.index(429) >= LOOKUPS_PER_PERIOD, codes
    page = answers[codes.index(429)].text
    assert "查询过于频繁，请" in page and "秒后再试" in page and 'id="verify-result"' not in page
