"""The permission matrix: every route × every demo role, expectations derived from the role YAML.

The routes are enumerated from the app, so a route added later is walked too. Each route is classified by
what it declares (`cases_for`): an `action` in its opt under /f/{form_key} → the role's form policy and scope;
the admin guard → admins only; public → anyone; the session alone → every signed-in user. A route these
rules cannot explain (another guard, a path parameter with no known value) fails
`test_permission_matrix__every_route_classified`: add a rule for it in `cases_for`, with the statuses each
role should get and where that expectation comes from.
"""
from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient
from sqlalchemy import func, select

from engine.fields import UploadedFile
from engine.issues import Issue
from engine.messages import render
from engine.org import create_unit
from engine.records import StoredRecord
from engine.spec import FieldSpec, FormPolicy, FormSpec, RoleSpec
from engine.storage.models import OrgUnit, Record, User
from tests.engine.helpers import BACKENDS, add_member, database_url, png_bytes, principal_of, sign_in, student_values
from tests.support import CLASS_1, CLASS_2, DISTRICT, OTHER_DISTRICT_CLASS, SCHOOL, build, unit_id
from web.auth import session_guard
from web.controllers.auth import reset_codes_guard
from web.params import bounded_request
from web.guards import admin_guard, form_guard
from web.workflows import workflow_guard
from web.state import AppState

# One user per demo role, at the unit the brief names.
USERS = {
    "sysadmin": ("sysadmin", DISTRICT),
    "registrar": ("registrar", SCHOOL),
    "head_teacher": ("head_teacher", CLASS_1),
    "teacher": ("teacher", CLASS_1),
    "bureau": ("bureau", DISTRICT),
}
ROLES = list(USERS)
GRANTED_GET = {200}
GRANTED_POST = {200, 303, 422}  # 422: the matrix posts no field values, which a granted route refuses as invalid
SEEDED_FAMILY = [
    {"relation": "父亲", "name": "张大山", "employer": "杭州电子厂", "phone": "13900001111"},
    {"relation": "母亲", "name": "李小梅", "employer": "西湖小学", "phone": "13900002222"},
]


@dataclass
class Target:
    """A seeded record the matrix reaches for through /f/{form_key}/{record_id}."""

    form: str
    id: int
    unit_path: str  # materialised path of its unit
    created_by: int | None


@dataclass
class World:
    app: Litestar
    state: AppState
    targets: dict[str, Target]
    attachments: dict[str, tuple[Target, str]]  # attachment id -> (record, field key)
    spare_unit: int
    spare_user: int
    secrets: dict[str, list[str]] = field(default_factory=dict)  # what must never show unmasked
    walks: dict[str, list["Outcome"]] = field(default_factory=dict)

    def form(self, key: str) -> FormSpec:
        return self.state.definitions.forms[key]


@dataclass
class Outcome:
    method: str
    url: str
    handler: str
    status: int
    expected: set[int] | None  # None: a route the rules cannot classify
    why: str
    body: str


# --- seeding --------------------------------------------------------------------------------------

