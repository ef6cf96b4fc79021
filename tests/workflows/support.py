"""Workflow test helpers: an app with the people of a transfer, students, and posting actions as them."""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import select

from engine.org import build_principal
from engine.permissions import Principal
from engine.storage.db import sqlite_file
from engine.storage.models import Application, ApplicationTask, Record, User
from tests.support import (
    CLASS_1, OTHER_DISTRICT_CLASS, OTHER_SCHOOL_CLASS, SCHOOL, add_user, build, login, unit_id, valid_student,
)
from web.state import AppState

OTHER_SCHOOL = "示范区教育局/示范区实验小学"
OTHER_DISTRICT_SCHOOL = "滨江区教育局/滨江中学"
PDF = ("证明.pdf", b"%PDF-1.4 proof", "application/pdf")

# username -> (role, unit): the people the tests act as.
PEOPLE = {
    "reg": ("registrar", SCHOOL),  # sending school 学籍管理员
    "reg_b": ("registrar", SCHOOL),  # a second registrar of the same school
    "reg_in": ("registrar", OTHER_DISTRICT_SCHOOL),  # receiving school in the other district
    "reg_in2": ("registrar", OTHER_DISTRICT_SCHOOL),  # a second registrar there (concurrency)
    "reg_near": ("registrar", OTHER_SCHOOL),  # receiving school in the same district
    "bureau": ("bureau", "示范区教育局"),
    "bureau_b": ("bureau", "示范区教育局"),
    "bureau_in": ("bureau", "滨江区教育局"),
    "head": ("head_teacher", CLASS_1),
    "teacher": ("teacher", CLASS_1),
    "admin2": ("sysadmin", "示范区教育局"),
}


@dataclass
class World:
    app: Litestar
    state: AppState
    students: dict[str, int] = field(default_factory=dict)
    people: list["Person"] = field(default_factory=list)

    def login(self, username: str) -> "Person":
        person = Person(self, username)
        self.people.append(person)
        return person

    def principal(self, username: str) -> Principal:
        with self.state.db.read() as s:
            user = s.scalar(select(User).where(User.username == username))
            return build_principal(s, user, self.state.definitions)

    def student(self, name: str = "张三", id_card: str = "110105200805120018", unit: str = CLASS_1, **extra: str) -> int:
        form = self.state.definitions.forms["student"]
        result = self.state.records.create(form, self.principal("reg"), unit_id(self.state, unit),
                                           valid_student(name=name, id_card=id_card, **extra))
        assert result.ok, result.issues
        self.students[name] = result.record_id  # type: ignore[assignment]
        return result.record_id  # type: ignore[return-value]

    def child(self, form_key: str, values: dict[str, Any], unit: str | None = None) -> int:
        """A record of another form (a child form's goes to its parent's unit), saved by the school's registrar."""
        form = self.state.definitions.forms[form_key]
        result = self.state.records.create(form, self.principal("reg"), unit_id(self.state, unit) if unit else None, values)
        assert result.ok, result.issues
        return result.record_id  # type: ignore[return-value]

    def evaluation(self, student: int, grade: str = "高一") -> int:
        """A 综合素质评价 of the student in `grade`: what 毕业审核 asks of the final year."""
        levels = {k: "A" for k in ("moral", "academic", "health", "art", "practice")}
        return self.child("evaluation", {"student": student, "term": "2025-2026学年第二学期", "grade": grade, **levels})

    def record(self, record_id: int) -> Record:
        with self.state.db.read() as s:
            return s.get(Record, record_id)

    def application(self, application_id: int) -> Application:
        with self.state.db.read() as s:
            return s.get(Application, application_id)

    def open_tasks(self, application_id: int) -> list[ApplicationTask]:
        with self.state.db.read() as s:
            return list(s.scalars(select(ApplicationTask).where(ApplicationTask.application_id == application_id,
                                                                ApplicationTask.status == "open").order_by(ApplicationTask.id)))


def make_world(db_url: str, tmp: Path, people: dict[str, tuple[str, str]] = PEOPLE, definitions: Path | None = None) -> World:
    app, state = build(db_url, tmp=tmp) if definitions is None else build(db_url, definitions, tmp=tmp)
    for username, (role, unit) in people.items():
        add_user(state, username, role, unit)
    return World(app, state)


class Person:
    """One signed-in browser-less user: a TestClient with their session and CSRF token."""

    def __init__(self, world: World, username: str) -> None:
        # Not entered as a context manager: several clients share one app, and only one may run its lifespan.
        self.client = TestClient(app=world.app, base_url="http://testserver.local")
        self.csrf = login(self.client, username)
        self.world = world

    def get(self, url: str) -> Any:
        return self.client.get(url)

    def post(self, url: str, data: dict[str, Any] | None = None, files: dict[str, Any] | None = None) -> Any:
        return self.client.post(url, data={"_csrf": self.csrf, **(data or {})}, files=files, follow_redirects=False)

    def start(self, workflow: str, record_id: int, data: dict[str, Any], files: dict[str, Any] | None = None) -> Any:
        return self.post(f"/wf/new/{workflow}/start?record={record_id}", data, files)

    def decide(self, application_id: int, decision: str, task: int | None = None, comment: str = "",
               files: dict[str, Any] | None = None) -> Any:
        if task is None:
            task = self.task_on_page(application_id)
        return self.post(f"/wf/a/{application_id}/decide", {"task": str(task), "decision": decision, "comment": comment}, files)

    def task_on_page(self, application_id: int) -> int:
        found = re.search(r'name="task" value="(\d+)"', self.get(f"/wf/a/{application_id}").text)
        assert found, "no decision form on the page"
        return int(found[1])


def application_id(response: Any) -> int:
    assert response.status_code == 303, response.text[:3000]
    found = re.search(r"/wf/a/(\d+)", response.headers["location"])
    assert found, response.headers["location"]
    return int(found[1])


def transfer_form(unit: int, reason: str = "搬家") -> dict[str, str]:
    return {"_unit": str(unit), "reason": reason, "transfer_date": "2026-09-01"}


def proof() -> dict[str, Any]:
    return {"proof": PDF}


@contextmanager
def holding(w, application: int) -> Iterator[Callable[[], None]]:
    """Another transaction holds what a decision on `application` needs: on PostgreSQL the application's row, on
    SQLite the write lock (another process's import, say). Yields the function that lets go."""
    if w.state.db.dialect == "sqlite":
        other = sqlite3.connect(sqlite_file(w.state.db.url), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield lambda: other.execute("ROLLBACK")
        finally:
            other.close()
        return
    with w.state.db.engine.connect() as holder:
        holder.execute(select(Application.id).where(Application.id == application).with_for_update())
        yield holder.rollback


__all__ = ["CLASS_1", "OTHER_DISTRICT_CLASS", "OTHER_SCHOOL_CLASS", "Person", "World", "application_id", "make_world",
           "holding", "proof", "transfer_form", "unit_id"]
