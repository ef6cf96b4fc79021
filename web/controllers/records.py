"""Generated pages for every form: list, create, view, edit, delete, history, inline checks."""
from __future__ import annotations

from typing import Any, Iterable, Mapping
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from markupsafe import Markup
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Response, Template

from engine.fields import LinkValue
from engine.issues import Issue
from engine.permissions import Principal, can, is_masked, policy, scope, writable_keys
from engine.records import ListQuery, SaveResult, StoredRecord
from engine.records.figures import shown_figures
from engine.spec import FieldSpec, FormPolicy, FormSpec
from engine.validation import CleanResult, clean_record
from web.auth import app_state, current_principal
from web.formdata import read_submission, table_action
from web.guards import form_guard
from web.pages import flash, page, units_for
from web.params import Id, PageNo, parse_id
from web.presenter import display_text, field_view, issue_text, issues_by_field


LIST_COUNT_LIMIT = 10_000  # exact below this many matches; "约 N 条" (estimated) above


def _form(request: Request) -> FormSpec:
    return app_state(request).definitions.forms[request.path_params["form_key"]]


class RecordController(Controller):
    path = "/f/{form_key:str}"
    guards = [form_guard]

    @get("/", opt={"action": "read"}, name="records:list")
    async def list_records(self, request: Request, page_no: PageNo) -> Template:
        form, principal = _form(request), current_principal(request)
        found = policy(principal, form)
        query = ListQuery.parse(form, request.query_params, page=page_no, count_limit=LIST_COUNT_LIMIT)
        filters = query.filters
        result = app_state(request).records.list(form, principal, query)
        app_state(request).records.figured(principal, form, app_state(request).records.titled(principal, form, result.records))
        columns = _columns(form, found)
        rows = [(r, [field_view(form, c, found, r.shown(c.key)) for c in columns], _missing(form, r)) for r in result.records]
        filter_views = [field_view(form, form.fields[k], found, raw=filters.get(k, "")) for k in form.list.filters if k not in found.hidden]
        return page(request, "records/list.html", form=form, columns=columns, rows=rows, result=result,
                    query=query, filter_views=filter_views, can_create=can(principal, "create", form),
                    sort_query=lambda key, ascending: _query_string(request, sort=f"-{key}" if ascending else key, page="1"),
                    page_query=lambda number: _query_string(request, page=str(number)),
                    list_actions=_list_actions(request, form, principal),
                    recomputing=app_state(request).records.recomputing(form), title=form.title)

    @get("/pick", opt={"action": "read"}, name="records:pick")
    async def pick(self, request: Request) -> Template:
        """htmx: the records a link field's search box finds (what the user may read), titled as the field shows
        them; the box posts its text as `<field>__text`."""
        form, principal = _form(request), current_principal(request)
        params = request.query_params
        typed = next((v for k, v in params.items() if k.endswith("__text")), "") or params.get("q", "")
        display = tuple(k for k in (params.get("display") or "").split(",") if k in form.fields)
        state = app_state(request)
        options: list[Any] = []
        if typed.strip():
            found = state.records.list(form, principal, ListQuery(search=typed, per_page=10))
            titles = state.records.link_titles(principal, form, {r.id for r in found.records}, display)
            options = [titles[r.id] for r in found.records if r.id in titles]
        return Template(template_name="widgets/link_options.html", context={"options": options, "searched": bool(typed.strip())})

    @get("/grid", opt={"action": "read"}, name="records:grid")
    async def grid_page(self, request: Request) -> Template:
        """Grid entry (`grid:`): choose a unit and the fixed values, then one row per record of the group."""
        form, principal = _form(request), current_principal(request)
        if form.grid is None:
            raise NotFoundException("这个表单没有设置成绩录入表（grid）")
        return _grid_page(request, form, principal, request.query_params)

    @post("/grid", opt={"action": ("create", "update")}, name="records:grid_save")
    async def grid_save(self, request: Request) -> Response:
        form, principal = _form(request), current_principal(request)
        if form.grid is None:
            raise NotFoundException("这个表单没有设置成绩录入表（grid）")
        data = await request.form()
        unit_id, fixed = _grid_choice(form, data)
        if unit_id is None or fixed is None:
            return _grid_page(request, form, principal, data)
        cells: dict[int, dict[str, str]] = {}
        revisions: dict[int, int] = {}
        for name, value in data.items():
            parts = name.split(".")
            if len(parts) == 3 and parts[0] == "c" and parts[1].isascii() and parts[1].isdigit() and len(parts[1]) < 19:
                cells.setdefault(int(parts[1]), {})[parts[2]] = value
            elif len(parts) == 2 and parts[0] == "r" and parts[1].isascii() and parts[1].isdigit() and len(parts[1]) < 19 \
                    and isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
                revisions[int(parts[1])] = int(value)
        grid = await app_state(request).writes.in_thread(app_state(request).grids.save, principal, form, unit_id, fixed, cells, revisions)
        if grid.ok:
            flash(request, f"已保存 {grid.saved} 行" if grid.saved else "没有修改")
            return Redirect(f"/f/{form.key}/grid?{urlencode({'unit': unit_id, **fixed})}", status_code=303)
        return _grid_page(request, form, principal, data, grid=grid, posted=cells, status=422)

    @get("/new", opt={"action": "create"}, name="records:new")
    async def new_record(self, request: Request) -> Template:
        form, principal = _form(request), current_principal(request)
        values = {k: f.default for k, f in form.fields.items()}
        # A child record added from its parent's page (?<parent field>=<id>) starts linked to that parent.
        parent = _parent_link(request, form, principal)
        if parent is not None:
            values[form.parent_field] = parent
        return _edit_page(request, form, principal, values=values, raw={}, issues=[], record=None,
                          prefilled=parent is not None)

    @post("/new", opt={"action": "create"}, name="records:create")
    async def create_record(self, request: Request) -> Response:
        form, principal = _form(request), current_principal(request)
        data = await request.form()
        submitted = await read_submission(form, data, writable_keys(policy(principal, form), form))
        defaults = {k: f.default for k, f in form.fields.items()}  # shown again for fields the user does not fill
        if table_action(data, submitted):
            return _edit_page(request, form, principal, values=defaults, raw=submitted, issues=[], record=None, unit=data.get("_unit"))
        units = [] if form.parent_field else units_for(request, principal, form, "create")
        unit_id = _chosen_unit(data.get("_unit"), units)
        if unit_id is None and not form.parent_field:  # a child record sits in its parent's unit
            return _edit_page(request, form, principal, values=defaults, raw=submitted, issues=[], record=None,
                              unit_error=f"请选择{form.unit_label}", status=422)
        # Writes wait for locks (another save, an import's batch): in a thread, never on the event loop.
        result = await app_state(request).writes.in_thread(app_state(request).records.create, form, principal, unit_id, submitted)
        if not result.ok:
            return _edit_page(request, form, principal, values=defaults, raw=submitted, issues=result.issues,
                              record=None, unit=str(unit_id), status=422,
                              holders=_holders(request, form, principal, {**defaults, **submitted}, result.issues))
        flash(request, "保存成功")
        return Redirect(f"/f/{form.key}/{result.record_id}", status_code=303)

    @post("/check", opt={"action": ("create", "update")}, name="records:check")
    async def check_field(self, request: Request) -> Template:
        """htmx: validate what is typed so far with the same validator; return the field's messages
        and re-render the fields whose visibility or requiredness depends on it."""
        form, principal = _form(request), current_principal(request)
        key = request.query_params.get("field", "")
        if key not in form.fields:
            raise NotFoundException("没有这个字段")
        found = policy(principal, form)
        data = await request.form()
        submitted = await read_submission(form, data, writable_keys(found, form))
        stored = _stored_for_check(request, form, principal)
        raw = dict(stored.values) if stored else {k: f.default for k, f in form.fields.items()}
        raw.update({k: v for k, v in submitted.items() if k in form.fields})
        cleaned = clean_record(form, raw)
        # A unique value another record holds is said now, not only on save, with a link when the user may open it.
        taken = [] if any(i.path == key for i in cleaned.issues) else app_state(request).records.taken(
            principal, form, cleaned.values, stored.id if stored else None, keys=(key,))
        context = check_context(form, found, key, submitted, cleaned, [*cleaned.issues, *taken])
        return Template(template_name="records/check.html",
                        context={**context, "record": stored, "holder_links": holder_links(form, taken)})

    @get("/{record_id:int}", opt={"action": "read"}, name="records:view")
    async def view_record(self, request: Request, record_id: Id) -> Template:
        form, principal = _form(request), current_principal(request)
        record = _get(request, form, principal, record_id, "read")
        found = policy(principal, form)
        cleaned = clean_record(form, record.values)
        by_field = issues_by_field(cleaned.issues)
        sections = [
            (section, [field_view(form, form.fields[k], found, record.values[k], issues=by_field.get(k, []),
                                  visible=k not in cleaned.hidden, required=k in cleaned.required)
                       for k in section.fields if k not in found.hidden])
            for section in form.sections
        ]
        figures = [field_view(form, f.field, found, record.figures.get(f.key)) for f in shown_figures(form, found)]
        return page(request, "records/view.html", form=form, record=record, sections=sections, figures=figures,
                    children=_children(request, form, principal, record),
                    title_text=_title(form, record, found), incomplete=not cleaned.ok,
                    can_update=_reaches(request, form, principal, record, "update"),
                    record_actions=[a for f in _features(request) for a in f.record_actions(form, principal, record)],
                    record_panels=[p for f in _features(request) for p in f.record_panels(request, form, principal, record)],
                    can_delete=_reaches(request, form, principal, record, "delete"), title=form.title)

    @get("/{record_id:int}/edit", opt={"action": "update"}, name="records:edit")
    async def edit_record(self, request: Request, record_id: Id) -> Template:
        form, principal = _form(request), current_principal(request)
        record = _get(request, form, principal, record_id, "update")
        # Show what an old record lacks under today's definition right away.
        issues = clean_record(form, record.values).issues
        return _edit_page(request, form, principal, values=record.values, raw={}, issues=issues, record=record)

    @post("/{record_id:int}/edit", opt={"action": "update"}, name="records:update")
    async def update_record(self, request: Request, record_id: Id) -> Response:
        form, principal = _form(request), current_principal(request)
        record = _get(request, form, principal, record_id, "update")
        data = await request.form()
        submitted = await read_submission(form, data, writable_keys(policy(principal, form), form))
        if table_action(data, submitted):
            return _edit_page(request, form, principal, values=record.values, raw=submitted, issues=[], record=record,
                              revision=data.get("_revision"))
        try:
            base = int(data.get("_revision", ""))
        except ValueError:
            base = -1
        # A feature may hold fields back from the direct save (protected fields become a change request).
        held = [h for f in _features(request) if (h := f.hold_update(request, form, principal, record, submitted)) is not None]
        if any(h.issues for h in held):
            return _edit_page(request, form, principal, values=record.values, raw=submitted, issues=[i for h in held for i in h.issues],
                              record=record, status=422, revision=data.get("_revision"))
        direct = {k: v for k, v in submitted.items() if not any(k in h.keys for h in held)}
        result = await app_state(request).writes.in_thread(app_state(request).records.update, form, principal, record_id, direct, base)
        if not result.ok:
            return _failed_update(request, form, principal, record_id, record, submitted, result, data.get("_revision"))
        notes = [await app_state(request).writes.in_thread(h.commit) for h in held]
        flash(request, "；".join(["保存成功", *(message for message, _ in notes if message)]))
        return Redirect(next((href for _, href in notes if href), f"/f/{form.key}/{record_id}"), status_code=303)

    @get("/{record_id:int}/delete", opt={"action": "delete"}, name="records:confirm_delete")
    async def confirm_delete(self, request: Request, record_id: Id) -> Template:
        form, principal = _form(request), current_principal(request)
        record = _get(request, form, principal, record_id, "delete")
        return page(request, "records/delete.html", form=form, record=record,
                    title_text=_title(form, record, policy(principal, form)), title=form.title)

    @post("/{record_id:int}/delete", opt={"action": "delete"}, name="records:delete")
    async def delete_record(self, request: Request, record_id: Id) -> Redirect:
        form, principal = _form(request), current_principal(request)
        if not await app_state(request).writes.in_thread(app_state(request).records.delete, form, principal, record_id):
            raise NotFoundException("记录不存在或不在您的权限范围内")
        flash(request, "已删除")
        return Redirect(f"/f/{form.key}/", status_code=303)

    @get("/{record_id:int}/history", opt={"action": "read"}, name="records:history")
    async def history(self, request: Request, record_id: Id) -> Template:
        form, principal = _form(request), current_principal(request)
        record = _get(request, form, principal, record_id, "read")
        found = policy(principal, form)
        entries = app_state(request).records.history(form, record_id)
        units = {u.id: u.full_name for u in app_state(request).units()}
        return page(request, "records/history.html", form=form, record=record, entries=_history_rows(form, found, entries, units),
                    title_text=_title(form, record, found), title=form.title)


