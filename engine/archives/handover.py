"""Handing a record over to another unit of this installation (`on_approve.hand_over`; 升学衔接).

An approved workflow whose effects say `hand_over` offers its record to the unit the application chose (the school
a graduate goes on to): a `handovers` row, pending, written in the approving transaction. Holders of the
`confirm_by` role in that unit see it in their incoming list and may read the record with its child records and
attachments (through `reader`: their own role's view, narrowed to that one record and what belongs to it), then
confirm (录取确认) or decline with a reason. Confirming moves the record to the receiving unit through
RecordService.update — the one write path: audited, child records moved with it — and sets the fields `on_confirm`
names, and creates the records `on_confirm.create` names (the receiving school's 学籍异动记录) in the same
transaction. The row stays: the sender's log of what it sent and where, the receiver's of what it took.
"""
from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

from sqlalchemy import Row, and_, false, func, or_, select, update
from sqlalchemy.orm import Session as DbSession

from engine.documents import read_values
from engine.expressions import holds
from engine.issues import Issue
from engine.listing import PER_PAGE, Listing
from engine.messages import render
from engine.org import Unit, all_units, ancestor_ids
from engine.permissions import Principal, scope
from engine.records import RecordService, StoredRecord
from engine.refusals import NotFound, Refused
from engine.spec import Definitions, FormPolicy, FormSpec, RoleSpec
from engine.storage.models import Application, Handover, OrgUnit, Record, utcnow
from engine.workflows import versions
from engine.workflows.effects import create_linked, units_of
from engine.workflows.errors import EffectFailed, ScopeUnresolved
from engine.workflows.routing import Context

REASON_LIMIT = 500
STATUS_LABELS = {"pending": "待确认", "confirmed": "已确认录取", "declined": "已退回"}
_TABLE = Handover.__table__


class HandoverNotFound(NotFound):
    code = "handover_not_found"


class NotReceiver(Refused):
    """Only a holder of the confirming role in the receiving unit confirms or declines (never the sender)."""

    code, kind = "handover_not_receiver", "forbidden"


class AlreadyDecided(Refused):
    code, kind = "handover_decided", "conflict"


class RecordMovedAway(Refused):
    code, kind = "handover_moved", "conflict"


class PlacementInvalid(Refused):
    code, kind = "handover_placement", "invalid"


class ReasonRequired(Refused):
    code, kind = "handover_reason", "invalid"


class ConfirmFailed(Refused):
    code, kind = "handover_failed", "invalid"


# --- on approval ------------------------------------------------------------------------------------------------
def hand_over_on_approval(s: DbSession, spec: Any, app: Any, names: Callable[[], Mapping[str, Any]],
                          principal: Principal) -> list[str]:
    """The workflow's one hook (engine/workflows/service.py `_apply`): a pending handover of the approved record to
    the chosen unit, in the approving transaction. Returns the timeline's note."""
    hand = spec.effects.hand_over
    if hand is None or app.chosen_unit_id is None:
        return []
    if hand.when is not None and not holds(hand.when, names()):
        return []
    record = s.execute(select(Record.unit_id, OrgUnit.path).join(OrgUnit, OrgUnit.id == Record.unit_id)
                       .where(Record.id == app.record_id)).first()
    to = s.execute(select(OrgUnit.id, OrgUnit.path, OrgUnit.level).where(OrgUnit.id == app.chosen_unit_id)).first()
    if record is None or to is None:
        return []
    # The sender is the record's unit at the chosen unit's level (its school, for a school chosen): what it sent
    # stays in that unit's log whichever class the record was in.
    sender = _ancestor_at(s, record.path, to.level) or (record.unit_id, record.path)
    form_fields = spec.target.fields
    on_confirm = {k: form_fields[k].kind.to_json(v) for k, v in hand.on_confirm.items()}
    to_name = _full_name(s, to.path)
    s.execute(_TABLE.insert().values(
        form_key=app.form_key, record_id=app.record_id, application_id=app.id, workflow_key=spec.key,
        subject=app.subject, from_unit_id=sender[0], from_path=sender[1], from_name=_full_name(s, sender[1]),
        to_unit_id=to.id, to_path=to.path, to_name=to_name, confirm_role=hand.confirm_by, on_confirm=on_confirm,
        status="pending", sent_by=principal.user_id, sent_name=principal.display_name, sent_at=utcnow(),
        decided_name="", reason="", placed_name=""))
    return [f"档案已交给{to_name}，待其确认录取"]


