"""Certificate use cases: issue (on approval, in a batch), reissue, revoke, print, and the public verification.

Every use case takes the principal and checks itself who may act (the certificate's `roles`) and on which records
(the scope those roles have on the certificate's form). Issuing on approval is the workflow's own effect: the final
approval is the authority, so it runs in the approving transaction without a role check (`issue_on_approval`).
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from sqlalchemy import select, text
from sqlalchemy.orm import Session as DbSession

from engine.certificates.errors import (
    BatchChanged, BatchEmpty, BatchInvalid, CannotIssue, CertificateNotFound, KindGone, NotAllowed, NotValid,
    RateLimited, ReasonRequired, ReasonTooLong, UnitInvalid,
)
from engine.certificates.compiler import NUMBER_TEXT
from engine.certificates.signing import CONTENT_VERSION, KeyStore, Payload, canonical, verify_signature
from engine.certificates.spec import APPLICATION, YEAR, CertificateSpec
from engine.documents import read_values
from engine.expressions import holds
from engine.issues import Issue
from engine.messages import render
from engine.org import Unit, all_units, ancestor_ids
from engine.permissions import Principal, scope
from engine.records.service import RECORD_COLUMNS, RecordService
from engine.records.writer import BLOCK_SQL
from engine.spec import Definitions, FormSpec
from engine.storage.db import Database
from engine.storage.models import Attachment, Certificate, OrgUnit, Record, utcnow
from engine.validation import clean_record
from engine.workflows.errors import EffectFailed

STATUS_LABELS = {"valid": "有效", "revoked": "已撤销", "replaced": "已补发作废"}
ACTION_LABELS = {"issue": "颁发", "revoke": "撤销", "reissue": "补发", "print": "打印"}
REASON_LIMIT = 200
BATCH_LIMIT = 1000  # records one batch looks at: a class, or a grade of a large school
MAX_NUMBER_SKIPS = 1000
LOOKUPS_PER_PERIOD, PERIOD_SECONDS = 10, 60  # public look-ups per client address
_FORGET_LOOKUPS = text("DELETE FROM verify_windows WHERE period < :period - 1")
_COUNT_LOOKUP = text(
    "INSERT INTO verify_windows (address, period, hits) VALUES (:address, :period, 1) "
    "ON CONFLICT (address) DO UPDATE SET "
    "hits = CASE WHEN verify_windows.period = :period THEN verify_windows.hits + 1 ELSE 1 END, period = :period "
    "RETURNING hits"
)


def today() -> dt.date:
    """The date in China (UTC+8), the date a certificate is issued on."""
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=8)).date()


@dataclass(frozen=True)
class Held:
    """A record as a certificate reads it: its id, unit and values."""

    id: int
    unit_id: int
    unit_path: str
    unit_name: str
    values: dict[str, Any]
    title: str  # the record's title field as text, for lists


@dataclass(frozen=True)
class Issued:
    """One certificate as pages show it."""

    id: int
    kind: str
    title: str
    number: str
    status: str
    holder: str
    school: str
    record_id: int
    issued_on: dt.date
    issued_at: dt.datetime
    issued_name: str
    ended_at: dt.datetime | None
    ended_name: str
    end_reason: str
    replaces_id: int | None
    application_id: int | None
    fields: tuple[tuple[str, str, str], ...]  # (key, label, text) as signed

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def values(self) -> dict[str, str]:
        return {key: value for key, _label, value in self.fields}


@dataclass(frozen=True)
class Candidate:
    """One record of a batch preview: whether it gets a certificate, and if not, why."""

    record_id: int
    title: str
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class Batch:
    spec: CertificateSpec
    unit: Unit
    candidates: tuple[Candidate, ...]

    @property
    def eligible(self) -> tuple[int, ...]:
        return tuple(c.record_id for c in self.candidates if c.ok)


@dataclass(frozen=True)
class Verification:
    """What the public page shows for a number: only what a verifier needs."""

    number: str
    status: str  # unknown | valid | revoked | replaced
    title: str = ""
    school: str = ""
    year: int | None = None
    holder: str = ""  # masked
    issued_on: dt.date | None = None
    ended_on: dt.date | None = None
    signature: str = ""  # "" (no QR content) | valid | invalid | unknown_key | mismatch

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, "未查到")


def mask_name(name: str) -> str:
    """张三 → 张*, 欧阳娜娜 → 欧***: the family name stays, which is all a verifier may compare."""
    name = name.strip()
    return name[:1] + "*" * (len(name) - 1) if name else ""


def may(principal: Principal, spec: CertificateSpec, action: str) -> bool:
    """Whether one of the user's roles may `action` ("issue" also covers reissue and print; "revoke")."""
    return _acting(principal, spec, action) is not None