def check_context(form: FormSpec, found: FormPolicy, key: str, submitted: Mapping[str, Any], cleaned: CleanResult,
                  issues: Iterable[Issue] | None = None) -> dict[str, Any]:
    """What an inline check shows, from the one validator's result (`issues`: its issues, or more checks' on top):
    the messages of the field and of its rule partners that hold a value, and the fields whose visibility or
    requiredness depends on it, re-rendered. Record forms and workflow application forms both answer with it."""
    by_field = issues_by_field(cleaned.issues if issues is None else issues)
    partners = {t for rule in form.rules if key in rule.fields or key in rule.check.names for t in rule.fields}
    shown = {key} | {p for p in partners if cleaned.values.get(p) is not None}
    errors = {k: [issue_text(form, i) for i in by_field.get(k, [])] for k in shown}
    dependents = [
        field_view(form, form.fields[d], found, value=cleaned.values.get(d) if d not in submitted else None,
                   raw=submitted.get(d), visible=d not in cleaned.hidden, required=d in cleaned.required)
        for d in form.dependents(key) if d not in found.hidden
    ]
    return {"errors": errors, "dependents": dependents, "form": form, "key": key}


def _holders(request: Request, form: FormSpec, principal: Principal, raw: Mapping[str, Any], issues: Iterable[Issue],
             record_id: int | None = None) -> dict[str, str]:
    """Links to the records holding the unique values a refused save reported taken."""
    keys = {i.path for i in issues if i.code == "unique"}
    if not keys:
        return {}
    taken = app_state(request).records.taken(principal, form, clean_record(form, dict(raw)).values, record_id, keys)
    return holder_links(form, taken)


