"""Charts drawn by the hub itself as inline SVG (no script, no CDN): a line chart of scores
over time and a histogram.  Every text is escaped; the markup is built here only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# One colour per series, in order; readable on white and for the common colour blindnesses.
PALETTE = ("#1f5fbf", "#d97706", "#15803d", "#b91c1c", "#7c3aed", "#0e7490")


def line_chart(
    points: Sequence[tuple[datetime, Mapping[str, float]]],
    *,
    series: Sequence[str],
    width: int = 640,
    height: int = 200,
    label: str = "",
) -> SafeString:
    """Scores (0-1) of each series over time; a series missing at a point is skipped there."""
    left, right, top, bottom = 36, 110, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="chart line" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(label)}">'
    ]
    for pct in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - pct / 100)
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{pct}%</text>'
        )
    n = len(points)

    def x_of(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    for index, name in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        coords = [
            (x_of(i), top + plot_h * (1 - values[name]))
            for i, (_, values) in enumerate(points)
            if name in values
        ]
        if not coords:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(
            f'<polyline class="series" data-series="{escape(name)}" points="{path}" '
            f'fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        parts.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in coords
        )
        legend_y = top + 14 * index + 8
        parts.append(
            f'<rect x="{left + plot_w + 12}" y="{legend_y - 8}" width="10" height="10" '
            f'style="fill:{colour}"/><text class="legend" x="{left + plot_w + 26}" '
            f'y="{legend_y + 1}">{escape(name)}</text>'
        )
    if points:
        for i in sorted({0, n - 1}):
            anchor = "start" if i == 0 and n > 1 else "end" if n > 1 else "middle"
            parts.append(
                f'<text class="tick" x="{x_of(i):.1f}" y="{height - 6}" text-anchor="{anchor}">'
                f"{escape(points[i][0].strftime('%Y-%m-%d %H:%M'))}</text>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - built above from escaped parts  # nosec B308, B703


def histogram(
    counts: Sequence[int],
    *,
    edges: Sequence[float],
    marks: Mapping[str, float] | None = None,
    width: int = 640,
    height: int = 180,
    label: str = "",
) -> SafeString:
    """Bars of ``counts`` over the bins between ``edges`` (len(counts) + 1 of them, from 0 to
    1); ``marks`` draws a vertical line at each named value (the thresholds)."""
    left, right, top, bottom = 44, 10, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(counts, default=0) or 1
    span = (edges[-1] - edges[0]) or 1.0

    def x_of(value: float) -> float:
        return left + plot_w * (value - edges[0]) / span

    parts = [
        f'<svg class="chart histogram" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(label)}">',
        f'<text class="tick" x="{left - 4}" y="{top + 8}" text-anchor="end">{peak}</text>',
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
        f'y2="{top + plot_h}"/>',
    ]
    for count, low, high in zip(counts, edges, edges[1:], strict=False):
        h = plot_h * count / peak
        parts.append(
            f'<rect x="{x_of(low) + 1:.1f}" y="{top + plot_h - h:.1f}" '
            f'width="{max(x_of(high) - x_of(low) - 2, 1):.1f}" height="{h:.1f}">'
            f"<title>{low:.2f}-{high:.2f}: {count}</title></rect>"
        )
    for value in (edges[0], (edges[0] + edges[-1]) / 2, edges[-1]):
        parts.append(
            f'<text class="tick" x="{x_of(value):.1f}" y="{height - 6}" '
            f'text-anchor="middle">{value:g}</text>'
        )
    for name, value in (marks or {}).items():
        x = x_of(value)
        # Near the right edge the label goes to the left of its line, so it is not clipped.
        anchor, dx = ("end", -3) if x > left + plot_w * 0.8 else ("start", 3)
        parts.append(
            f'<line class="mark" data-mark="{escape(name)}" x1="{x:.1f}" y1="{top}" '
            f'x2="{x:.1f}" y2="{top + plot_h}"/><text class="mark-label" x="{x + dx:.1f}" '
            f'y="{top + 10}" text-anchor="{anchor}">{escape(name)} {value:g}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - built above from escaped parts  # nosec B308, B703
