"""Charts as SVG drawn on the server: geometry worked out here, markup in web/templates/reports/chart.svg.html.

No charting library: pygal, the one that renders SVG on the server, adds its tooltips with a script from its own
CDN (refused by our CSP, and the page must work without JavaScript and print) and styles through embedded CSS; what a
report needs — bars, stacked bars, a pie or donut, lines, each mark a link to its list — is a few shapes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

PALETTE = ("#2f6fb0", "#e07b39", "#4a9a5b", "#c2464b", "#7c5ba6", "#8c6d46", "#d16ba5", "#6b7b8c", "#b5a33a", "#2aa0a8")
WIDTH = 680


@dataclass
class Mark:
    """One drawn value: its shape's numbers, its text, and the list it links to ("" = none)."""

    label: str
    value: float
    text: str
    href: str
    color: str
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    path: str = ""


@dataclass
class Chart:
    kind: str
    title: str
    width: int
    height: int
    marks: list[Mark] = field(default_factory=list)
    labels: list[tuple[float, float, str]] = field(default_factory=list)  # (x, y, text) of categories
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, name)
    lines: list[tuple[str, str]] = field(default_factory=list)  # (colour, polyline points)
    axis: tuple[float, float, float, float] = (0, 0, 0, 0)


def build_chart(kind: str, title: str, categories: list[str], series: list[str], values: list[list[Any]],
                href: Callable[[int, int], str], text: Callable[[Any], str]) -> Chart | None:
    """`values[i][j]`: category i, series j (None = nothing to draw)."""
    numbers = [[float(v) if v is not None else 0.0 for v in row] for row in values]
    if kind == "none" or not categories or not any(any(row) for row in numbers):
        return None
    legend = [(PALETTE[j % len(PALETTE)], name) for j, name in enumerate(series)] if len(series) > 1 else []
    if kind in ("pie", "donut"):
        return _pie(kind, title, categories, numbers, values, href, text)
    if kind == "line":
        return _line(title, categories, series, numbers, values, href, text, legend)
    return _bars(kind, title, categories, series, numbers, values, href, text, legend)


def _bars(kind, title, categories, series, numbers, values, href, text, legend) -> Chart:
    stacked = kind == "stacked_bar" and len(series) > 1
    left, right, band = 150, 70, 30
    per = 1 if stacked else len(series)
    row_height = band if per == 1 else max(band, 14 * per + 6)
    top = 10 + (22 if legend else 0)
    height = top + row_height * len(categories) + 10
    biggest = max((sum(r) if stacked else max(r)) for r in numbers) or 1.0
    scale = (WIDTH - left - right) / biggest
    chart = Chart(kind, title, WIDTH, height, legend=legend, axis=(left, top, left, height - 10))
    for i, name in enumerate(categories):
        y0 = top + i * row_height
        chart.labels.append((left - 6, y0 + row_height / 2 + 4, name))
        offset = 0.0
        for j in range(len(series)):
            value = numbers[i][j]
            if values[i][j] is None:
                continue
            color = PALETTE[j % len(PALETTE)]
            w = value * scale
            if stacked:
                mark = Mark(name, value, text(values[i][j]), href(i, j), color, left + offset, y0 + 4, w, row_height - 8)
                offset += w
            else:
                h = (row_height - 6) / per
                mark = Mark(name, value, text(values[i][j]), href(i, j), color, left, y0 + 3 + j * h, w, h - 2)
            chart.marks.append(mark)
    return chart


def _pie(kind, title, categories, numbers, values, href, text) -> Chart:
    totals = [sum(row) for row in numbers]
    whole = sum(totals) or 1.0
    cx, cy, r = 150, 130, 110
    inner = 60 if kind == "donut" else 0
    chart = Chart(kind, title, WIDTH, max(270, 24 * len(categories) + 20))
    angle = -math.pi / 2
    for i, name in enumerate(categories):
        if not totals[i]:
            continue
        sweep = 2 * math.pi * totals[i] / whole
        color = PALETTE[i % len(PALETTE)]
        mark = Mark(name, totals[i], text(values[i][0] if len(values[i]) == 1 else totals[i]), href(i, -1), color)
        mark.path = _slice(cx, cy, r, inner, angle, min(sweep, 2 * math.pi - 1e-6))
        chart.marks.append(mark)
        chart.legend.append((color, f"{name}：{mark.text}"))
        angle += sweep
    return chart


def _slice(cx: float, cy: float, r: float, inner: float, start: float, sweep: float) -> str:
    end = start + sweep
    large = 1 if sweep > math.pi else 0
    x0, y0, x1, y1 = cx + r * math.cos(start), cy + r * math.sin(start), cx + r * math.cos(end), cy + r * math.sin(end)
    if not inner:
        return f"M{cx:.1f},{cy:.1f} L{x0:.1f},{y0:.1f} A{r},{r} 0 {large} 1 {x1:.1f},{y1:.1f} Z"
    a0, b0 = cx + inner * math.cos(end), cy + inner * math.sin(end)
    a1, b1 = cx + inner * math.cos(start), cy + inner * math.sin(start)
    return (f"M{x0:.1f},{y0:.1f} A{r},{r} 0 {large} 1 {x1:.1f},{y1:.1f} L{a0:.1f},{b0:.1f} "
            f"A{inner},{inner} 0 {large} 0 {a1:.1f},{b1:.1f} Z")


def _line(title, categories, series, numbers, values, href, text, legend) -> Chart:
    left, right, top, bottom = 50, 20, 10 + (22 if legend else 0), 250
    height = bottom + 40
    biggest = max(max(row) for row in numbers) or 1.0
    step = (WIDTH - left - right) / max(1, len(categories) - 1)
    chart = Chart("line", title, WIDTH, height, legend=legend, axis=(left, top, left, bottom))
    y_of = lambda v: bottom - (bottom - top) * v / biggest  # noqa: E731
    for i, name in enumerate(categories):
        chart.labels.append((left + i * step, bottom + 18, name))
    for j in range(len(series)):
        color = PALETTE[j % len(PALETTE)]
        points = []
        for i, name in enumerate(categories):
            x, y = left + i * step, y_of(numbers[i][j])
            points.append(f"{x:.1f},{y:.1f}")
            if values[i][j] is not None:
                chart.marks.append(Mark(name, numbers[i][j], text(values[i][j]), href(i, j), color, x, y))
        chart.lines.append((color, " ".join(points)))
    return chart