def holder_links(form: FormSpec, issues: Iterable[Issue]) -> dict[str, str]:
    """Field key → the page of the record already holding its unique value (when the user may open it)."""
    return {i.path: f"/f/{form.key}/{i.params['holder']}" for i in issues if i.code == "unique" and i.params.get("holder")}


def _query_string(request: Request, **changes: str) -> str:
    params = {k: v for k, v in request.query_params.items() if k not in changes}
    params.update(changes)
    return urlencode(params)


def _features(request: Request) -> list[Any]:
    return request.app.state["features"]


def _list_actions(request: Request, form: FormSpec, principal: Principal) -> list[dict[str, str]]:
    # An action with "keep_query" (Excel 导出) carries the list's current filters, search and sort.
    query = request.url.query
    return [dict(action, href=action["href"] + "?" + query) if action.get("keep_query") and query else action
            for feature in _features(request) for action in feature.list_actions(form, principal)]


def _get(request: Request, form: FormSpec, principal: Principal, record_id: int, action: str) -> StoredRecord:
    """The record, its links titled as this user sees them; a 404 when it is absent or out of scope."""
    records = app_state(request).records
    record = records.get(form, record_id, principal, action)
    if record is None:
        raise NotFoundException("记录不存在或不在您的权限范围内")
    return records.figured(principal, form, records.titled(principal, form, [record]))[0]