def _student(serial: int, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = student_values(serial, dt.date(2008, 5, 12))
    values.update(changes)
    return values


def _seed(app: Litestar, state: AppState) -> World:
    for username, (role, unit) in USERS.items():
        add_member(state, username, role, unit)
    admin = principal_of(state, "sysadmin")
    records = state.records
    student, award = state.definitions.forms["student"], state.definitions.forms["award"]

    def create(form: FormSpec, unit: str, values: dict[str, Any]) -> int:
        result = records.create(form, admin, unit_id(state, unit), values)
        assert result.ok, result.issues
        return result.record_id

    full = dict(address="浙江省杭州市西湖区文三路1号", guardian_name="张父亲", guardian_phone="13812340001",
                student_phone="13812340002", health="残疾", disability_note="视力残疾二级", is_only_child="是",
                remarks="需要特别关照的学生", family=SEEDED_FAMILY, native_place="浙江杭州")
    ids = {
        "s1": create(student, CLASS_1, _student(11, photo=UploadedFile("照片.png", "image/png", png_bytes()), **full)),
        "s2": create(student, CLASS_2, _student(13, name="李四", guardian_phone="13812340003", student_phone="13812340004")),
        "s3": create(student, OTHER_DISTRICT_CLASS, _student(15, name="王五", guardian_phone="13812340005",
                                                            photo=UploadedFile("王五.png", "image/png", png_bytes()))),
    }
    award_values = {"kind": "奖励", "level": next(o.value for o in award.fields["level"].kind.options),
                    "title": "三好学生", "date": "2024-06-01"}
    # 奖惩 belongs to a student: it sits in the student's class (the unit given is not used).
    ids["a1"] = create(award, CLASS_1, {**award_values, "student": ids["s1"],
                                        "attachment": UploadedFile("证书.pdf", "application/pdf", b"%PDF-1.4\n%%EOF\n")})
    ids["a2"] = create(award, OTHER_DISTRICT_CLASS, {**award_values, "student": ids["s3"]})

    with state.db.write() as s:
        paths = dict(s.execute(select(Record.id, OrgUnit.path).join(OrgUnit, OrgUnit.id == Record.unit_id)).all())
        parent = s.scalar(select(OrgUnit).where(OrgUnit.id == unit_id(state, "滨江区教育局/滨江中学")))
        spare_unit = create_unit(s, "矩阵测试备用班", "class", parent).id
        spare = User(username="spare", display_name="spare", password_hash="!", must_change_password=False)
        s.add(spare)
        s.commit()
        spare_user = spare.id
    targets = {name: Target("student" if name.startswith("s") else "award", rid, paths[rid], admin.user_id) for name, rid in ids.items()}
    attachments = {}
    for name, key in (("s1", "photo"), ("s3", "photo"), ("a1", "attachment")):
        stored = records.get(state.definitions.forms[targets[name].form], targets[name].id, admin)
        attachments[stored.values[key]["id"]] = (targets[name], key)
    seeded = [_student(11, **full), _student(13, guardian_phone="13812340003", student_phone="13812340004"),
              _student(15, guardian_phone="13812340005")]
    secrets = {
        "id_card": [v["id_card"] for v in seeded],
        "phone": [v[k] for v in seeded for k in ("guardian_phone", "student_phone") if k in v] + [m["phone"] for m in SEEDED_FAMILY],
        "hidden_values": ["浙江省杭州市西湖区文三路1号", "张父亲", "13812340001", "13812340002", "视力残疾二级",
                          "需要特别关照的学生", "张大山", "李小梅", "杭州电子厂", "西湖小学", "13900001111"],
    }
    return World(app, state, targets, attachments, spare_unit, spare_user, secrets)


@pytest.fixture(scope="module", params=BACKENDS, ids=["sqlite", "pg"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("permissions")
    with database_url(request.param, tmp) as url:
        app, state = build(url, tmp=tmp)
        yield _seed(app, state)
        state.db.dispose()


# --- expectations from the role YAML ------------------------------------------------------------

def role_of(world: World, username: str) -> RoleSpec:
    return world.state.definitions.roles[USERS[username][0]]


def policy_of(role: RoleSpec, form: str) -> FormPolicy | None:
    return role.forms.get(form) or role.forms.get("*")


def reaches(world: World, username: str, role: RoleSpec, target: Target) -> bool:
    """Whether the role's `scope:` covers the record, worked out from the org tree (not engine.permissions)."""
    if role.scope == "all":
        return True
    with world.state.db.read() as s:
        user_id = s.scalar(select(User.id).where(User.username == username))
        home = s.scalar(select(OrgUnit).where(OrgUnit.id == unit_id(world.state, USERS[username][1])))
        chain = [s.get(OrgUnit, int(i)) for i in home.path.strip("/").split("/")]
    if role.scope == "own":
        return target.created_by == user_id
    if role.scope == "subtree":
        return target.unit_path.startswith(home.path)
    anchors = [u.path for u in chain if u.level == role.scope]
    return any(target.unit_path.startswith(path) for path in anchors)


def shows_field(policy: FormPolicy, spec: FieldSpec) -> bool:
    masked = spec.key in policy.masked or (spec.sensitive and not policy.reveal_sensitive)
    return spec.key not in policy.hidden and not masked


@dataclass
class Case:
    method: str
    url: str
    data: dict[str, str]
    expected: set[int] | None
    why: str
    prepare: Callable[[], None] | None = None


class Unclassified(Exception):
    pass


def _guards(handler: Any) -> set[Any]:
    return {getattr(guard, "func", guard) for guard in handler.resolve_guards()}


def cases_for(world: World, username: str, route: HTTPRoute, handler: Any, method: str, csrf: str) -> list[Case]:
    """The requests to make for one route handler, each with the statuses the role YAML allows."""
    role = role_of(world, username)
    params = set(route.path_parameters)
    guards = _guards(handler)
    opt = handler.opt
    post = method == "POST"
    granted = GRANTED_POST if post else GRANTED_GET
    base = {"_csrf": csrf} if post else {}

    if opt.get("public"):
        # Login page, health check, static files: open to all; a signed-in user must never see an error.
        values = {"file_path": "app.css"}
        if params - set(values):
            raise Unclassified(f"public route with path parameters {sorted(params - set(values))}")
        return [Case(method, _path(route.path, values), base, set(range(200, 500)) - {403, 404}, "public")]

    if form_guard in guards or "action" in opt:
        if "form_key" not in params or form_guard not in guards or "action" not in opt:
            raise Unclassified("has an `action` or form_guard but not both plus a {form_key} path parameter")
        actions = opt["action"] if isinstance(opt["action"], tuple) else (opt["action"],)
        query = _QUERIES.get(handler.name, lambda _form: "")
        cases = []
        for form_key in world.state.definitions.forms:
            policy = policy_of(role, form_key)
            allowed = policy is not None and any(a in policy.actions for a in actions)
            if "job_id" in params:
                if params != {"form_key", "job_id"}:
                    raise Unclassified(f"import job route with path parameters {sorted(params)}")
                # The form's right is checked first; a job that does not exist (or is another user's) is a 404.
                cases.append(Case(method, _path(route.path, {"form_key": form_key, "job_id": MISSING_ID}), dict(base),
                                  {404} if allowed else {403}, f"import job of {form_key}: " + ("missing job" if allowed else "not granted")))
                continue
            if params - {"form_key", "record_id"}:
                raise Unclassified(f"form route with path parameters {sorted(params - {'form_key', 'record_id'})}")
            if "record_id" not in params:
                url = _path(route.path, {"form_key": form_key}) + query(world.form(form_key))
                if handler.name in ("records:grid", "records:grid_save") and world.form(form_key).grid is None:
                    # The form's right first; a form that declares no grid has no grid page.
                    cases.append(Case(method, url, base, {404} if allowed else {403}, f"{form_key} has no grid"))
                    continue
                cases.append(Case(method, url, base, granted if allowed else {403},
                                  f"{USERS[username][0]} {'may' if allowed else 'may not'} {'/'.join(actions)} {form_key}"))
                continue
            for name, target in world.targets.items():
                if target.form != form_key:
                    continue
                in_scope = allowed and reaches(world, username, role, target)
                expected = {403} if not allowed else (granted if in_scope else {404})
                why = f"{'/'.join(actions)} {form_key} {name}: " + ("not granted" if not allowed else "in scope" if in_scope else "out of scope")
                case = Case(method, _path(route.path, {"form_key": form_key, "record_id": target.id}) + query(world.form(form_key)),
                            dict(base), expected, why)
                if post and "delete" in actions and in_scope:
                    case.prepare = _stand_in(world, case, target)  # delete a copy, keep the seeded record
                elif post and "update" in actions:
                    case.data["_revision"] = str(_revision(world, target))
                cases.append(case)
        return cases

    if admin_guard in guards:
        values = {"unit_id": world.spare_unit, "user_id": world.spare_user, "key_id": MISSING_KEY}
        if params - set(values):
            raise Unclassified(f"admin route with path parameters {sorted(params - set(values))}")
        expected = ({200, 303, 422} if post else {200}) if role.admin else {403}
        if "key_id" in params and role.admin:
            expected = {404}  # a trusted key that does not exist (adding and removing real keys: tests/handover)
        case = Case(method, _path(route.path, values), base, expected, "admin only")
        if post and "unit_id" in params and role.admin:
            case.prepare = _spare_unit(world, case)  # renaming or deleting: a unit of its own each time
        return [case]

    if workflow_guard in guards:
        return _workflow_cases(world, role, route, handler, method, base)

    if "certificate" in opt:
        return _certificate_cases(world, role, route, opt["certificate"], method, base)

    if "report" in opt:
        return _report_cases(world, role, route, method, base)

    if reset_codes_guard in guards:
        # 生成重置码: administrators and roles with `issue_reset_codes`; an empty form is refused (422).
        allowed = role.admin or role.issue_reset_codes
        return [Case(method, route.path, base, ({200, 422} if post else {200}) if allowed else {403},
                     "issue_reset_codes or admin")]

    if guards - {session_guard, bounded_request}:
        raise Unclassified(f"guards {sorted(getattr(g, '__name__', str(g)) for g in guards)} the matrix does not know")

    if "handover_id" in params:
        # 升学衔接: a handover that does not exist is a 404 for everyone, its files too. Who may read, confirm and
        # decline a real one (the receiving school's confirming role; the sender reads its log) is walked per role in
        # tests/handover/test_handover.py.
        if params - {"handover_id", "attachment_id"}:
            raise Unclassified(f"handover route with path parameters {sorted(params)}")
        values = {"handover_id": MISSING_ID, "attachment_id": "0" * 32}
        return [Case(method, _path(route.path, values), base, {404}, "no such handover")]

    if "attachment_id" in params:
        if params != {"attachment_id"}:
            raise Unclassified("attachment route with more path parameters")
        cases = []
        for attachment, (target, key) in world.attachments.items():
            policy = policy_of(role, target.form)
            spec = world.form(target.form).fields[key]
            readable = (policy is not None and "read" in policy.actions and reaches(world, username, role, target)
                        and shows_field(policy, spec))
            cases.append(Case(method, _path(route.path, {"attachment_id": attachment}), base, {200} if readable else {404},
                              f"attachment of {target.form} {target.id}.{key}: " + ("readable" if readable else "not readable")))
        return cases

    if params:
        raise Unclassified(f"route with path parameters {sorted(params)} and no rule that explains them")
    # Session only: the user's own pages (home, password, logout) are for every signed-in user.
    return [Case(method, route.path, base, {200, 303, 422} if post else {200}, "any signed-in user")]


MISSING_ID = 987654321
MISSING_KEY = "0" * 16


def _workflow_cases(world: World, role: RoleSpec, route: HTTPRoute, handler: Any, method: str, base: dict) -> list[Case]:
    """Workflow routes, from the workflow YAML: lists are every user's own; a workflow's start pages are for its
    `start.roles`; an application or file that does not exist (or is not the user's to see) is a 404 for all.

    Decisions on real applications, per role and per step, are walked in tests/workflows/test_http.py."""
    need, params, post = handler.opt["workflow"], set(route.path_parameters), method == "POST"
    if need == "inbox":
        if params:
            raise Unclassified(f"workflow list route with path parameters {sorted(params)}")
        return [Case(method, route.path, base, {200}, "any signed-in user's own workflow lists")]
    if need == "start":
        if params != {"key"}:
            raise Unclassified(f"workflow start route with path parameters {sorted(params)}")
        cases = []
        for key, spec in world.state.definitions.workflows.items():
            may = role.key in spec.start_roles
            # Without ?record= a start page has nothing to start on (400); the workflow's own page lists records.
            granted = ({400, 422} if post else {200, 400}) if may else {403}
            cases.append(Case(method, _path(route.path, {"key": key}), dict(base), granted,
                              f"{'may' if may else 'may not'} start {key}"))
        cases.append(Case(method, _path(route.path, {"key": "no_such_workflow"}), dict(base), {404}, "unknown workflow"))
        return cases
    if need in ("view", "decide", "applicant"):
        if params != {"application_id"}:
            raise Unclassified(f"workflow application route with path parameters {sorted(params)}")
        return [Case(method, _path(route.path, {"application_id": MISSING_ID}), base, {404}, "no such application")]
    if need == "file":
        if params != {"attachment_id"}:
            raise Unclassified(f"workflow file route with path parameters {sorted(params)}")
        cases = [Case(method, _path(route.path, {"attachment_id": "0" * 32}), base, {404}, "no such attachment")]
        # A record's attachment is never served through the workflow file route.
        cases += [Case(method, _path(route.path, {"attachment_id": attachment}), base, {404}, "record attachment via /wf")
                  for attachment in world.attachments]
        return cases
    raise Unclassified(f"workflow route kind {need!r} the matrix does not know")


def _certificate_cases(world: World, role: RoleSpec, route: HTTPRoute, need: str, method: str, base: dict) -> list[Case]:
    """Certificate routes, from the certificate YAML: a batch is for the kind's `roles.issue` (an issuer naming a unit
    outside their reach is told so, 422); a certificate that does not exist is a 404 for all. The service checks
    both; certificates of real records, per role and scope, are walked in tests/certificates/test_service.py."""
    params = set(route.path_parameters)
    if need == "batch":
        if params != {"key"}:
            raise Unclassified(f"certificate batch route with path parameters {sorted(params)}")
        cases = []
        for key, spec in world.state.definitions.certificates.items():
            may = role.key in spec.issue_roles
            cases.append(Case(method, _path(route.path, {"key": key}) + f"?unit={MISSING_ID}", dict(base),
                              {422} if may else {403}, f"{'may' if may else 'may not'} issue {key}"))
        cases.append(Case(method, _path(route.path, {"key": "no_such"}) + "?unit=1", dict(base), {404}, "unknown certificate"))
        return cases
    if need == "one":
        if params != {"certificate_id"}:
            raise Unclassified(f"certificate route with path parameters {sorted(params)}")
        return [Case(method, _path(route.path, {"certificate_id": MISSING_ID}), base, {404}, "no such certificate")]
    raise Unclassified(f"certificate route kind {need!r} the matrix does not know")


def _report_cases(world: World, role: RoleSpec, route: HTTPRoute, method: str, base: dict) -> list[Case]:
    """Report routes, from the report YAML: the report's form readable by the role, the role among the report's
    `roles` (if it names any; administrators always), and every field the report's numbers depend on shown in full
    (not hidden, not masked); otherwise 403. An unknown report is a 404 for all."""
    if set(route.path_parameters) != {"key"}:
        raise Unclassified(f"report route with path parameters {sorted(route.path_parameters)}")
    cases = []
    for key, report in world.state.definitions.reports.items():
        policy = policy_of(role, report.form)
        form = world.form(report.form)
        may = (policy is not None and "read" in policy.actions and (not report.roles or role.admin or role.key in report.roles)
               and all(shows_field(policy, form.fields[k]) for k in report.read_fields))
        cases.append(Case(method, _path(route.path, {"key": key}), dict(base), {200} if may else {403},
                          f"{'may' if may else 'may not'} run report {key}"))
    cases.append(Case(method, _path(route.path, {"key": "no_such"}), dict(base), {404}, "unknown report"))
    return cases


# A route that needs a query parameter to do its work gets it here (by handler name).
_QUERIES: dict[str, Callable[[FormSpec], str]] = {
    "records:check": lambda form: f"?field={next(iter(form.fields))}",
}


def _path(template: str, values: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(values[m[1]]), template)


def _revision(world: World, target: Target) -> int:
    with world.state.db.read() as s:
        return s.scalar(select(Record.revision).where(Record.id == target.id))


def _stand_in(world: World, case: Case, target: Target) -> Callable[[], None]:
    """Before a granted delete is posted, copy the record and point the request at the copy."""
    def prepare() -> None:
        with world.state.db.write() as s:
            original = s.get(Record, target.id)
            data = dict(original.data)
            for key, spec in world.form(target.form).fields.items():
                if spec.unique:
                    data.pop(key, None)
            copy = Record(form_key=original.form_key, unit_id=original.unit_id, data=data, def_version=original.def_version,
                          revision=1, created_by=original.created_by, updated_by=original.created_by)
            s.add(copy)
            s.commit()
            case.url = case.url.replace(f"/{target.id}/", f"/{copy.id}/")
    return prepare


def _spare_unit(world: World, case: Case) -> Callable[[], None]:
    def prepare() -> None:
        with world.state.db.write() as s:
            parent = s.get(OrgUnit, world.spare_unit)
            unit = create_unit(s, f"备用{parent.id}-{len(case.url)}", "class", s.get(OrgUnit, parent.parent_id))
            s.commit()
            case.url = case.url.replace(f"/units/{world.spare_unit}/", f"/units/{unit.id}/")
    return prepare


def _handlers(app: Litestar) -> list[tuple[HTTPRoute, Any, str]]:
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                found.append((route, handler, method))
    # Logging out ends the session: walk it last.
    return sorted(found, key=lambda item: (item[1].name == "auth:logout", item[0].path, item[2]))


def readable_body(content: bytes) -> str:
    """The text a person could read from a response: HTML or JSON as is, a workbook (xlsx, a zip) as its XML."""
    if content.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(io.BytesIO(content)) as book:
            return "".join(book.read(name).decode("utf-8", "replace") for name in book.namelist() if name.endswith(".xml"))
    return content.decode("utf-8", "replace")


def walk(world: World, username: str) -> list[Outcome]:
    """Every route, as `username`, once per backend; the outcomes are shared by the tests below."""
    if username in world.walks:
        return world.walks[username]
    outcomes = []
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        csrf = sign_in(client, world.state, username)
        for route, handler, method in _handlers(world.app):
            try:
                cases = cases_for(world, username, route, handler, method, csrf)
            except Unclassified as exc:
                outcomes.append(Outcome(method, route.path, str(handler.name), 0, None, str(exc), ""))
                continue
            for case in cases:
                if case.prepare:
                    case.prepare()
                response = client.request(case.method, case.url, data=case.data or None, follow_redirects=False)
                outcomes.append(Outcome(case.method, case.url, str(handler.name), response.status_code, case.expected,
                                        case.why, readable_body(response.content)))
    world.walks[username] = outcomes
    return outcomes


# --- the matrix ---------------------------------------------------------------------------------------

def test_permission_matrix__every_route_classified(world: World) -> None:
    unclassified = [o for o in walk(world, "sysadmin") if o.expected is None]
    assert not unclassified, "Routes the permission matrix cannot classify — add a rule for them in " \
        "tests/web/test_permissions.py (cases_for):\n" + "\n".join(f"  {o.method} {o.url} [{o.handler}]: {o.why}" for o in unclassified)


@pytest.mark.parametrize("username", ROLES)
def test_permission_matrix(world: World, username: str) -> None:
    outcomes = [o for o in walk(world, username) if o.expected is not None]
    wrong = [o for o in outcomes if o.status not in o.expected]
    assert not wrong, f"{username}: responses that differ from what roles/{USERS[username][0]}.yaml allows:\n" + "\n".join(
        f"  {o.method} {o.url} [{o.handler}] -> {o.status}, expected {sorted(o.expected) if len(o.expected) < 6 else 'allowed'} ({o.why})"
        for o in wrong)
    assert not [o for o in outcomes if o.status >= 500]


@pytest.mark.parametrize("username", ROLES)
def test_permission_matrix__covers_every_form_route(world: World, username: str) -> None:
    outcomes = walk(world, username)
    form_handlers = {str(h.name) for route, h, _m in _handlers(world.app) if form_guard in _guards(h)}
    assert form_handlers <= {o.handler for o in outcomes}
    assert {"files:download", "home"} <= {o.handler for o in outcomes}


# --- what masked and hidden means in every response -------------------------------------------------------------

def _bodies(world: World, username: str) -> list[tuple[str, str]]:
    return [(f"{o.method} {o.url}", o.body) for o in walk(world, username) if o.body]


@pytest.mark.parametrize("username", ["bureau", "teacher"])
def test_masked_phone_numbers__never_shown_in_full(world: World, username: str) -> None:
    leaks = [(where, phone) for where, body in _bodies(world, username) for phone in world.secrets["phone"] if phone in body]
    assert not leaks, leaks


@pytest.mark.parametrize("username", ["bureau", "teacher"])
def test_masked_id_card__never_shown_as_itself(world: World, username: str) -> None:
    # Occurrences inside 学籍号 ("G" + 身份证号) are the subject of the next test.
    leaks = [(where, number) for where, body in _bodies(world, username) for number in world.secrets["id_card"]
             if re.search(rf"(?<!G){number}", body)]
    assert not leaks, leaks


@pytest.mark.parametrize("username", ["bureau", "teacher"])
def test_masked_id_card__not_derivable_from_any_response(world: World, username: str) -> None:
    leaks = [where for where, body in _bodies(world, username) for number in world.secrets["id_card"] if number in body]
    assert not leaks, leaks


def test_hidden_fields__never_in_any_response_for_teacher(world: World) -> None:
    policy = policy_of(role_of(world, "teacher"), "student")
    labels = [world.form("student").fields[key].label for key in sorted(policy.hidden)]
    found = [(where, text) for where, body in _bodies(world, "teacher")
             for text in labels + world.secrets["hidden_values"] if text in body]
    assert not found, found


def test_seeded_secrets__visible_to_sysadmin(world: World) -> None:
    # The searches above prove something only if the values do show where they are allowed.
    bodies = "".join(body for _where, body in _bodies(world, "sysadmin"))
    for text in world.secrets["hidden_values"] + world.secrets["phone"] + world.secrets["id_card"]:
        assert text in bodies, text


# --- writes the role forbids -------------------------------------------------------------------------------------

def _stored(world: World, name: str) -> StoredRecord:
    target = world.targets[name]
    return world.state.records.get(world.form(target.form), target.id, principal_of(world.state, "sysadmin"))


def _edit_post(world: World, name: str, username: str, values: dict[str, Any]) -> Any:
    record = _stored(world, name)
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        csrf = sign_in(client, world.state, username)
        return client.post(f"/f/student/{record.id}/edit", follow_redirects=False,
                           data={"_csrf": csrf, "_revision": str(record.revision), **values})


def _editable_values(world: World, name: str, username: str) -> dict[str, str]:
    """What the edit form would post for this user: every field they may write, as currently stored."""
    form, record = world.form("student"), _stored(world, name)
    policy = policy_of(role_of(world, username), "student")
    values = {}
    for key, spec in form.fields.items():
        if not spec.kind.importable or not spec.kind.user_input:  # tables and uploads are not posted as text
            continue
        if key in policy.hidden or key in policy.readonly or spec.readonly or not shows_field(policy, spec):
            continue
        value = record.values[key]
        values[key] = spec.kind.widget.format_value(value)
    return values


def test_head_teacher_changes_id_card__readonly_refused(world: World) -> None:
    before = _stored(world, "s1")
    values = _editable_values(world, "s1", "head_teacher") | {"id_card": _student(17)["id_card"]}
    response = _edit_post(world, "s1", "head_teacher", values)
    assert response.status_code == 422
    assert render(Issue("readonly", path="id_card"), world.form("student").fields["id_card"].label) in response.text
    after = _stored(world, "s1")
    assert (after.revision, after.values["id_card"]) == (before.revision, before.values["id_card"])


def test_head_teacher_edit_without_readonly_fields__saved(world: World) -> None:
    values = _editable_values(world, "s1", "head_teacher") | {"native_place": "浙江宁波"}
    response = _edit_post(world, "s1", "head_teacher", values)
    assert response.status_code == 303, response.text[:3000]
    assert _stored(world, "s1").values["native_place"] == "浙江宁波"


def test_unknown_field_posted__refused_nothing_written(world: World) -> None:
    with world.state.db.read() as s:
        before = s.scalar(select(func.count()).select_from(Record))
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        csrf = sign_in(client, world.state, "registrar")
        response = client.post("/f/student/new", follow_redirects=False, data={
            "_csrf": csrf, "_unit": str(unit_id(world.state, CLASS_1)), **_student(19), "nickname": "小张"})
    assert response.status_code == 422
    assert render(Issue("unknown_field", {"name": "nickname"}, path="nickname")) in response.text
    with world.state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Record)) == before


# --- attachments and the JSON API ---------------------------------------------------------------------------------

def _attachment(world: World, record: str) -> str:
    return next(a for a, (target, _key) in world.attachments.items() if target is world.targets[record])


def test_attachment_out_of_scope__404(world: World) -> None:
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "registrar")
        assert client.get(f"/files/{_attachment(world, 's3')}").status_code == 404
        own = client.get(f"/files/{_attachment(world, 's1')}")
    assert own.status_code == 200
    assert own.content == png_bytes() and own.headers["content-type"].startswith("image/png")