def _acting(principal: Principal, spec: CertificateSpec, action: str) -> Principal | None:
    """The user restricted to the roles the certificate grants `action` to (their scope is what counts), or None."""
    allowed = spec.revoke_roles if action == "revoke" else spec.issue_roles
    roles = tuple(r for r in principal.roles if r.key in allowed)
    if not roles:
        return None
    return Principal(principal.user_id, principal.username, principal.display_name, roles, principal.unit_paths,
                     principal.anchors)


def issue_on_approval(s: DbSession, definitions: Definitions, workflow_key: str, form_key: str, record_id: int,
                      application_id: int, application_values: Callable[[], Mapping[str, Any]],
                      principal: Principal) -> list[str]:
    """Issue every certificate the approved workflow issues, in the approving transaction `s`; their numbers.

    `application_values` is called only when a certificate is issued: most approvals issue none, and a decision's
    cost is measured (bench/decide_cost.py). A record the certificate's `when` excludes, or that already holds one,
    gets none. A certificate that cannot be made (a value it needs is missing) refuses the approval (EffectFailed):
    nothing of it is saved."""
    numbers = []
    for spec in definitions.certificates.values():
        if spec.workflow != workflow_key or spec.form != form_key:
            continue
        form = definitions.forms[spec.form]
        record = _record(s, form, record_id)
        if record is None or not holds(spec.when, record.values, default=True) or _live(s, spec, record_id):
            continue
        try:
            row = _issue(s, spec, form, record, application_values(), principal, application_id=application_id)
        except CannotIssue as exc:
            raise EffectFailed(detail=exc.message) from exc
        numbers.append(row.number)
    return numbers