def _columns(form: FormSpec, found: FormPolicy) -> list[FieldSpec]:
    """A list's columns this user sees: fields not hidden, figures whose number they may see."""
    figures = {f.key for f in shown_figures(form, found)}
    return [form.column_spec(k) for k in form.list.columns
            if (k in form.fields and k not in found.hidden) or k in figures]


CHILDREN_SHOWN = 50


def _grid_choice(form: FormSpec, params: Mapping[str, Any]) -> tuple[int | None, dict[str, int] | None]:
    """The unit and the fixed values a grid page is for, as ids; None where not (validly) chosen."""
    assert form.grid is not None
    unit_id = parse_id(params.get("unit"))
    fixed = {k: parse_id(params.get(k)) for k in form.grid.fixed}
    return unit_id, (None if any(v is None for v in fixed.values()) else fixed)  # type: ignore[return-value]


def _grid_page(request: Request, form: FormSpec, principal: Principal, params: Mapping[str, Any], grid: Any = None,
               posted: Mapping[int, Mapping[str, str]] | None = None, status: int = 200) -> Template:
    assert form.grid is not None
    state = app_state(request)
    target_form = state.definitions.forms[form.fields[form.grid.rows].kind.form]
    found = policy(principal, form)
    units = units_for(request, principal, target_form, "read")
    unit_id, fixed = _grid_choice(form, params)
    choices = []
    for key in form.grid.fixed:
        spec = form.fields[key]
        linked = state.definitions.forms.get(getattr(spec.kind, "form", ""))
        options: list[tuple[int, str]] = []
        if linked is not None and can(principal, "read", linked):
            listed = state.records.list(linked, principal, ListQuery(per_page=100))
            titles = state.records.link_titles(principal, linked, {r.id for r in listed.records}, getattr(spec.kind, "display", ()))
            options = [(r.id, str(titles[r.id])) for r in listed.records if r.id in titles]
        choices.append({"key": key, "label": spec.label, "options": options, "chosen": str(params.get(key) or "")})
    if grid is None and unit_id is not None and fixed is not None and any(u.id == unit_id for u in units):
        grid = state.grids.load(principal, form, unit_id, fixed)
    columns = [form.fields[k] for k in form.grid.columns if k not in found.hidden]  # type: ignore[union-attr]
    shown = [form.fields[k] for k, f in form.fields.items() if f.compute is not None and k not in found.hidden]  # type: ignore[union-attr]
    shown += [f.field for f in shown_figures(form, found) if set(f.within) & set(form.grid.fixed)]
    rows = []
    for row in (grid.rows if grid is not None else []):
        typed = (posted or {}).get(row.target.id, {})
        values = row.record.values if row.record is not None else {}
        by_field = issues_by_field(row.issues)
        cells = [{"key": c.key, "name": f"c.{row.target.id}.{c.key}",
                  "value": typed.get(c.key, "") if posted is not None else display_text(c, values.get(c.key), False),
                  "errors": [issue_text(form, i) for i in by_field.get(c.key, [])]} for c in columns]
        extra = [display_text(s, row.record.shown(s.key), False) if row.record is not None else "" for s in shown]
        other = [issue_text(form, i) for k, issues in by_field.items() if k not in form.grid.columns for i in issues]
        rows.append({"target": row.target, "record": row.record, "cells": cells, "extra": extra, "other": other,
                     "conflict": row.conflict, "title": display_text(target_form.fields[target_form.title_field],
                                                                      row.target.values.get(target_form.title_field), False)})
    template = page(request, "records/grid.html", form=form, units=units, chosen_unit=str(params.get("unit") or ""),
                    choices=choices, columns=columns, shown=shown, rows=rows, loaded=grid is not None,
                    failed=status == 422, title=f"{form.title}录入")
    template.status_code = status
    return template


