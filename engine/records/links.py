"""Links between records (engine/fields/link.py): checked and resolved when a record is saved, titled when it is
shown, and in the way of deleting a record others link to.

A link is valid when its target exists, is a record of the field's form and lies in the saving user's read scope
(only a link that changes is checked: a student transferred away keeps the grades that name them). A link given as
text (`LinkRef`: a 学号 typed without JavaScript, an Excel cell) is looked up among the target form's unique values
(and a one-field natural key) within that scope: exactly one record must match.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from engine.documents import read_values
from engine.fields.link import LinkRef, LinkValue
from engine.issues import Issue
from engine.permissions import Principal, is_masked, policy, scope
from engine.records.model import RecordWrite, StoredRecord
from engine.refusals import Refused
from engine.spec import FieldSpec, FormSpec
from engine.storage.models import Record
from engine.storage.projection import projection_of, projection_scope

Forms = Callable[[], Mapping[str, FormSpec]]
USES_SHOWN = 5


class InUse(Refused):
    """Other records link to this one; deleting it would leave them pointing at nothing."""

    code, kind = "link_in_use", "conflict"


def link_fields(form: FormSpec) -> list[FieldSpec]:
    return [spec for spec in form.fields.values() if spec.kind.name == "link"]


class Links:
    def __init__(self, dialect: str, forms: Forms) -> None:
        self.dialect, self.forms = dialect, forms

    # --- saving ---------------------------------------------------------------------------------------------
    def check(self, s: DbSession, principal: Principal, form: FormSpec, writes: Iterable[RecordWrite]) -> None:
        """Resolve named links to ids and refuse links to records that are missing or out of reach (an issue on
        the write's field)."""
        pending = [w for w in writes if not w.failed]
        for spec in link_fields(form):
            key = spec.key
            changed = [w for w in pending if w.values.get(key) is not None and not _unchanged(spec, w)]
            if not changed:
                continue
            target = self.forms().get(spec.kind.form)  # type: ignore[attr-defined]
            found = self._reachable(s, principal, target, {w.values[key] for w in changed if isinstance(w.values[key], int)})
            named = self._named(s, principal, target, {w.values[key].text for w in changed if isinstance(w.values[key], LinkRef)})
            title = target.title if target is not None else spec.kind.form  # type: ignore[attr-defined]
            for w in changed:
                value = w.values[key]
                if isinstance(value, LinkRef):
                    ids = named.get(value.text, set())
                    if len(ids) == 1:
                        _resolve(w, key, next(iter(ids)))
                        continue
                    code = "link_ambiguous" if ids else "link_missing"
                    w.issues.append(Issue(code, {"value": value.text, "target": title}, path=key))
                elif value not in found:
                    w.issues.append(Issue("link_missing", {"value": f"#{value}", "target": title}, path=key))

    def _reachable(self, s: DbSession, principal: Principal, target: FormSpec | None, ids: set[int]) -> set[int]:
        if target is None or not ids:
            return set()
        table = projection_of(target, self.dialect).table
        reach = projection_scope(table, scope(principal, "read", target), principal)
        return set(s.execute(select(table.c.record_id).where(table.c.record_id.in_(ids), reach)).scalars())

    def named(self, s: DbSession, principal: Principal, target: FormSpec | None, texts: set[str]) -> dict[str, set[int]]:
        """Each text's records of `target` by its unique values, within the principal's read scope and masks (an
        import's natural key naming a link's target by 学号)."""
        return self._named(s, principal, target, texts)

    def _named(self, s: DbSession, principal: Principal, target: FormSpec | None, texts: set[str]) -> dict[str, set[int]]:
        """Each text's records among the target's unique values (and a one-field natural key), in scope."""
        found: dict[str, set[int]] = {}
        if target is None or not texts:
            return found
        projection = projection_of(target, self.dialect)
        reach = projection_scope(projection.table, scope(principal, "read", target), principal)
        found_by = policy(principal, target)
        keys = [k for k, f in target.fields.items() if f.unique or target.natural_key == (k,)]
        for key in keys:
            spec = target.fields[key]
            if found_by is None or key in found_by.hidden or is_masked(found_by, spec):
                continue  # a value the user may not see must not find a record for them either
            typed = {}
            for text in texts:
                value, issues = spec.kind.clean(text)
                if not issues and value is not None:
                    typed[text] = projection.fields[key].to_sql(value)
            if not typed:
                continue
            column = projection.column(key)
            rows = s.execute(select(column, projection.table.c.record_id).where(column.in_(set(typed.values())), reach)).all()
            by_value: dict[Any, set[int]] = {}
            for value, record_id in rows:
                by_value.setdefault(value, set()).add(record_id)
            for text, value in typed.items():
                found.setdefault(text, set()).update(by_value.get(value, set()))
        return found

    def units_of(self, s: DbSession, form_key: str, ids: set[int]) -> dict[int, int]:
        """The unit of each of these records of `form_key` (a child record's parents)."""
        target = self.forms().get(form_key)
        if target is None or not ids:
            return {}
        table = projection_of(target, self.dialect).table
        return dict(s.execute(select(table.c.record_id, table.c.unit_id).where(table.c.record_id.in_(ids))).all())

    # --- showing --------------------------------------------------------------------------------------------
    def titled(self, s: DbSession, principal: Principal, form: FormSpec, records: Iterable[StoredRecord]) -> None:
        """Replace each link id in the records' values by a LinkValue: the target's title (and display fields) as
        this reader sees them, with its page when the reader may open it. A target out of the reader's scope shows
        no title."""
        records = list(records)
        for spec in link_fields(form):
            ids = {r.values[spec.key] for r in records if isinstance(r.values.get(spec.key), int)}
            target = self.forms().get(spec.kind.form)  # type: ignore[attr-defined]
            if not ids or target is None:
                continue
            titles = self.titles(s, principal, target, ids, spec.kind.display)  # type: ignore[attr-defined]
            for record in records:
                value = record.values.get(spec.key)
                if isinstance(value, int):
                    record.values[spec.key] = titles.get(value, LinkValue(value, "（无权查看的记录）"))

    def titles(self, s: DbSession, principal: Principal, target: FormSpec, ids: set[int],
               display: tuple[str, ...] = ()) -> dict[int, LinkValue]:
        found = policy(principal, target)
        if found is None:
            return {}
        table = projection_of(target, self.dialect).table
        reach = projection_scope(table, scope(principal, "read", target), principal)
        rows = s.execute(select(Record.id, Record.data).where(
            Record.id.in_(select(table.c.record_id).where(table.c.record_id.in_(ids), reach)))).all()
        shown = [k for k in (target.title_field, *display) if k in target.fields and k not in found.hidden]
        titles = {}
        for record_id, data in rows:
            values = read_values(target, data or {})
            parts = [_text(target.fields[k], values.get(k), is_masked(found, target.fields[k])) for k in shown]
            head, rest = (parts[0] if parts else f"#{record_id}"), [p for p in parts[1:] if p]
            text = f"{head or f'#{record_id}'}（{'，'.join(rest)}）" if rest else (head or f"#{record_id}")
            titles[record_id] = LinkValue(record_id, text, f"/f/{target.key}/{record_id}")
        return titles

    # --- deleting -------------------------------------------------------------------------------------------
    def refuse_if_linked(self, s: DbSession, form: FormSpec, record_id: int) -> None:
        uses: list[str] = []
        for other in self.forms().values():
            for spec in link_fields(other):
                if spec.kind.form != form.key:  # type: ignore[attr-defined]
                    continue
                projection = projection_of(other, self.dialect)
                column = projection.column(spec.key)
                count = s.execute(select(projection.table.c.record_id).where(column == record_id).limit(USES_SHOWN + 1)).scalars().all()
                if count:
                    more = "等" if len(count) > USES_SHOWN else ""
                    uses.append(f"{other.title}（{spec.label}）{min(len(count), USES_SHOWN)} 条{more}")
        if uses:
            raise InUse(uses="；".join(uses))


def _unchanged(spec: FieldSpec, write: RecordWrite) -> bool:
    if write.current is None:
        return False
    value = write.values.get(spec.key)
    return isinstance(value, int) and write.current.data.get(spec.key) == value


def _resolve(write: RecordWrite, key: str, record_id: int) -> None:
    """A named link found: the id goes into what is stored, and into the validated values a retry starts from."""
    write.values[key] = record_id
    write.cleaned.values[key] = record_id


def _text(spec: FieldSpec, value: Any, masked: bool) -> str:
    if value is None:
        return ""
    text = spec.kind.to_text(value)
    return spec.kind.mask(text) if masked else text
