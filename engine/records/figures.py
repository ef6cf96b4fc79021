"""Figures across records (`figures:` in a form, engine/spec.py FigureSpec): ranks and group figures worked out
from the form's projection table when read, with the databases' window functions (SQLite ≥ 3.25, PostgreSQL).

Nothing is stored, so nothing goes stale: a figure is right after every create, edit, delete, import and transfer
because it is computed from the rows as they are (docs/architecture.md "Figures" has the measurement behind this
choice). A group is every record sharing the `within` values — fields of the form, or the unit a record sits under
at an org level — whoever reads; a reader sees the figures of the records they may read, never the others' values.
A record whose number or group value is empty has no figure.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from engine.permissions import is_masked
from engine.spec import FigureSpec, FormPolicy, FormSpec
from engine.storage.projection import Projection


def shown_figures(form: FormSpec, found: FormPolicy | None) -> list[FigureSpec]:
    """The figures a role may see: those whose number it may see in full (a rank tells something of a hidden
    score)."""
    if found is None:
        return []
    return [f for f in form.figures.values()
            if f.of not in found.hidden and not is_masked(found, form.fields[f.of])]


def group_columns(projection: Projection, figure: FigureSpec) -> list[ColumnElement]:
    """The projection's columns whose values make the figure's groups: a field's column, or the record's unit at
    an org level."""
    table = projection.table
    return [projection.column(name) if name in projection.fields else table.c[f"lv_{name}"] for name in figure.within]


def figure_values(connection: Connection, projection: Projection, figures: Iterable[FigureSpec],
                  record_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """{record id: {figure key: value}} for these records. One query per distinct grouping: the groups the
    records are in, every row of those groups, the window functions over them."""
    ids = sorted(set(record_ids))
    found: dict[int, dict[str, Any]] = {i: {} for i in ids}
    if not ids:
        return found
    by_grouping: dict[tuple[str, ...], list[FigureSpec]] = {}
    for figure in figures:
        by_grouping.setdefault(figure.within, []).append(figure)
    for grouping in by_grouping.values():
        for row in connection.execute(_query(projection, grouping, ids)).mappings():
            found[row["record_id"]].update({f.key: _value(f, row) for f in grouping})
    return found


def _query(projection: Projection, figures: list[FigureSpec], ids: list[int]) -> Any:
    table = projection.table
    parts = group_columns(projection, figures[0])
    windows = []
    if parts:
        wanted = (select(*(part.label(f"g{i}") for i, part in enumerate(parts)))
                  .where(table.c.record_id.in_(ids)).distinct().subquery())
        source = table.join(wanted, and_(*(part == wanted.c[f"g{i}"] for i, part in enumerate(parts))))
    else:
        source = table
    for figure in figures:
        windows += [column.label(f"{figure.key}{suffix}") for suffix, column in _window(projection, figure, parts)]
    inner = select(table.c.record_id, *windows).select_from(source).subquery()
    return select(inner).where(inner.c.record_id.in_(ids))


def _window(projection: Projection, figure: FigureSpec, parts: list[ColumnElement]) -> list[tuple[str, ColumnElement]]:
    """The window columns a figure is read from (suffix, column). Averages and rates come back as a sum and a
    count and are divided in Python's decimals: a database's floating-point average of 117.25 may read 117.249…
    and round the wrong way."""
    of = projection.column(figure.of)
    if figure.kind == "rank":
        order = of.desc() if figure.descending else of.asc()
        # Empty numbers get a partition of their own (and no rank), whichever end a database sorts them to.
        ranked = func.rank().over(partition_by=[*parts, of.is_(None)], order_by=order)
        return [("", case((of.is_(None), None), else_=ranked))]
    over = {"partition_by": parts} if parts else {}
    counted = ("__d", func.count(of).over(**over))
    if figure.kind == "pass_rate":
        return [("__n", func.sum(case((of >= literal(figure.at_least), 1), else_=0)).over(**over)), counted]
    if figure.kind == "avg":
        return [("__n", func.sum(of).over(**over)), counted]
    aggregate = {"sum": func.sum, "min": func.min, "max": func.max, "count": func.count}[figure.kind]
    return [("", aggregate(of).over(**over))]  # the group's figure, shown on every record of the group


def _value(figure: FigureSpec, row: Mapping[str, Any]) -> Any:
    if figure.kind in ("avg", "pass_rate"):
        total, count = row[f"{figure.key}__n"], row[f"{figure.key}__d"]
        if not count or total is None:
            return None
        value = _decimal(total) * (100 if figure.kind == "pass_rate" else 1) / count
    else:
        value = row[figure.key]
        if value is None:
            return None
        if figure.kind in ("rank", "count") or figure.field.kind.name == "integer":
            return int(value)
        value = _decimal(value)
    return value.quantize(Decimal(1).scaleb(-figure.places), rounding=ROUND_HALF_UP)


def _decimal(value: Any) -> Decimal:
    """A database number as a decimal: a float by its shortest repr (SQLite keeps decimals as floats; a sum of
    numbers with few decimals is that number to far more places than a figure shows)."""
    if isinstance(value, float):  # 0.1 + 0.2 is 0.30000000000000004: scores have far fewer decimals than this
        return Decimal(repr(value)).quantize(Decimal("1e-6"), rounding=ROUND_HALF_UP)
    return value if isinstance(value, Decimal) else Decimal(value)


def rank_order(form: FormSpec, key: str) -> tuple[str, bool] | None:
    """Sorting a list by a rank is sorting by its number: (field key, descending) for an ascending rank."""
    figure = form.figures.get(key)
    if figure is None or figure.kind != "rank":
        return None
    return figure.of, figure.descending


def values_for(records: Iterable[Any], figures: Mapping[int, Mapping[str, Any]]) -> None:
    for record in records:
        record.figures = dict(figures.get(record.id, {}))