def _children(request: Request, form: FormSpec, principal: Principal, record: StoredRecord) -> list[dict[str, Any]]:
    """Panels of the child forms (belongs_to) on their parent's page: the child records this user may read, with
    the list's columns, and an 添加 link that starts one linked to this record."""
    state = app_state(request)
    panels = []
    for child in state.definitions.forms.values():
        if child.parent_form != form.key or not can(principal, "read", child):
            continue
        found = policy(principal, child)
        query = ListQuery(filters={child.parent_field: str(record.id)}, per_page=CHILDREN_SHOWN, sort=child.list.default_sort)
        result = state.records.list(child, principal, query)
        state.records.figured(principal, child, state.records.titled(principal, child, result.records))
        columns = [c for c in _columns(child, found) if c.key != child.parent_field]
        rows = [(r, [field_view(child, c, found, r.shown(c.key)) for c in columns]) for r in result.records]
        panels.append({"form": child, "columns": columns, "rows": rows, "total": result.total,
                       "more": f"/f/{child.key}/?{urlencode({child.parent_field: record.id})}",
                       "add": f"/f/{child.key}/new?{urlencode({child.parent_field: record.id})}" if can(principal, "create", child) else ""})
    return panels


def _parent_link(request: Request, form: FormSpec, principal: Principal) -> LinkValue | None:
    """The parent named in a new child record's query string, as this user sees it; None if absent or out of
    reach (the user then picks one)."""
    if not form.parent_field:
        return None
    parent_id = parse_id(request.query_params.get(form.parent_field))
    parent_form = app_state(request).definitions.forms.get(form.parent_form)
    if parent_id is None or parent_form is None:
        return None
    titles = app_state(request).records.link_titles(principal, parent_form, {parent_id})
    return titles.get(parent_id)