def _ancestor_at(s: DbSession, path: str, level: str) -> tuple[int, str] | None:
    row = s.execute(select(OrgUnit.id, OrgUnit.path).where(OrgUnit.id.in_(ancestor_ids(path)), OrgUnit.level == level)).first()
    return (row.id, row.path) if row is not None else None


def _full_name(s: DbSession, path: str) -> str:
    names = dict(s.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(ancestor_ids(path)))).all())
    return "/".join(names.get(i, "?") for i in ancestor_ids(path))


# --- the receiving and the sending side ---------------------------------------------------------------------------
def receives(principal: Principal, row: Any) -> bool:
    """Whether the principal confirms for the receiving unit: the confirming role, in that unit or above it."""
    return any(r.key == row.confirm_role for r in principal.roles) and any(row.to_path.startswith(p) for p in principal.unit_paths)


def _incoming(principal: Principal) -> Any:
    roles = sorted({r.key for r in principal.roles})
    if not roles or not principal.unit_paths:
        return false()
    return and_(Handover.confirm_role.in_(roles),
                or_(*(Handover.to_path.startswith(p, autoescape=True) for p in sorted(principal.unit_paths))))


def _sent(definitions: Definitions, principal: Principal) -> Any:
    """Handovers from units in the principal's read scope of their form."""
    parts = []
    for form in definitions.forms.values():
        reach = scope(principal, "read", form)
        if reach.everything:
            parts.append(Handover.form_key == form.key)
        elif reach.paths:
            parts.append(and_(Handover.form_key == form.key,
                              or_(*(Handover.from_path.startswith(p, autoescape=True) for p in sorted(reach.paths)))))
    return or_(*parts) if parts else false()


def reader(principal: Principal, row: Any) -> Principal:
    """The receiver's view of a pending handover's record: their confirming role's own read policy (its hidden and
    masked fields stay so), reaching that one record and the child records that belong to it, nothing else."""
    roles = []
    for role in principal.roles:
        if role.key != row.confirm_role:
            continue
        forms = {k: replace(p, actions=frozenset({"read"}), scope="linked") for k, p in role.forms.items() if "read" in p.actions}
        roles.append(replace(role, key=f"_handover_{role.key}", scope="linked", admin=False, issue_reset_codes=False, forms=MappingProxyType(forms)))
    return Principal(principal.user_id, principal.username, principal.display_name, tuple(roles),
                     linked=MappingProxyType({row.form_key: frozenset({row.record_id})}))


def _acting(principal: Principal, form: FormSpec) -> Principal:
    """The confirming user acting for the handover: may update the record anywhere (the audit keeps their name)."""
    role = RoleSpec(key="_handover", name="升学衔接", scope="all",
                    forms=MappingProxyType({form.key: FormPolicy(actions=frozenset({"read", "update"}), reveal_sensitive=True)}))
    return Principal(principal.user_id, principal.username, principal.display_name, (role,))