def test_api_detail__masks_for_bureau(world: World) -> None:
    form, record = world.form("student"), _stored(world, "s1")
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "bureau")
        values = client.get(f"/api/f/student/{record.id}").json()["values"]
    for key in ("id_card", "guardian_phone", "student_phone"):
        assert values[key] == form.fields[key].kind.mask(form.fields[key].kind.to_text(record.values[key])), key
        assert values[key] != record.values[key]
    assert values["name"] == record.values["name"]


def test_api_detail__hides_for_teacher(world: World) -> None:
    record = _stored(world, "s1")
    hidden = policy_of(role_of(world, "teacher"), "student").hidden
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "teacher")
        values = client.get(f"/api/f/student/{record.id}").json()["values"]
    assert not hidden & set(values)
    assert values["name"] == record.values["name"]


def test_api_list__masks_and_scope_for_bureau(world: World) -> None:
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "bureau")
        listed = client.get("/api/f/student/").json()["records"]
    ids = {r["id"] for r in listed}
    assert {world.targets["s1"].id, world.targets["s2"].id} <= ids and world.targets["s3"].id not in ids
    for record in listed:
        assert "*" in record["values"]["id_card"]


def test_api_detail__full_for_registrar(world: World) -> None:
    record = _stored(world, "s1")
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "registrar")
        values = client.get(f"/api/f/student/{record.id}").json()["values"]
    assert values["id_card"] == record.values["id_card"] and values["guardian_phone"] == record.values["guardian_phone"]


def test_no_generated_openapi_pages(world: World) -> None:
    with TestClient(app=world.app, base_url="http://testserver.local") as client:
        sign_in(client, world.state, "sysadmin")
        for path in ("/schema", "/schema/openapi.json", "/schema/swagger"):
            assert client.get(path).status_code == 404, path


# --- the principal cache -------------------------------------------------------------------------------------------

def test_principal_cache__one_per_database(tmp_path: Path) -> None:
    """Two apps in one process whose users share ids must not share principals."""
    apps = []
    for name, order in (("a", ["registrar", "teacher"]), ("b", ["teacher", "registrar"])):
        app, state = build(f"sqlite:///{tmp_path / name}.db", tmp=tmp_path)
        for role in order:
            add_member(state, f"user_{role}", role, SCHOOL)
        apps.append((app, state))
    seen = []
    # user_registrar in "a" and user_teacher in "b" have the same id (2).
    for (app, state), username in zip(apps, ("user_registrar", "user_teacher")):
        with TestClient(app=app, base_url="http://testserver.local") as client:
            sign_in(client, state, username)
            seen.append(client.get("/f/student/new").status_code)
        state.db.dispose()
    assert seen == [200, 403]