def _reaches(request: Request, form: FormSpec, principal: Principal, record: StoredRecord, action: str) -> bool:
    return can(principal, action, form) and scope(principal, action, form).contains(record.unit_path, record.created_by, principal.user_id, record)


def _stored_for_check(request: Request, form: FormSpec, principal: Principal) -> StoredRecord | None:
    record_id = parse_id(request.query_params.get("record"))
    if record_id is None:
        return None
    return app_state(request).records.get(form, record_id, principal, "update")


def _chosen_unit(raw: Any, units: list) -> int | None:
    allowed = {u.id for u in units}
    chosen = parse_id(raw)
    if chosen is not None and chosen in allowed:
        return chosen
    return units[0].id if len(units) == 1 else None


def _title(form: FormSpec, record: StoredRecord, found: Any) -> str:
    spec = form.fields.get(form.title_field)
    if spec is None:
        return f"#{record.id}"
    view = field_view(form, spec, found, record.values.get(spec.key))
    return view.display or f"#{record.id}"


def _missing(form: FormSpec, record: StoredRecord) -> bool:
    return not clean_record(form, record.values).ok


def _edit_page(request: Request, form: FormSpec, principal: Principal, values: dict, raw: dict, issues: list,
               record: StoredRecord | None, unit: Any = None, unit_error: str = "", status: int = 200,
               revision: Any = None, conflict: Any = None, prefilled: bool = False,
               holders: dict[str, str] | None = None) -> Template:
    found = policy(principal, form)
    blank = record is None and not raw and not issues and not prefilled
    cache_key = (app_state(request).definitions.version, form.key, found)
    sections_html = app_state(request).blank_forms.get(cache_key) if blank else None
    sections = [] if sections_html is None else None
    if sections is not None:
        sections = _sections(form, found, values, raw, issues)
    if blank and sections_html is None:
        # A blank form depends only on the definition and the user's policy: render its fields once.
        environment = request.app.template_engine.engine
        sections_html = Markup(environment.get_template("records/sections.html").render(form=form, sections=sections, record=None))
        app_state(request).blank_forms[cache_key] = sections_html
    units = units_for(request, principal, form, "create") if record is None and not form.parent_field else []
    summary = [issue_text(form, i) for i in issues]
    if unit_error:
        summary.insert(0, unit_error)
    # Fields whose edits go to review (a workflow's `changes:`), marked on the edit page before the user saves.
    review = frozenset(k for w in app_state(request).definitions.workflows.values() if w.form == form.key
                       for k in w.changes) if record is not None else frozenset()
    template = page(request, "records/form.html", form=form, sections=sections, sections_html=sections_html,
                    record=record, units=units, review_fields=review, holder_links=holders or {}, chosen_unit=str(unit or ""), unit_error=unit_error, summary=summary,
                    conflict=conflict, revision=revision if revision is not None else (record.revision if record else ""),
                    title=form.title)
    template.status_code = status
    return template


