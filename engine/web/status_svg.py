"""Line charts as inline SVG markup, drawn on the server: the same markup goes into the first
page (works without JavaScript) and into every server-sent event. No library, no inline
``style`` (the page's CSP forbids it): presentation attributes and classes only."""
from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH_PX, HEIGHT_PX = 520, 150
LEFT_PX, RIGHT_PX, TOP_PX, BOTTOM_PX = 46, 8, 22, 20  # room for the axis labels and the legend
COLOURS = ("#2458c6", "#b3261e", "#1e7b34", "#8a5a00")
MAX_POINTS = 240  # more samples are averaged in buckets: about two pixels a point


def _bucketed(times_s: Sequence[float], series: Sequence[tuple[str, Sequence[float | None]]]):
    """At most ``MAX_POINTS`` points: each bucket's last time and the mean of its values
    (None where a bucket has none), so a ten-minute ring stays a small event."""
    n = len(times_s)
    if n <= MAX_POINTS:
        return times_s, series
    edges = [round(i * n / MAX_POINTS) for i in range(MAX_POINTS + 1)]
    times = [times_s[edges[i + 1] - 1] for i in range(MAX_POINTS)]
    out = []
    for name, values in series:
        means: list[float | None] = []
        for i in range(MAX_POINTS):
            got = [v for v in values[edges[i]:edges[i + 1]] if v is not None]
            means.append(sum(got) / len(got) if got else None)
        out.append((name, means))
    return times, out


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    step = 1.0
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def _label(v: float) -> str:
    return f"{v:g}" if v < 10_000 else f"{v / 1000:g}k"


def _path(xs: Sequence[float], ys: Sequence[float | None], y_max: float) -> str:
    """``M``/``L`` commands; a None value (no data, broker away) breaks the line, and a point
    alone between two breaks gets a zero-length segment (drawn as a dot by the round cap)."""
    plot_h = HEIGHT_PX - TOP_PX - BOTTOM_PX
    parts: list[str] = []
    run = 0  # points in the current piece of line
    for x, y in zip(xs, ys):
        if y is None:
            if run == 1:
                parts.append("l0,0")
            run = 0
            continue
        py = TOP_PX + plot_h * (1 - min(y, y_max) / y_max)
        parts.append(f"{'L' if run else 'M'}{x:.0f},{py:.0f}")
        run += 1
    if run == 1:
        parts.append("l0,0")
    return "".join(parts)


def line_chart(chart_id: str, title: str, times_s: Sequence[float],
               series: Sequence[tuple[str, Sequence[float | None]]], *, unit: str) -> str:
    """One chart: ``series`` are (name, values aligned with ``times_s``), oldest first."""
    plot_w = WIDTH_PX - LEFT_PX - RIGHT_PX
    times_s, series = _bucketed(times_s, series)
    values = [v for _name, vs in series for v in vs if v is not None]
    y_max = _nice_max(max(values, default=0.0))
    span_s = (times_s[-1] - times_s[0]) if len(times_s) > 1 else 0.0
    xs = [LEFT_PX + plot_w * ((t - times_s[0]) / span_s if span_s else 1.0) for t in times_s]
    out = [f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH_PX} {HEIGHT_PX}" '
           f'width="{WIDTH_PX}" height="{HEIGHT_PX}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg" data-points="{len(times_s)}" data-max="{y_max:g}">',
           f'<title>{escape(title)}</title>']
    for frac in (0.0, 0.5, 1.0):  # grid lines and their values
        y = TOP_PX + (HEIGHT_PX - TOP_PX - BOTTOM_PX) * (1 - frac)
        out.append(f'<line x1="{LEFT_PX}" x2="{WIDTH_PX - RIGHT_PX}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#d9dee7" stroke-width="1"/>')
        out.append(f'<text x="{LEFT_PX - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                   f'fill="#5d6778">{_label(y_max * frac)}</text>')
    age = f"{span_s / 60:.0f} min ago" if span_s >= 90 else f"{span_s:.0f} s ago"
    out.append(f'<text x="{LEFT_PX}" y="{HEIGHT_PX - 4}" font-size="11" fill="#5d6778">{age}</text>')
    out.append(f'<text x="{WIDTH_PX - RIGHT_PX}" y="{HEIGHT_PX - 4}" text-anchor="end" font-size="11" '
               f'fill="#5d6778">now</text>')
    legend_x = LEFT_PX
    out.append(f'<text x="{legend_x}" y="13" font-size="11" fill="#5d6778">{escape(unit)}</text>')
    legend_x += 8 + 7 * len(unit)
    for i, (name, vs) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        d = _path(xs, vs, y_max)
        if d:
            out.append(f'<path class="series s{i}" data-series="{escape(name)}" d="{d}" fill="none" '
                       f'stroke="{colour}" stroke-width="1.6" stroke-linejoin="round" stroke-linecap="round"/>')
        out.append(f'<rect x="{legend_x}" y="5" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{legend_x + 14}" y="14" font-size="11" fill="#1d2430">{escape(name)}</text>')
        legend_x += 24 + 7 * len(name)
    if not values:
        out.append(f'<text x="{LEFT_PX + plot_w / 2:.0f}" y="{HEIGHT_PX / 2:.0f}" text-anchor="middle" '
                   f'font-size="12" fill="#5d6778">no data yet</text>')
    out.append("</svg>")
    return "".join(out)