class HandoverService:
    def __init__(self, db: Any, records: RecordService) -> None:
        self.db, self.records = db, records

    def _units(self, s: DbSession | None = None) -> list[Unit]:
        tree = getattr(self.records, "org_tree", None)
        if tree is not None:
            return tree.units()
        if s is not None:
            return all_units(s)
        with self.db.read() as read:
            return all_units(read)

    # --- reading ----------------------------------------------------------------------------------------------
    def incoming(self, principal: Principal, status: str = "pending", page: int = 1) -> Listing:
        """Handovers to the principal's units for a role they hold: pending ones, or the ones decided ("done")."""
        wanted = Handover.status == "pending" if status == "pending" else Handover.status != "pending"
        return self._listing(and_(_incoming(principal), wanted), page)

    def count_incoming(self, principal: Principal) -> int:
        """Pending handovers to the principal's units (the navigation's badge)."""
        with self.db.read() as s:
            return s.scalar(select(func.count()).select_from(_TABLE).where(
                _incoming(principal), Handover.status == "pending")) or 0

    def sent(self, definitions: Definitions, principal: Principal, page: int = 1) -> Listing:
        """What the principal's units handed over, however it ended: the sender's log (with the reason of a decline)."""
        return self._listing(_sent(definitions, principal), page)

    def _listing(self, condition: Any, page: int) -> Listing:
        page = max(1, page)
        with self.db.read() as s:
            total = s.scalar(select(func.count()).select_from(_TABLE).where(condition)) or 0
            rows = s.execute(select(_TABLE).where(condition).order_by(Handover.id.desc())
                             .limit(PER_PAGE).offset((page - 1) * PER_PAGE)).all()
        return Listing([dict(r._mapping) for r in rows], total, page)

    def get(self, definitions: Definitions, principal: Principal, handover_id: int) -> Row:
        """The handover if the principal receives it or its sending unit is in their read scope (else not found)."""
        with self.db.read() as s:
            row = s.execute(select(_TABLE).where(Handover.id == handover_id)).first()
        form = definitions.forms.get(row.form_key) if row is not None else None
        if row is None or form is None:
            raise HandoverNotFound()
        if receives(principal, row) or scope(principal, "read", form).contains(row.from_path, None, principal.user_id):
            return row
        raise HandoverNotFound()

    def record(self, definitions: Definitions, principal: Principal, row: Row) -> tuple[Principal, StoredRecord] | None:
        """The pending handover's record as its receiver reads it (None: not the receiver, not pending, or gone)."""
        if row.status != "pending" or not receives(principal, row):
            return None
        viewer = reader(principal, row)
        found = self.records.get(definitions.forms[row.form_key], row.record_id, viewer, "read")
        return (viewer, found) if found is not None else None

    def placements(self, definitions: Definitions, row: Any) -> list[Unit]:
        """Units of the receiving unit the record may be placed in: itself, or those below it at the form's level."""
        form = definitions.forms[row.form_key]
        units = self._units()
        to = next((u for u in units if u.id == row.to_unit_id), None)
        if to is None:
            return []
        if not form.unit_level or to.level == form.unit_level:
            return [to]
        return [u for u in units if u.level == form.unit_level and u.path.startswith(to.path)]

    # --- deciding ---------------------------------------------------------------------------------------------
    def confirm(self, definitions: Definitions, principal: Principal, handover_id: int, unit_id: int | None,
                remark: str = "") -> Row:
        """录取确认: the record (and its child records) moves to `unit_id` in the receiving unit, with the fields
        `on_confirm` sets, in one transaction with the handover's new status."""
        row = self._decidable(definitions, principal, handover_id)
        options = self.placements(definitions, row)
        if unit_id is None and len(options) == 1:
            unit_id = options[0].id
        place = next((u for u in options if u.id == unit_id), None)
        if place is None:
            raise PlacementInvalid(unit=definitions.forms[row.form_key].unit_label)
        remark = remark.strip()[:REASON_LIMIT]
        form = definitions.forms[row.form_key]
        target = _writable(form, row.on_confirm)
        acting = _acting(principal, target)
        with self.db.write() as s:
            self._close(s, row, principal, "confirmed", remark, place)
            current = self.records.get(target, row.record_id, acting, "update", session=s, lock=True)
            if current is None or not current.unit_path.startswith(row.from_path):
                raise RecordMovedAway(unit=row.from_name)
            submitted = {k: target.fields[k].kind.from_json(v) for k, v in (row.on_confirm or {}).items() if k in target.fields}
            result = self.records.update(target, acting, row.record_id, submitted, current.revision, unit_id=place.id,
                                         session=s, current=current,
                                         note=f"升学衔接 #{row.id}：{row.to_name} 确认录取（由 {row.from_name} 转来）")
            if not result.ok:
                problems = result.issues or [Issue("conflict", {"who": "他人", "when": "刚才"})]
                raise ConfirmFailed(detail="；".join(_issue_text(target, i) for i in problems))
            self._create_on_confirm(s, definitions, row, principal)
            s.commit()
        return self.get(definitions, principal, handover_id)

    def _create_on_confirm(self, s: DbSession, definitions: Definitions, row: Row, principal: Principal) -> None:
        """`on_confirm.create` of the workflow version the application ran on, through the runner of
        `on_approve.create`: expressions over the application and the record as confirmed, units as at submission."""
        app = s.get(Application, row.application_id) if row.application_id is not None else None
        if app is None:
            return
        spec = versions.spec_for(s, definitions, app.workflow_key, app.version)
        hand = spec.effects.hand_over
        if hand is None or not hand.create:
            return
        form = definitions.forms[row.form_key]
        record = read_values(form, s.scalar(select(Record.data).where(Record.id == row.record_id)) or {})
        units = units_of(app.units)
        names = Context(read_values(spec.application, app.data or {}), record, units, app.applicant_id).names()
        try:
            create_linked(s, self.records, definitions, form, hand.create, names, units, row.record_id, principal)
        except (EffectFailed, ScopeUnresolved) as exc:
            raise ConfirmFailed(detail=exc.params.get("detail") or exc.message) from exc

    def decline(self, definitions: Definitions, principal: Principal, handover_id: int, reason: str) -> Row:
        """Declined with a reason: the record stays with the sender, which sees the reason in its log."""
        row = self._decidable(definitions, principal, handover_id)
        reason = reason.strip()
        if not reason or len(reason) > REASON_LIMIT:
            raise ReasonRequired(limit=REASON_LIMIT)
        with self.db.write() as s:
            self._close(s, row, principal, "declined", reason, None)
            s.commit()
        return self.get(definitions, principal, handover_id)

    def _decidable(self, definitions: Definitions, principal: Principal, handover_id: int) -> Row:
        row = self.get(definitions, principal, handover_id)
        if not receives(principal, row):
            raise NotReceiver(role=definitions.roles[row.confirm_role].name if row.confirm_role in definitions.roles
                              else row.confirm_role, unit=row.to_name)
        if row.status != "pending":
            raise AlreadyDecided(status=STATUS_LABELS.get(row.status, row.status))
        return row

    @staticmethod
    def _close(s: DbSession, row: Row, principal: Principal, status: str, reason: str, place: Unit | None) -> None:
        """The handover's new status, first in the transaction: of two decisions at once only one finds it pending."""
        done = s.execute(update(_TABLE).where(Handover.id == row.id, Handover.status == "pending").values(
            status=status, decided_by=principal.user_id, decided_name=principal.display_name, decided_at=utcnow(),
            reason=reason, placed_unit_id=place.id if place else None, placed_name=place.full_name if place else ""))
        if done.rowcount != 1:
            raise AlreadyDecided(status="已由他人处理")


def _writable(form: FormSpec, on_confirm: Mapping[str, Any] | None) -> FormSpec:
    """The form with the fields `on_confirm` sets writable (`readonly` keeps people out, not the handover)."""
    keys = {k for k in (on_confirm or {}) if k in form.fields and form.fields[k].readonly}
    if not keys:
        return form
    return replace(form, fields=MappingProxyType({k: replace(f, readonly=False) if k in keys else f for k, f in form.fields.items()}))


def _issue_text(form: FormSpec, issue: Issue) -> str:
    spec = form.fields.get(issue.path.split(".")[0])
    return render(issue, spec.label if spec else "", spec.messages if spec else None)