def _sections(form: FormSpec, found: Any, values: dict, raw: dict, issues: list) -> list:
    merged = dict(values)
    merged.update({k: v for k, v in raw.items() if k in form.fields})
    cleaned = clean_record(form, merged)
    by_field = issues_by_field(issues)
    sections = []
    for section in form.sections:
        views = []
        for key in section.fields:
            if key in found.hidden:
                continue
            spec = form.fields[key]
            typed = raw.get(key) if key in raw else None
            views.append(field_view(form, spec, found, value=values.get(key) if typed is None else None, raw=typed,
                                    issues=by_field.get(key, []), visible=key not in cleaned.hidden,
                                    required=key in cleaned.required))
        sections.append((section, views))
    return sections


def _failed_update(request: Request, form: FormSpec, principal: Principal, record_id: int, record: StoredRecord,
                   submitted: dict, result: SaveResult, revision: Any) -> Template:
    conflict = None
    if result.conflict is not None:
        found = policy(principal, form)
        conflict = _history_rows(form, found, result.conflict.entries, {u.id: u.full_name for u in app_state(request).units()})
        # The user's typed values stay; the revision moves on so a deliberate re-save goes through.
        revision = result.conflict.current_revision
    return _edit_page(request, form, principal, values=record.values, raw=submitted, issues=result.issues, record=record,
                      status=409 if conflict else 422, revision=revision, conflict=conflict)


def _history_rows(form: FormSpec, found: Any, entries: list, units: Mapping[int, str]) -> list[dict[str, Any]]:
    """Audit entries as readable rows, with each value shown as this user may see it (a move by unit names)."""
    rows = []
    for entry in entries:
        changes = []
        for key, (old, new) in (entry.changes or {}).items():
            spec = form.fields.get(key)
            if key == "_unit":
                changes.append({"label": form.unit_label, "old": units.get(old, str(old)), "new": units.get(new, str(new))})
                continue
            if spec is None or key in found.hidden:
                continue
            changes.append({"label": spec.label, "old": _stored_text(spec, found, old), "new": _stored_text(spec, found, new)})
        rows.append({"entry": entry, "changes": changes})
    return rows


def _stored_text(spec: Any, found: Any, stored: Any) -> str:
    if stored is None:
        return ""
    try:
        value = spec.kind.from_json(stored)
    except (ValueError, TypeError, KeyError):
        return str(stored)
    return display_text(spec, value, is_masked(found, spec))
