"""A self-hosted CAPTCHA-like challenge: a small sum drawn as a noisy picture, asked only of an address that has
failed to sign in several times. No third-party service (schools are often offline); nothing stored — the answer is
bound to the challenge by an HMAC with the server's secret, the address and an expiry."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import random
import secrets
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

LIFETIME = dt.timedelta(minutes=5)
WIDTH, HEIGHT = 168, 56


@dataclass(frozen=True)
class Challenge:
    token: str  # goes back with the answer, in a hidden field
    image: str  # a data: URI (the CSP allows data: images)


def _mac(secret: bytes, answer: str, address: str, expires: int, nonce: str) -> str:
    message = f"{answer.strip()}|{address}|{expires}|{nonce}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def make(secret: bytes, address: str, now: dt.datetime) -> Challenge:
    draw_random = random.Random(secrets.randbits(64))
    first, second = draw_random.randint(2, 19), draw_random.randint(2, 9)
    expires = int((now + LIFETIME).timestamp())
    nonce = secrets.token_urlsafe(9)
    token = f"{expires}.{nonce}.{_mac(secret, str(first + second), address, expires, nonce)}"
    return Challenge(token, _picture(f"{first} + {second} = ?", draw_random))


def check(secret: bytes, token: str, answer: str, address: str, now: dt.datetime) -> bool:
    try:
        expires_text, nonce, mac = token.split(".")
        expires = int(expires_text)
    except ValueError:
        return False
    if expires < now.timestamp() or not answer.strip().isdigit():
        return False
    return hmac.compare_digest(mac, _mac(secret, answer, address, expires, nonce))


def _picture(text: str, draw_random: random.Random) -> str:
    image = Image.new("RGB", (WIDTH, HEIGHT), (248, 248, 244))
    pen = ImageDraw.Draw(image)
    for _ in range(6):  # lines across the text: no plain OCR of a clean string
        pen.line([(draw_random.randint(0, WIDTH), draw_random.randint(0, HEIGHT)),
                  (draw_random.randint(0, WIDTH), draw_random.randint(0, HEIGHT))],
                 fill=tuple(draw_random.randint(120, 200) for _ in range(3)), width=1)
    font = ImageFont.load_default(size=24)
    x = 10
    for char in text:
        pen.text((x, draw_random.randint(8, 20)), char, font=font, fill=tuple(draw_random.randint(0, 90) for _ in range(3)))
        x += 14 if char != " " else 8
    for _ in range(180):
        pen.point((draw_random.randint(0, WIDTH - 1), draw_random.randint(0, HEIGHT - 1)), fill=(90, 90, 90))
    out = io.BytesIO()
    image.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
