"""Small inline SVG charts (no plotting library, no JavaScript): a scatter plot and a line chart."""
from __future__ import annotations

import math
from html import escape
from typing import List, Optional, Sequence, Tuple

WIDTH, HEIGHT = 560, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 34, 50
#: ``(x, y, label)``; ``label`` is drawn beside the point.
Point = Tuple[float, float, str]


def _finite(points: Sequence[Point]) -> List[Point]:
    return [p for p in points if p[0] is not None and p[1] is not None and math.isfinite(p[0])
            and math.isfinite(p[1])]


def _ticks(low: float, high: float, count: int = 5) -> List[float]:
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _extent(values: Sequence[float]) -> Tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or abs(high) * 0.1 or 1.0
    return low - pad, high + pad


def _frame(title: str, x_label: str, y_label: str, xs: Sequence[float], ys: Sequence[float]):
    x0, x1 = _extent(xs)
    y0, y1 = _extent(ys)
    width, height = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * width

    def sy(y: float) -> float:
        return _TOP + (1 - (y - y0) / (y1 - y0)) * height

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
             f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
             f'<rect x="{_LEFT}" y="{_TOP}" width="{width}" height="{height}" fill="none" stroke="#999"/>']
    for tick in _ticks(x0, x1):
        parts.append(f'<line x1="{sx(tick):.1f}" y1="{_TOP + height}" x2="{sx(tick):.1f}" y2="{_TOP + height + 4}" '
                     f'stroke="#999"/><text x="{sx(tick):.1f}" y="{_TOP + height + 16}" text-anchor="middle" '
                     f'font-size="11">{tick:g}</text>')
    for tick in _ticks(y0, y1):
        parts.append(f'<line x1="{_LEFT - 4}" y1="{sy(tick):.1f}" x2="{_LEFT + width}" y2="{sy(tick):.1f}" '
                     f'stroke="#eee"/><text x="{_LEFT - 6}" y="{sy(tick) + 4:.1f}" text-anchor="end" '
                     f'font-size="11">{tick:g}</text>')
    parts.append(f'<text x="{_LEFT + width / 2}" y="{HEIGHT - 10}" text-anchor="middle" font-size="12">'
                 f'{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(16 {_TOP + height / 2}) rotate(-90)" text-anchor="middle" '
                 f'font-size="12">{escape(y_label)}</text>')
    return parts, sx, sy


def _empty(title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="60"><text x="10" y="30">'
            f'{escape(title)}: no data</text></svg>')


def scatter(points: Sequence[Point], title: str, x_label: str, y_label: str,
            highlight: Sequence[str] = (), zero_lines: bool = True) -> str:
    """A scatter plot of ``points``; points whose label is in ``highlight`` are drawn in red."""
    points = _finite(points)
    if not points:
        return _empty(title)
    xs = [p[0] for p in points] + ([0.0] if zero_lines else [])
    ys = [p[1] for p in points] + ([0.0] if zero_lines else [])
    parts, sx, sy = _frame(title, x_label, y_label, xs, ys)
    if zero_lines:
        parts.append(f'<line x1="{sx(0):.1f}" y1="{_TOP}" x2="{sx(0):.1f}" y2="{HEIGHT - _BOTTOM}" stroke="#bbb" '
                     f'stroke-dasharray="4 3"/><line x1="{_LEFT}" y1="{sy(0):.1f}" x2="{WIDTH - _RIGHT}" '
                     f'y2="{sy(0):.1f}" stroke="#bbb" stroke-dasharray="4 3"/>')
    for x, y, label in points:
        colour = "#c62828" if label in highlight else "#1565c0"
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{colour}"><title>{escape(label)}: '
                     f'({x:.4g}, {y:.4g})</title></circle><text x="{sx(x) + 7:.1f}" y="{sy(y) - 6:.1f}" '
                     f'font-size="11">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def line(points: Sequence[Point], title: str, x_label: str, y_label: str,
         reference: Optional[Tuple[float, str]] = None) -> str:
    """``points`` joined in order, each labelled; ``reference`` = ``(y, label)`` draws a dashed horizontal line."""
    points = _finite(points)
    if not points:
        return _empty(title)
    ys = [p[1] for p in points] + ([reference[0]] if reference else [])
    parts, sx, sy = _frame(title, x_label, y_label, [p[0] for p in points], ys)
    if reference:
        parts.append(f'<line x1="{_LEFT}" y1="{sy(reference[0]):.1f}" x2="{WIDTH - _RIGHT}" '
                     f'y2="{sy(reference[0]):.1f}" stroke="#2e7d32" stroke-dasharray="5 4"/>'
                     f'<text x="{WIDTH - _RIGHT - 4}" y="{sy(reference[0]) - 5:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#2e7d32">{escape(reference[1])}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y, _) in enumerate(points))
    parts.append(f'<path d="{path}" fill="none" stroke="#1565c0" stroke-width="2"/>')
    for x, y, label in points:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="#1565c0"><title>{escape(label)}: '
                     f'({x:.4g}, {y:.4g})</title></circle><text x="{sx(x) + 6:.1f}" y="{sy(y) - 6:.1f}" '
                     f'font-size="11">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
