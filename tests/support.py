"""Test helpers shared by HTTP and browser tests: build an app on a database, make users, log in."""
from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from litestar import Litestar
from litestar.testing import TestClient

from engine.accounts import create_user
from engine.org import unit_by_path
from web.app import create_app, prepare
from web.settings import Settings
from web.state import AppState

REPO = Path(__file__).resolve().parent.parent
DEFINITIONS = REPO / "definitions"
PASSWORD = "Kq7#vLm2-Shuxue"  # passes the policy, zxcvbn included (engine/passwords.py)

# Demo org paths (definitions/org.yaml) used across tests.
DISTRICT = "示范区教育局"
SCHOOL = "示范区教育局/示范区第一中学"
CLASS_1 = "示范区教育局/示范区第一中学/高一/高一(1)班"
CLASS_2 = "示范区教育局/示范区第一中学/高一/高一(2)班"
OTHER_SCHOOL_CLASS = "示范区教育局/示范区实验小学/一年级/一年级(1)班"
OTHER_DISTRICT = "滨江区教育局"
OTHER_DISTRICT_CLASS = "滨江区教育局/滨江中学/高一/高一(1)班"


def build(db_url: str, definitions: Path = DEFINITIONS, tmp: Path | None = None) -> tuple[Litestar, AppState]:
    settings = replace(Settings(), database_url=db_url, definitions=definitions,
                       var_dir=tmp or Path(REPO / "var" / "test"))
    state, _admin = prepare(settings)
    return create_app(settings, state), state


def copy_definitions(target: Path) -> Path:
    """A private copy of the demo definitions a test may edit."""
    shutil.copytree(DEFINITIONS, target)
    return target


def add_user(state: AppState, username: str, role: str, unit_path: str, password: str = PASSWORD,
             must_change: bool = False) -> None:
    with state.db.write() as s:
        unit = unit_by_path(s, unit_path)
        assert unit is not None, unit_path
        create_user(s, username, password, [role], [unit.id], display_name=username, must_change=must_change)
        s.commit()


def csrf_of(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html) or re.search(r'"X-CSRF-Token": "([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match[1]


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the real form; returns the session's CSRF token for later posts."""
    page = client.get("/login")
    response = client.post("/login", data={"_csrf": csrf_of(page.text), "username": username, "password": password, "next": "/"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text[:500]
    return csrf_of(client.get("/password" if response.headers["location"] == "/password" else "/").text)


def unit_id(state: AppState, path: str) -> int:
    with state.db.read() as s:
        unit = unit_by_path(s, path)
        assert unit is not None, path
        return unit.id


def client_for(app: Litestar) -> Iterator[TestClient]:
    with TestClient(app=app, base_url="http://testserver.local") as client:
        yield client


def valid_id_number(first17: str) -> str:
    """An ID number with its check digit (GB 11643) after the first 17 digits."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(c) * wt for c, wt in zip(first17, weights)) % 11]


def valid_student(**overrides: str) -> dict[str, str]:
    """Form fields of a valid student (ID number matches birth date and gender)."""
    data = {
        "name": "张三", "gender": "男", "birth_date": "2008-05-12", "ethnicity": "01",
        "id_card": "110105200805120018", "enrol_year": "2023", "grade": "高一",
        "guardian_name": "张父", "guardian_phone": "13812345678",
    }
    data.update(overrides)
    return data
