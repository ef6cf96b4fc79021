"""Archive packages between installations: export a form's records with their child records (belongs_to), history and
attachments, signed; import one into other definitions, with a preview, all or nothing, through RecordService.

Nothing here knows what a record is about: the forms, which of them belong to which, and which fields identify a
record (its form's unique fields; a child's natural key) all come from the definitions of each side.

Export: the principal needs `export` on the form and on every form that belongs to it (a package without the
grades would look complete and not be); fields hidden or masked for the principal are left out and named in the
manifest (`withheld`).
Import: each sender form goes to the receiver's form of the same key (or the mapping's); each sender field to the
receiver's field found the way an Excel header is (engine/excel/layout.py:key_lookup: key, a key the field was
renamed from, its label) or named in the mapping. A record is matched with an existing one by a unique field (a
child by its form's natural key under the same parent). The preview says, for every record, whether it is created,
the same as what is there, or differs (and how); fields that could not be placed are listed. Applying runs the same
plan again in one write transaction and writes through RecordService.create/update; one refused record rolls back
everything. Existing records are changed only when the caller asks to overwrite (after seeing the differences), and
when the caller passes the digest of the plan it saw, only if the plan is still that one.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from engine.archives.package import Package, read_package, write_package
from engine.certificates.signing import KeyStore
from engine.documents import read_values
from engine.excel.layout import UNIT_KEY, header_text, key_lookup
from engine.fields.files import UploadedFile
from engine.fields.link import LinkRef
from engine.issues import Issue
from engine.messages import render
from engine.org import ancestor_ids
from engine.permissions import Principal, can, is_masked, policy, scope, writable_keys
from engine.records.model import StoredRecord
from engine.records.service import RecordService
from engine.refusals import NotFound, NotPermitted, Refused
from engine.spec import Definitions, FieldSpec, FormSpec
from engine.storage.models import Attachment, AuditEntry, OrgUnit, Record
from engine.storage.projection import projection_of
from engine.validation import clean_record

FILE_TYPES = ("file", "image")
_PLACEHOLDER_ID = 1  # a new parent's id while a preview validates its children (the real one exists only once written)


class ExportRefused(Refused):
    code, kind = "archive_export_refused", "forbidden"


class NothingToExport(Refused):
    code, kind = "archive_empty", "invalid"


class ImportRefused(Refused):
    """The plan has problems (records that cannot be placed or are invalid), or a write was refused: nothing written."""

    code, kind = "archive_import_refused", "invalid"


class PlanChanged(Refused):
    code, kind = "archive_plan_changed", "conflict"


class MappingInvalid(Refused):
    code, kind = "archive_mapping_invalid", "invalid"


# --- plans --------------------------------------------------------------------------------------------------------
@dataclass
class FieldPlace:
    key: str  # the sender's
    label: str
    target: str | None  # the receiver's field, or None: not placed
    reason: str = ""  # why not placed


@dataclass
class FormPlan:
    key: str  # the sender's
    title: str
    target: FormSpec | None
    fields: list[FieldPlace]
    parent_field: str = ""  # the sender's belongs_to field
    reason: str = ""  # why the form could not be placed
    skipped: bool = False  # left out by the mapping (`forms: {key: null}`)

    @property
    def unplaced(self) -> list[FieldPlace]:
        return [f for f in self.fields if f.target is None]


@dataclass
class Difference:
    label: str
    old: str
    new: str


@dataclass
class RecordPlan:
    form: str  # the sender's form key
    sender_id: int
    title: str
    parent: int | None  # the sender's id of the parent record
    action: str = "create"  # create | same | update (differs) | refused
    target: FormSpec | None = None
    existing: StoredRecord | None = None
    submitted: dict[str, Any] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class ImportPlan:
    package: Package
    forms: list[FormPlan]
    records: list[RecordPlan]
    overwrite: bool

    @property
    def ok(self) -> bool:
        return not any(f.target is None and not f.skipped for f in self.forms) and not any(r.problems for r in self.records)

    @property
    def problems(self) -> list[str]:
        found = [f"表单“{f.title}”：{f.reason}" for f in self.forms if f.target is None and not f.skipped]
        found += [f"{r.title}：{p}" for r in self.records for p in r.problems]
        return found

    @property
    def omitted(self) -> Mapping[str, str]:
        """Child forms the sender left out (its exporter had no export right on them): form key -> title."""
        return self.package.manifest.get("omitted", {})

    def count(self, action: str) -> int:
        return sum(1 for r in self.records if r.action == action)

    @property
    def digest(self) -> str:
        """What the plan would do, as one digest: applying with it refuses a plan that has changed since."""
        shown = [[r.form, r.sender_id, r.action, r.existing.id if r.existing else None,
                  r.existing.revision if r.existing else None, [[d.label, d.old, d.new] for d in r.differences]]
                 for r in self.records]
        shown.append([[f.key, [[p.key, p.target] for p in f.fields]] for f in self.forms])
        shown.append([self.package.digest, self.overwrite])
        return hashlib.sha256(json.dumps(shown, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


@dataclass
class ImportResult:
    plan: ImportPlan
    created: int
    updated: int
    ids: dict[tuple[str, int], int]  # (sender form, sender id) -> receiver record id


@dataclass(frozen=True)
class Mapping_:
    """What the importing user says where the automatic placing cannot: sender form -> receiver form, and per sender
    form, sender field -> receiver field (or None: leave it out)."""

    forms: Mapping[str, str | None] = field(default_factory=dict)
    fields: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Any) -> "Mapping_":
        if data is None:
            return cls()
        if not isinstance(data, Mapping) or not set(data) <= {"forms", "fields"}:
            raise MappingInvalid(detail="映射只能有 forms 和 fields 两项")
        forms, fields = data.get("forms") or {}, data.get("fields") or {}
        if not isinstance(forms, Mapping) or not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in forms.items()):
            raise MappingInvalid(detail="forms 应写成“发送方表单键: 本系统表单键（或留空表示不导入）”")
        if not isinstance(fields, Mapping) or not all(
                isinstance(v, Mapping) and all(isinstance(a, str) and (b is None or isinstance(b, str)) for a, b in v.items())
                for v in fields.values()):
            raise MappingInvalid(detail="fields 应写成“发送方表单键: {发送方字段键: 本系统字段键（或留空表示不导入）}”")
        return cls(dict(forms), {k: dict(v) for k, v in fields.items()})


class ArchiveService:
    def __init__(self, db: Any, records: RecordService, keys: KeyStore) -> None:
        self.db, self.records, self.keys = db, records, keys

    # --- export -------------------------------------------------------------------------------------------------
    def export(self, definitions: Definitions, principal: Principal, form_key: str, record_ids: Iterable[int] = (),
               unit_id: int | None = None) -> bytes:
        """The signed package of these records of `form_key` (or of every record in `unit_id`'s subtree — a class —
        that the principal's export scope reaches; the unit itself must be inside that scope) with the records of every
        form that belongs to it. One package holds them all: the receiver previews and imports them at once."""
        form = definitions.forms.get(form_key)
        if form is None:
            raise NotFound()
        if form.parent_field:  # a child record travels in its parent's package: the archive it belongs to
            return self.export(definitions, principal, form.parent_form, self._parents(form, principal, list(record_ids), unit_id))
        if not can(principal, "export", form):
            raise ExportRefused(form=form.title)
        related = [c for c in definitions.forms.values() if c.parent_field and c.parent_form == form.key]
        # A child form the principal may not export stays out, named in the manifest, so that the receiver is told.
        children = [c for c in related if can(principal, "export", c)]
        omitted = {c.key: c.title for c in related if c not in children}
        with self.db.read() as s:
            roots = self._roots(s, form, principal, list(record_ids), unit_id)
            if not roots:
                raise NothingToExport()
            found = {form.key: roots}
            for child in children:
                column = projection_of(child, self.db.dialect).column(child.parent_field)
                query = self.records.read_query(child, principal, "export").where(
                    Record.id.in_(select(column.table.c.record_id).where(column.in_([r.id for r in roots]))))
                found[child.key] = self.records.stored_rows(child, s.connection().execute(query.order_by(Record.id)).all())
            for each in (form, *children):
                self.records.links.titled(s, principal, definitions.forms[each.key], found[each.key])
            entries, files = self._history(s, found), {}
            records = []
            for each in (form, *children):
                withheld = _withheld(principal, each)
                for record in found[each.key]:
                    records.append(self._entry(s, each, record, withheld, entries.get((each.key, record.id), []), files))
            unit_names = sorted({_full_name(s, r.unit_path) for r in roots})
        manifest = {
            "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "sender": {"user": principal.username, "units": unit_names},
            "definitions_version": definitions.version,
            "root": form.key,
            "forms": {each.key: _form_manifest(each) for each in (form, *children)},
            "withheld": {each.key: sorted(_withheld(principal, each)) for each in (form, *children) if _withheld(principal, each)},
            "counts": {key: len(rows) for key, rows in found.items()},
            "omitted": omitted,
        }
        return write_package(manifest, records, files, self.keys)

    def _parents(self, form: FormSpec, principal: Principal, ids: list[int], unit_id: int | None) -> list[int]:
        with self.db.read() as s:
            children = self._roots(s, form, principal, ids, unit_id)
        return sorted({c.data[form.parent_field] for c in children if isinstance(c.data.get(form.parent_field), int)})

    def _roots(self, s: DbSession, form: FormSpec, principal: Principal, ids: list[int], unit_id: int | None) -> list[StoredRecord]:
        query = self.records.read_query(form, principal, "export")
        if ids:
            rows = s.connection().execute(query.where(Record.id.in_(ids))).all()
            if len(rows) != len(set(ids)):
                raise NotFound()
        else:
            path = s.scalar(select(OrgUnit.path).where(OrgUnit.id == unit_id)) if unit_id is not None else None
            reach = scope(principal, "export", form)
            # A unit outside the export scope is not found (a unit above it is not a way to a wider export either).
            inside = reach.paths | (principal.unit_paths if reach.own else set())
            if path is None or not (reach.everything or any(path.startswith(p) for p in inside)):
                raise NotFound()
            rows = s.connection().execute(query.where(OrgUnit.path.startswith(path, autoescape=True))).all()
        return sorted(self.records.stored_rows(form, rows), key=lambda r: r.id)

    @staticmethod
    def _history(s: DbSession, found: Mapping[str, list[StoredRecord]]) -> dict[tuple[str, int], list[AuditEntry]]:
        entries: dict[tuple[str, int], list[AuditEntry]] = {}
        for form_key, rows in found.items():
            ids = [r.id for r in rows]
            for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
                for entry in s.scalars(select(AuditEntry).where(AuditEntry.form_key == form_key, AuditEntry.record_id.in_(chunk))
                                       .order_by(AuditEntry.id)):
                    entries.setdefault((form_key, entry.record_id), []).append(entry)
        return entries

    def _entry(self, s: DbSession, form: FormSpec, record: StoredRecord, withheld: set[str],
               history: list[AuditEntry], files: dict[str, bytes]) -> dict[str, Any]:
        values, texts, attached, links = {}, {}, {}, {}
        stored = read_values(form, record.data)
        for key, spec in form.fields.items():
            value = stored.get(key)
            if key in withheld or value is None:
                continue
            if spec.kind.name in FILE_TYPES and isinstance(value, Mapping):
                attachment = s.get(Attachment, value.get("id"))
                if attachment is None:
                    continue
                files[attachment.sha256] = attachment.content
                attached[key] = {"name": attachment.filename, "type": attachment.content_type,
                                 "size": attachment.size, "sha256": attachment.sha256}
                continue
            values[key] = spec.kind.to_json(value)
            texts[key] = spec.kind.to_text(record.values.get(key))
            if spec.kind.name == "link" and key != form.parent_field:
                named = self._named(s, spec.kind.form, value)  # type: ignore[attr-defined]
                if named:
                    links[key] = named
        parent = stored.get(form.parent_field) if form.parent_field else None
        return {
            "form": form.key, "id": record.id, "parent": parent, "unit": record.unit_name,
            "revision": record.revision, "created_at": _iso(record.created_at), "updated_at": _iso(record.updated_at),
            "values": values, "texts": texts, "files": attached, "links": links,
            "history": [{"action": e.action, "user": e.username, "revision": e.revision, "at": _iso(e.at), "note": e.note,
                         "changes": {k: v for k, v in (e.changes or {}).items() if k not in withheld}}
                        for e in history],
        }

    def _named(self, s: DbSession, form_key: str, record_id: int) -> dict[str, str]:
        """A linked record outside the package by what names it anywhere: its unique values (an exam's code), so that
        the receiver can find its own record of the same name."""
        target = self.records.links.forms().get(form_key)
        if target is None:
            return {}
        row = s.execute(select(Record.data).where(Record.id == record_id)).first()
        if row is None:
            return {}
        values = read_values(target, row.data or {})
        keys = [k for k, f in target.fields.items() if f.unique or target.natural_key == (k,)]
        return {k: target.fields[k].kind.to_text(values[k]) for k in keys if values.get(k) is not None}

    # --- import -------------------------------------------------------------------------------------------------
    def preview(self, definitions: Definitions, principal: Principal, data: bytes,
                trusted: Mapping[str, Ed25519PublicKey], unit_id: int | None, mapping: Mapping_ = Mapping_(),
                overwrite: bool = False) -> ImportPlan:
        package = read_package(data, trusted)
        with self.db.read() as s:
            return self._plan(s, definitions, principal, package, unit_id, mapping, overwrite)

    def apply(self, definitions: Definitions, principal: Principal, data: bytes, trusted: Mapping[str, Ed25519PublicKey],
              unit_id: int | None, mapping: Mapping_ = Mapping_(), overwrite: bool = False,
              expected: str | None = None) -> ImportResult:
        """Write what the preview showed, in one transaction: every record or none."""
        package = read_package(data, trusted)
        sender = '、'.join(package.manifest.get('sender', {}).get('units', [])) or '其他系统'
        note = f"档案包导入（来自{sender}，包 {package.digest[:12]}）"
        histories = {(r.get("form"), r.get("id")): r.get("history") or [] for r in package.records}
        with self.db.write() as s:
            plan = self._plan(s, definitions, principal, package, unit_id, mapping, overwrite)
            if expected is not None and plan.digest != expected:
                raise PlanChanged()
            if not plan.ok:
                raise ImportRefused(problems="；".join(plan.problems[:20]))
            ids: dict[tuple[str, int], int] = {}
            created = updated = 0
            for item in plan.records:
                target = item.target
                if target is None:  # a form the mapping leaves out
                    continue
                submitted = dict(item.submitted)
                if target.parent_field and item.parent is not None:
                    parent_form = next(f.key for f in plan.forms if f.target is not None and f.target.key == target.parent_form)
                    submitted[target.parent_field] = ids[(parent_form, item.parent)]
                places = {f.key: f for f in plan.forms}
                kept = self._sender_history(s, target, places[item.form], histories.get((item.form, item.sender_id), []),
                                            sender, item.existing.id if item.existing is not None else 0) \
                    if item.action == "create" or (item.action == "update" and overwrite) else []
                if item.action == "create":
                    result = self.records.create(target, principal, None if target.parent_field else unit_id, submitted,
                                                 session=s, note=note)
                    created += 1
                elif item.action == "update" and overwrite:
                    assert item.existing is not None
                    changed = {k: v for k, v in submitted.items() if k != target.parent_field}
                    result = self.records.update(target, principal, item.existing.id, changed, item.existing.revision,
                                                 session=s, note=note, current=item.existing)
                    updated += 1
                else:
                    if item.existing is not None:
                        ids[(item.form, item.sender_id)] = item.existing.id
                    continue
                if not result.ok:
                    s.rollback()
                    problems = [_issue_text(target, i) for i in result.issues] or ["保存时记录正被他人修改"]
                    raise ImportRefused(problems=f"{item.title}：{'；'.join(problems)}")
                ids[(item.form, item.sender_id)] = result.record_id  # type: ignore[assignment]
                for entry in kept:  # written before the record, so that they come first in its history
                    entry.record_id = result.record_id  # type: ignore[assignment]
            s.commit()
        return ImportResult(plan, created, updated, ids)

    @staticmethod
    def _sender_history(s: DbSession, target: FormSpec, form_plan: FormPlan, history: list[Mapping[str, Any]],
                        sender: str, record_id: int) -> list[AuditEntry]:
        """The sender's history of one record as audit entries of the receiver's record, marked as the sender's
        (action "sender", the sender's user and units named): changes of fields the plan placed, under the receiver's
        keys; a move between the sender's units means nothing here and is left out. Entries an earlier import of
        the same record already brought are not brought again. Flushed now, so that their ids come before the
        record's own entry; `record_id` 0 (a record still to create) is set by the caller once it exists."""
        places = {f.key: f.target for f in form_plan.fields if f.target is not None}
        present = set()
        if record_id:
            present = {(e.at, e.revision, e.username) for e in s.scalars(select(AuditEntry).where(
                AuditEntry.form_key == target.key, AuditEntry.record_id == record_id, AuditEntry.action == "sender"))}
        entries = []
        for item in history:
            at = _moment(item.get("at"))
            user = f"{str(item.get('user', ''))[:60]}（发送方）"
            if (at, item.get("revision", 1), user) in present:
                continue
            changes = {places[k]: v for k, v in (item.get("changes") or {}).items() if k in places}
            label = {"create": "创建", "update": "修改"}.get(str(item.get("action")), str(item.get("action", "")))
            entry = AuditEntry(form_key=target.key, record_id=record_id, action="sender", user_id=None, username=user,
                               at=at, revision=int(item.get("revision") or 1), changes=changes,
                               note="；".join(p for p in (f"发送方（{sender}）的记录：{label}", str(item.get("note") or "")) if p))
            s.add(entry)
            entries.append(entry)
        s.flush()
        return entries

    def _plan(self, s: DbSession, definitions: Definitions, principal: Principal, package: Package,
              unit_id: int | None, mapping: Mapping_, overwrite: bool) -> ImportPlan:
        root = package.manifest.get("root", "")
        forms = [self._form_plan(definitions, principal, key, meta, mapping, package.manifest.get("withheld", {}).get(key, []))
                 for key, meta in sorted(package.forms.items(), key=lambda item: (item[0] != root, item[0]))]
        by_key = {f.key: f for f in forms}
        root_target = by_key[root].target if root in by_key else None
        if root_target is not None and unit_id is not None and not RecordService._unit_allowed(s, root_target, principal, "create", unit_id):
            raise ImportRefused(problems=render(Issue("unit_not_allowed", {"unit_label": root_target.unit_label})))
        plans: list[RecordPlan] = []
        placed: dict[tuple[str, int], RecordPlan] = {}
        ordered = sorted(package.records, key=lambda r: (r.get("form") != root, r.get("id", 0)))
        for entry in ordered:
            form_plan = by_key.get(entry.get("form", ""))
            if form_plan is None:
                raise ImportRefused(problems=f"记录 #{entry.get('id')} 的表单“{entry.get('form')}”不在清单中")
            item = RecordPlan(form_plan.key, int(entry["id"]), _title(package, form_plan, entry),
                              entry.get("parent"), target=form_plan.target)
            plans.append(item)
            placed[(form_plan.key, item.sender_id)] = item
            if form_plan.target is None:
                item.action = "skipped" if form_plan.skipped else "refused"
                continue
            parent = placed.get((root, item.parent)) if form_plan.parent_field and item.parent is not None else None
            self._plan_record(s, principal, package, form_plan, entry, item, parent, unit_id)
        return ImportPlan(package, forms, plans, overwrite)

    def _form_plan(self, definitions: Definitions, principal: Principal, key: str, meta: Mapping[str, Any],
                   mapping: Mapping_, withheld: list[str]) -> FormPlan:
        title = str(meta.get("title", key))
        fields = meta.get("fields", {})
        plan = FormPlan(key, title, None, [], str(meta.get("parent_field", "")))
        if key in mapping.forms and mapping.forms[key] is None:
            plan.skipped = True
            plan.reason = "映射中指定不导入这个表单的记录"
            plan.fields = [FieldPlace(k, str(m.get("label", k)), None, "表单不导入") for k, m in fields.items()]
            return plan
        target = definitions.forms.get(mapping.forms.get(key, key))  # type: ignore[arg-type]
        if target is None:
            plan.reason = f"本系统没有对应的表单（发送方表单键“{key}”；可在映射中指定）"
            plan.fields = [FieldPlace(k, str(m.get("label", k)), None, "表单无法对应") for k, m in fields.items()]
            return plan
        if not can(principal, "import", target):
            raise NotPermitted()
        if bool(plan.parent_field) != bool(target.parent_field):
            plan.reason = f"本系统的“{target.title}”{'不' if plan.parent_field else ''}是从属于上级记录的表单，与发送方不一致"
            return plan
        plan.target = target
        names = key_lookup(target)
        explicit = mapping.fields.get(key, {})
        for name, wanted in explicit.items():
            if wanted is not None and wanted not in target.fields:
                raise MappingInvalid(detail=f"“{target.title}”没有字段“{wanted}”（映射中 {key}.{name}）")
        found = policy(principal, target)
        writable = writable_keys(found, target) if found else frozenset()
        taken: set[str] = set()
        for field_key, meta_field in fields.items():
            label = str(meta_field.get("label", field_key))
            if field_key == plan.parent_field:
                plan.fields.append(FieldPlace(field_key, label, target.parent_field))
                continue
            if field_key in withheld:
                plan.fields.append(FieldPlace(field_key, label, None, "发送方未提供（对导出人隐藏或脱敏）"))
                continue
            if field_key in explicit:
                wanted = explicit[field_key]
            else:
                wanted = names.get(header_text(field_key)) or names.get(header_text(label))
                wanted = None if wanted == UNIT_KEY else wanted
            if wanted is None:
                reason = "映射中指定不导入" if field_key in explicit else "本系统的表单中没有对应字段"
                plan.fields.append(FieldPlace(field_key, label, None, reason))
            elif wanted in taken:
                plan.fields.append(FieldPlace(field_key, label, None, f"“{target.fields[wanted].label}”已由另一字段对应"))
            elif wanted == target.parent_field:
                plan.fields.append(FieldPlace(field_key, label, None, "关联到档案包以外的记录，无法对应"))
            elif wanted not in writable:
                plan.fields.append(FieldPlace(field_key, label, None,
                                              f"本系统的“{target.fields[wanted].label}”不能由导入填写（自动生成、计算或只读）"))
            else:
                taken.add(wanted)
                plan.fields.append(FieldPlace(field_key, label, wanted))
        return plan

    def _plan_record(self, s: DbSession, principal: Principal, package: Package, form_plan: FormPlan,
                     entry: Mapping[str, Any], item: RecordPlan, parent: RecordPlan | None, unit_id: int | None) -> None:
        target = form_plan.target
        assert target is not None
        values, texts, files = entry.get("values", {}), entry.get("texts", {}), entry.get("files", {})
        for place in form_plan.fields:
            if place.target is None or place.target == target.parent_field:
                continue
            spec = target.fields[place.target]
            if place.key in files:
                meta = files[place.key]
                content = package.attachments.get(str(meta.get("sha256")))
                if content is not None:
                    item.submitted[place.target] = UploadedFile(str(meta.get("name", "")), str(meta.get("type", "")), content)
            elif spec.kind.name == "link":
                # Found among the receiver's records by the unique value the sender named it with (resolved, and
                # refused when missing, by RecordService when it saves).
                named = entry.get("links", {}).get(place.key, {})
                if named:
                    item.submitted[place.target] = LinkRef(next(iter(named.values())))
                elif place.key in values:
                    item.problems.append(f"{spec.label}：发送方没有给出能找到关联记录的唯一编号")
            elif place.key in values:
                item.submitted[place.target] = _readable(spec, values[place.key], texts.get(place.key))
        parent_id: int | None = None
        if target.parent_field:
            if parent is None or parent.target is None:
                item.problems.append("所属的上级记录不在档案包中")
                return
            parent_id = parent.existing.id if parent.existing is not None else None
        existing = self._existing(s, principal, target, item, parent_id)
        if item.problems:
            return
        base = dict(existing.values) if existing is not None else {k: f.default for k, f in target.fields.items()}
        raw = {**base, **item.submitted}
        if target.parent_field:
            raw[target.parent_field] = parent_id or _PLACEHOLDER_ID
        found = policy(principal, target)
        cleaned = clean_record(target, raw, writable=writable_keys(found, target) if found and existing is None else None)
        item.problems += [_issue_text(target, i) for i in cleaned.issues]
        if existing is None:
            if not target.parent_field and unit_id is None:
                item.problems.append(f"请指定{target.unit_label}")
            return
        item.existing = existing
        item.differences = self._differences(s, target, existing, cleaned.values, item.submitted)
        item.action = "update" if item.differences else "same"

    def _existing(self, s: DbSession, principal: Principal, target: FormSpec, item: RecordPlan,
                  parent_id: int | None) -> StoredRecord | None:
        """The receiver's record this one is: by a unique field (a record of its own), or by the natural key under
        the same parent (a child record; none while the parent is new)."""
        projection = projection_of(target, self.db.dialect)
        table = projection.table
        conditions = []
        if target.parent_field:
            keys = [k for k in target.natural_key if k != target.parent_field]
            if parent_id is None:
                return None
            if not keys:
                return self._same_child(s, principal, target, item, parent_id)
            if any(k not in item.submitted for k in keys):
                return None
            conditions.append(projection.column(target.parent_field) == parent_id)
            for key in keys:
                value, issues = target.fields[key].kind.clean(item.submitted[key])
                if issues or value is None:
                    return None
                conditions.append(projection.column(key) == projection.fields[key].to_sql(value))
            ids = set(s.execute(select(table.c.record_id).where(*conditions)).scalars())
        else:
            ids = set()
            for key, spec in target.fields.items():
                if not spec.unique or key not in item.submitted:
                    continue
                value, issues = spec.kind.clean(item.submitted[key])
                if not issues and value is not None:
                    ids |= set(s.execute(select(table.c.record_id).where(
                        projection.column(key) == projection.fields[key].to_sql(value))).scalars())
        if not ids:
            return None
        if len(ids) > 1:
            item.problems.append("对应本系统中的多条记录（唯一字段指向不同的记录），无法确定是哪一条")
            return None
        found = self.records.get(target, next(iter(ids)), principal, "update", session=s)
        if found is None:
            item.problems.append("本系统中已有这条记录，但不在您可以修改的范围内")
        return found

    def _same_child(self, s: DbSession, principal: Principal, target: FormSpec, item: RecordPlan,
                    parent_id: int) -> StoredRecord | None:
        """A child form without a natural key: an existing child of the same parent holding the same values is this
        record (imported before); anything else is a new one."""
        column = projection_of(target, self.db.dialect).column(target.parent_field)
        query = self.records.read_query(target, principal, "read").where(
            Record.id.in_(select(column.table.c.record_id).where(column == parent_id)))
        for existing in self.records.stored_rows(target, s.connection().execute(query).all()):
            if all(_json(target.fields[k], existing.values.get(k)) == _json(target.fields[k], target.fields[k].kind.clean(v)[0])
                   for k, v in item.submitted.items() if not isinstance(v, (UploadedFile, LinkRef))):
                return existing
        return None

    def _differences(self, s: DbSession, target: FormSpec, existing: StoredRecord, cleaned: Mapping[str, Any],
                     submitted: Mapping[str, Any]) -> list[Difference]:
        found = []
        for key in submitted:
            spec = target.fields[key]
            old, new = existing.values.get(key), cleaned.get(key)
            if isinstance(new, LinkRef):  # which record it names is known only when saved; not a difference shown
                continue
            if isinstance(new, UploadedFile):
                digest = s.scalar(select(Attachment.sha256).where(Attachment.id == old.get("id"))) if isinstance(old, Mapping) else None
                if digest != hashlib.sha256(new.data).hexdigest():
                    found.append(Difference(spec.label, str(old.get("name", "")) if isinstance(old, Mapping) else "", new.filename))
                continue
            if _json(spec, old) != _json(spec, new):
                found.append(Difference(spec.label, _shown(spec, old), _shown(spec, new)))
        return found


# --- helpers ------------------------------------------------------------------------------------------------------
def _withheld(principal: Principal, form: FormSpec) -> set[str]:
    found = policy(principal, form)
    if found is None:
        return set(form.fields)
    return {k for k, spec in form.fields.items() if k in found.hidden or is_masked(found, spec)}


def _form_manifest(form: FormSpec) -> dict[str, Any]:
    return {"title": form.title, "parent_field": form.parent_field, "parent_form": form.parent_form,
            "title_field": form.title_field, "natural_key": list(form.natural_key),
            "fields": {k: {"label": spec.label, "type": spec.kind.name} for k, spec in form.fields.items()}}


def _readable(spec: FieldSpec, value: Any, text: str | None) -> Any:
    """The sender's stored value, or its text as shown when this side's type cannot read the stored one (a choice
    stored by a code this side's options do not use, say)."""
    _, issues = spec.kind.clean(value)
    if issues and text:
        _, text_issues = spec.kind.clean(text)
        if not text_issues:
            return text
    return value


def _title(package: Package, form_plan: FormPlan, entry: Mapping[str, Any]) -> str:
    meta = package.forms.get(form_plan.key, {})
    shown = entry.get("texts", {}).get(meta.get("title_field", ""), "")
    return f"{form_plan.title}“{shown}”" if shown else f"{form_plan.title} #{entry.get('id')}"


def _json(spec: FieldSpec, value: Any) -> Any:
    try:
        return None if value is None else spec.kind.to_json(value)
    except (ValueError, TypeError):
        return value


def _shown(spec: FieldSpec, value: Any) -> str:
    return "" if value is None else spec.kind.to_text(value)


def _issue_text(form: FormSpec, issue: Issue) -> str:
    spec = form.fields.get(issue.path.split(".")[0])
    return render(issue, spec.label if spec else "", spec.messages if spec else None)


def _full_name(s: DbSession, path: str) -> str:
    """"示范区教育局/示范区第一中学/高一/高一(1)班" for a unit's materialised path."""
    ids = ancestor_ids(path)
    names = dict(s.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(ids))).all())
    return "/".join(names.get(i, "?") for i in ids)


def _moment(text: Any) -> dt.datetime:
    """A package's time (ISO text, as `_iso` wrote it) as the naive UTC the audit log keeps; now if unreadable."""
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _iso(moment: dt.datetime | None) -> str:
    return moment.isoformat() if moment else ""