class CertificateService:
    def __init__(self, db: Database, records: RecordService, keys: KeyStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.db, self.records, self.keys, self.clock = db, records, keys, clock

    # --- reading --------------------------------------------------------------------------------
    def for_record(self, definitions: Definitions, principal: Principal, form: FormSpec, record_id: int) -> list[Issued]:
        """The record's certificates, newest first, for a user who may read the record (else none)."""
        if not any(spec.form == form.key for spec in definitions.certificates.values()):
            return []
        with self.db.read() as s:
            if self.records.get(form, record_id, principal, "read", session=s) is None:
                return []
            rows = s.scalars(select(Certificate).where(Certificate.form_key == form.key, Certificate.record_id == record_id)
                             .order_by(Certificate.id.desc()))
            return [_issued(row) for row in rows]

    def get(self, definitions: Definitions, principal: Principal, certificate_id: int, action: str) -> Issued:
        """One certificate for a user whose `action` roles reach its record; CertificateNotFound otherwise."""
        with self.db.read() as s:
            row, _spec, _acting_as = self._reachable(s, definitions, principal, certificate_id, action)
            return _issued(row)

    # --- issuing --------------------------------------------------------------------------------
    def batch_units(self, definitions: Definitions, principal: Principal, spec: CertificateSpec) -> list[Unit]:
        """Units at the certificate's batch level that the user's issuing roles reach."""
        acting = self._acting_or_refuse(principal, spec, "issue")
        reach = scope(acting, "read", definitions.forms[spec.form])
        with self.db.read() as s:
            units = all_units(s)
        return [u for u in units if u.level == spec.batch_level
                and (reach.everything or any(u.path.startswith(p) for p in reach.paths))]

    def preview(self, definitions: Definitions, principal: Principal, spec: CertificateSpec, unit_id: int) -> Batch:
        """Who in the unit would get a certificate now, and why the others would not."""
        unit = self._batch_unit(definitions, principal, spec, unit_id)
        acting = self._acting_or_refuse(principal, spec, "issue")
        form = definitions.forms[spec.form]
        with self.db.read() as s:
            return Batch(spec, unit, tuple(self._candidates(s, spec, form, acting, unit)))

    def issue_batch(self, definitions: Definitions, principal: Principal, spec: CertificateSpec, unit_id: int,
                    raw: Mapping[str, Any], expected: Sequence[int]) -> list[Issued]:
        """Issue to the records the preview showed as eligible (`expected`), all or none, with `raw`: the values a
        batch asks for (spec.batch_form). BatchChanged if the eligible records are not the ones previewed."""
        unit = self._batch_unit(definitions, principal, spec, unit_id)
        acting = self._acting_or_refuse(principal, spec, "issue")
        form = definitions.forms[spec.form]
        values: dict[str, Any] = {}
        if spec.batch_form is not None:
            cleaned = clean_record(spec.batch_form, raw)
            if cleaned.issues:
                detail = "；".join(render(i, spec.batch_form.fields[i.path.split(".")[0]].label) for i in cleaned.issues)
                refused = BatchInvalid(detail=detail)
                refused.issues = list(cleaned.issues)  # shown at their fields by the batch page
                raise refused
            values = dict(cleaned.values)
        with self.db.write() as s:
            candidates = list(self._candidates(s, spec, form, acting, unit))
            eligible = [c.record_id for c in candidates if c.ok]
            if not eligible:
                raise BatchEmpty()
            if sorted(eligible) != sorted(expected):
                raise BatchChanged()
            records = {r.id: r for r in self._unit_records(s, form, acting, unit)}
            rows = [_issue(s, spec, form, records[record_id], values, principal) for record_id in eligible]
            result = [_issued(row) for row in rows]
            s.commit()
        return result

    def reissue(self, definitions: Definitions, principal: Principal, certificate_id: int, reason: str) -> Issued:
        """补发: the valid certificate ends as replaced; a new one with the same content and a new number replaces it."""
        with self.db.write() as s:
            # Who and what first: a refusal of the reason must not tell an outsider that the certificate exists.
            row, spec, _acting_as = self._reachable(s, definitions, principal, certificate_id, "issue", lock=True)
            reason = _reason(reason, "reissue")
            if row.status != "valid":
                raise NotValid(status=STATUS_LABELS[row.status], action=ACTION_LABELS["reissue"])
            _end(s, row, "replaced", principal, reason)
            content = json.loads(row.content)
            new = _insert(s, spec, row.form_key, row.record_id, content["f"], content["s"], row.holder, row.photo,
                          principal, values=_number_values(spec, content), replaces=row)
            result = _issued(new)
            s.commit()
        return result

    def revoke(self, definitions: Definitions, principal: Principal, certificate_id: int, reason: str) -> Issued:
        """撤销 with a reason; the number stays taken, and the record keeps it as its current certificate (so that no
        batch issues it another one: a new one takes a 补发 of a valid certificate, not of a revoked one)."""
        with self.db.write() as s:
            row, _spec, _acting_as = self._reachable(s, definitions, principal, certificate_id, "revoke", lock=True)
            reason = _reason(reason, "revoke")
            if row.status != "valid":
                raise NotValid(status=STATUS_LABELS[row.status], action=ACTION_LABELS["revoke"])
            _end(s, row, "revoked", principal, reason)
            result = _issued(row)
            s.commit()
        return result

    # --- printing -------------------------------------------------------------------------------
    def printable(self, definitions: Definitions, principal: Principal, certificate_id: int
                  ) -> tuple[CertificateSpec, Issued, Payload, bytes | None]:
        """What the PDF is made of: the spec, the certificate, its signed payload and the photo as issued."""
        with self.db.read() as s:
            row, spec, _acting_as = self._reachable(s, definitions, principal, certificate_id, "issue")
            if row.status != "valid":
                raise NotValid(status=STATUS_LABELS[row.status], action=ACTION_LABELS["print"])
            photo = s.scalar(select(Attachment.content).where(Attachment.id == row.photo)) if row.photo else None
            issued = _issued(row)
        key, signature = self.keys.sign(row.content)
        return spec, issued, Payload(row.number, row.content, key, signature), photo

    # --- the public verification ----------------------------------------------------------------
    def verify(self, number: str, address: str, payload: Payload | None = None) -> Verification:
        """The certificate a number names, as a verifier may see it, and whether a scanned QR's signature and
        content are genuine; RateLimited when `address` has looked up too many numbers in this period."""
        self._count_lookup(address)
        number = number.strip()
        with self.db.read() as s:
            row = s.scalar(select(Certificate).where(Certificate.number == number)) if NUMBER_TEXT.match(number) else None
        signature = ""
        if payload is not None:
            signature = verify_signature(payload, self.keys.public_keys())
            if signature == "valid" and (payload.number != number or json.loads(payload.content).get("n") != number
                                         or (row is not None and payload.content != row.content)):
                signature = "mismatch"
        if row is None:
            return Verification(number, "unknown", signature=signature)
        content = json.loads(row.content)
        return Verification(number, row.status, title=content.get("t", ""), school=row.school, year=row.issued_on.year,
                            holder=mask_name(row.holder), issued_on=row.issued_on,
                            ended_on=(row.ended_at + dt.timedelta(hours=8)).date() if row.ended_at else None,
                            signature=signature)

    def _count_lookup(self, address: str) -> None:
        now = self.clock()
        period = int(now // PERIOD_SECONDS)
        with self.db.write() as s:
            hits = s.execute(_COUNT_LOOKUP, {"address": address[:64], "period": period}).scalar_one()
            if hits == 1:  # an address's first look-up in a period: counts of addresses gone quiet are dropped
                s.execute(_FORGET_LOOKUPS, {"period": period})
            s.commit()
        if hits > LOOKUPS_PER_PERIOD:
            raise RateLimited(seconds=max(1, int((period + 1) * PERIOD_SECONDS - now)))

    # --- helpers --------------------------------------------------------------------------------
    def _acting_or_refuse(self, principal: Principal, spec: CertificateSpec, action: str) -> Principal:
        acting = _acting(principal, spec, action)
        if acting is None:
            raise NotAllowed(action=ACTION_LABELS[action], title=spec.title)
        return acting

    def _reachable(self, s: DbSession, definitions: Definitions, principal: Principal, certificate_id: int, action: str,
                   lock: bool = False) -> tuple[Certificate, CertificateSpec, Principal]:
        """The certificate, if the user's roles for `action` reach its record; NotAllowed when they hold none."""
        query = select(Certificate).where(Certificate.id == certificate_id)
        row = s.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise CertificateNotFound()
        spec = definitions.certificates.get(row.kind)
        if spec is None:
            raise KindGone(kind=row.kind)
        acting = self._acting_or_refuse(principal, spec, action)
        if self.records.get(definitions.forms[spec.form], row.record_id, acting, "read", session=s) is None:
            raise CertificateNotFound()
        return row, spec, acting

    def _batch_unit(self, definitions: Definitions, principal: Principal, spec: CertificateSpec, unit_id: int) -> Unit:
        if not spec.batch_level:
            raise NotAllowed(action="批量颁发", title=spec.title)
        unit = next((u for u in self.batch_units(definitions, principal, spec) if u.id == unit_id), None)
        if unit is None:
            raise UnitInvalid(level=_level_label(definitions, spec.batch_level))
        return unit

    def _unit_records(self, s: DbSession, form: FormSpec, acting: Principal, unit: Unit) -> list[Held]:
        reach = self.records.scope_clause(scope(acting, "read", form), acting, form)
        query = (select(*RECORD_COLUMNS).join(OrgUnit, OrgUnit.id == Record.unit_id)
                 .where(Record.form_key == form.key, reach, OrgUnit.path.startswith(unit.path, autoescape=True))
                 .order_by(Record.id).limit(BATCH_LIMIT))
        return [_held(form, row) for row in s.execute(query)]

    def _candidates(self, s: DbSession, spec: CertificateSpec, form: FormSpec, acting: Principal,
                    unit: Unit) -> Iterator[Candidate]:
        records = self._unit_records(s, form, acting, unit)
        live = {row.record_id: row.number for row in s.execute(
            select(Certificate.record_id, Certificate.number).where(
                Certificate.live_key.in_([_live_key(spec, r.id) for r in records])))} if records else {}
        for record in records:
            if record.id in live:
                yield Candidate(record.id, record.title, False, f"已有证书（编号 {live[record.id]}）")
            elif not holds(spec.when, record.values, default=True):
                yield Candidate(record.id, record.title, False, "不满足颁发条件")
            else:
                missing = [f.label for f in spec.fields
                           if f.source != APPLICATION and f.required and _empty(record.values.get(f.name))]
                yield Candidate(record.id, record.title, not missing,
                                "缺少" + "、".join(f"“{m}”" for m in missing) if missing else "")


# --- writing certificates -----------------------------------------------------------------------------

def _issue(s: DbSession, spec: CertificateSpec, form: FormSpec, record: Held, application_values: Mapping[str, Any],
           principal: Principal, application_id: int | None = None) -> Certificate:
    """Number, content and row of a new certificate for `record`; CannotIssue when a value it needs is missing."""
    values: dict[str, Any] = {}
    texts, missing = [], []
    for field in spec.fields:
        value = (application_values if field.source == APPLICATION else record.values).get(field.name)
        if _empty(value) and field.required:
            missing.append(render(Issue("cert_missing_value", {"label": field.label})))
        values[field.key] = value
        texts.append([field.key, field.label, "" if _empty(value) else field.spec.kind.to_text(value)])
    if missing:
        raise CannotIssue(title=spec.title, who=record.title, detail="、".join(missing))
    photo = record.values.get(spec.layout.photo) if spec.layout.photo else None
    holder = next(shown for key, _label, shown in texts if key == spec.holder)
    school = _school(s, spec, record)
    return _insert(s, spec, form.key, record.id, texts, school, holder, photo.get("id") if isinstance(photo, dict) else None,
                   principal, values=values, application_id=application_id, who=record.title)


def _insert(s: DbSession, spec: CertificateSpec, form_key: str, record_id: int, texts: list[list[str]], school: str,
            holder: str, photo: str | None, principal: Principal, values: Mapping[str, Any],
            application_id: int | None = None, replaces: Certificate | None = None, who: str = "") -> Certificate:
    issued_on = today()
    number = _number(s, spec, {**values, YEAR: issued_on.year}, who or holder)
    content: dict[str, Any] = {"v": CONTENT_VERSION, "k": spec.key, "t": spec.title, "n": number, "s": school,
                               "d": issued_on.isoformat(), "f": texts}
    if replaces is not None:
        content["r"] = replaces.number
    row = Certificate(kind=spec.key, number=number, form_key=form_key, record_id=record_id,
                      live_key=_live_key(spec, record_id), status="valid", content=canonical(content), holder=holder,
                      school=school, photo=photo, application_id=application_id,
                      replaces_id=replaces.id if replaces is not None else None, issued_on=issued_on, issued_at=utcnow(),
                      issued_by=principal.user_id, issued_name=principal.display_name, ended_name="", end_reason="")
    s.add(row)
    s.flush()
    return row


def _number(s: DbSession, spec: CertificateSpec, values: Mapping[str, Any], who: str) -> str:
    """A number never given before: the sequence only moves forward, and a number somehow taken is skipped."""
    def counter(prefix: str) -> int:
        return s.execute(BLOCK_SQL, {"scope": f"certificate:{spec.key}:{prefix}", "n": 1}).scalar_one()

    try:
        for _ in range(MAX_NUMBER_SKIPS):
            number = spec.number.render(values, counter)
            if not NUMBER_TEXT.match(number) or len(number) > 80:
                raise CannotIssue(title=spec.title, who=who, detail=render(Issue("cert_number_chars", {"number": number})))
            if s.scalar(select(Certificate.id).where(Certificate.number == number)) is None:
                return number
    except ValueError as exc:  # a value the number needs is empty
        raise CannotIssue(title=spec.title, who=who, detail=str(exc)) from exc
    raise CannotIssue(title=spec.title, who=who, detail="没有可用的证书编号")


def _number_values(spec: CertificateSpec, content: Mapping[str, Any]) -> dict[str, Any]:
    """The values a reissue's number is made from: the fields as signed (text), dates back to dates (their year)."""
    kinds = {f.key: f.spec.kind.name for f in spec.fields}
    values: dict[str, Any] = {}
    for key, _label, shown in content["f"]:
        values[key] = dt.date.fromisoformat(shown) if kinds.get(key) == "date" and shown else shown
    return values


def _end(s: DbSession, row: Certificate, status: str, principal: Principal, reason: str) -> None:
    if status == "replaced":
        # The new certificate takes over as the record's current one.
        row.live_key = None
    row.status, row.end_reason = status, reason
    row.ended_at, row.ended_by, row.ended_name = utcnow(), principal.user_id, principal.display_name
    s.flush()


def _reason(reason: str, action: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired(action=ACTION_LABELS[action])
    if len(reason) > REASON_LIMIT:
        raise ReasonTooLong(action=ACTION_LABELS[action], limit=REASON_LIMIT)
    return reason


# --- reading helpers ---------------------------------------------------------------------------------

def _record(s: DbSession, form: FormSpec, record_id: int) -> Held | None:
    row = s.execute(select(*RECORD_COLUMNS).join(OrgUnit, OrgUnit.id == Record.unit_id)
                    .where(Record.form_key == form.key, Record.id == record_id)).first()
    return _held(form, row) if row is not None else None


def _held(form: FormSpec, row: Any) -> Held:
    values = read_values(form, row.data or {})
    spec = form.fields.get(form.title_field)
    title = spec.kind.to_text(values.get(form.title_field)) if spec is not None and values.get(form.title_field) is not None else ""
    return Held(row.id, row.unit_id, row.unit_path, row.unit_name, values, title or f"#{row.id}")


def _live(s: DbSession, spec: CertificateSpec, record_id: int) -> bool:
    return s.scalar(select(Certificate.id).where(Certificate.live_key == _live_key(spec, record_id))) is not None


def _live_key(spec: CertificateSpec, record_id: int) -> str:
    return f"{spec.key}:{record_id}"


def _school(s: DbSession, spec: CertificateSpec, record: Held) -> str:
    """The name of the record's unit at the layout's school level (or of the record's own unit)."""
    if not spec.layout.school_level:
        return record.unit_name
    name = s.scalar(select(OrgUnit.name).where(OrgUnit.id.in_(ancestor_ids(record.unit_path)),
                                               OrgUnit.level == spec.layout.school_level))
    return name or record.unit_name


def _level_label(definitions: Definitions, level: str) -> str:
    return next((lv.label for lv in definitions.org_levels if lv.key == level), level)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _issued(row: Certificate) -> Issued:
    content = json.loads(row.content)
    return Issued(
        id=row.id, kind=row.kind, title=content.get("t", ""), number=row.number, status=row.status, holder=row.holder,
        school=row.school, record_id=row.record_id, issued_on=row.issued_on, issued_at=row.issued_at,
        issued_name=row.issued_name, ended_at=row.ended_at, ended_name=row.ended_name, end_reason=row.end_reason,
        replaces_id=row.replaces_id, application_id=row.application_id,
        fields=tuple((key, label, value) for key, label, value in content.get("f", [])),
    )
