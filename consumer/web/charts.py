"""Small server-rendered SVG charts for the status page: no JavaScript, no external assets.

Each function takes plain (time, value) points over a fixed time range and returns one `<svg>`
element; values are escaped, and an empty series renders as an empty frame saying "no data yet".
"""

from __future__ import annotations

import html
from collections.abc import Sequence

WIDTH, HEIGHT = 360, 120
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 8, 20, 18


def _scale(lo: float, hi: float, out_lo: float, out_hi: float):  # type: ignore[no-untyped-def]
    span = (hi - lo) or 1.0
    return lambda v: out_lo + (v - lo) * (out_hi - out_lo) / span


def _frame(ident: str, title: str, top: float, body: str, n: int, start: float, end: float) -> str:
    label = f"{title} (last {round((end - start) / 60)} min)"
    return (
        f'<svg id="{html.escape(ident)}" class="chart" data-points="{n}" data-max="{top:g}"'
        f' width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{html.escape(label)}</title>'
        f'<text x="{PAD_LEFT}" y="13" font-size="12" font-weight="bold">{html.escape(title)}</text>'
        f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{WIDTH - PAD_LEFT - PAD_RIGHT}"'
        f' height="{HEIGHT - PAD_TOP - PAD_BOTTOM}" fill="#fafafa" stroke="#ccc"/>'
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 9}" font-size="10" text-anchor="end">{top:g}</text>'
        f'<text x="{PAD_LEFT - 4}" y="{HEIGHT - PAD_BOTTOM}" font-size="10" text-anchor="end">0</text>'
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 4}" font-size="10">-{round((end - start) / 60)} min</text>'
        f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 4}" font-size="10" text-anchor="end">now</text>'
        f"{body}"
        + (
            ""
            if n
            else f'<text x="{(WIDTH + PAD_LEFT) / 2}" y="{HEIGHT / 2 + 4}" font-size="11"'
            ' text-anchor="middle" fill="#888">no data yet</text>'
        )
        + "</svg>"
    )


def line_chart(
    ident: str, title: str, points: Sequence[tuple[float, float]], start: float, end: float
) -> str:
    """A line of `points` (unix time, value) between `start` and `end`."""
    shown = [(t, v) for t, v in points if start <= t <= end]
    top = max([v for _, v in shown] + [1.0])
    x = _scale(start, end, PAD_LEFT, WIDTH - PAD_RIGHT)
    y = _scale(0, top, HEIGHT - PAD_BOTTOM, PAD_TOP)
    coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in shown)
    body = ""
    if shown:
        body = f'<polyline points="{coords}" fill="none" stroke="#1f6feb" stroke-width="1.5"/>'
        last_t, last_v = shown[-1]
        body += f'<circle cx="{x(last_t):.1f}" cy="{y(last_v):.1f}" r="2.5" fill="#1f6feb"/>'
        body += f'<text x="{WIDTH - PAD_RIGHT}" y="13" font-size="11" text-anchor="end">now {last_v:g}</text>'
    return _frame(ident, title, top, body, len(shown), start, end)


def bar_chart(
    ident: str,
    title: str,
    bars: Sequence[tuple[float, float]],
    start: float,
    end: float,
    *,
    bar_seconds: float = 60.0,
    limit: float | None = None,
) -> str:
    """One bar per `bar_seconds` (bar start time, value); an optional dashed red `limit` line."""
    shown = [(t, v) for t, v in bars if start <= t < end]
    top = max([v for _, v in shown] + [limit or 0.0, 1.0])
    x = _scale(start, end, PAD_LEFT, WIDTH - PAD_RIGHT)
    y = _scale(0, top, HEIGHT - PAD_BOTTOM, PAD_TOP)
    width = max(x(start + bar_seconds) - x(start) - 1, 1)
    body = "".join(
        f'<rect x="{x(t):.1f}" y="{y(v):.1f}" width="{width:.1f}" height="{y(0) - y(v):.1f}" fill="#2da44e">'
        f"<title>{int(v)}</title></rect>"
        for t, v in shown
        if v > 0
    )
    if limit is not None:
        body += (
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y(limit):.1f}" y2="{y(limit):.1f}"'
            ' stroke="#cf222e" stroke-dasharray="4 3"/>'
            f'<text x="{WIDTH - PAD_RIGHT - 2}" y="{y(limit) - 3:.1f}" font-size="10" text-anchor="end"'
            f' fill="#cf222e">limit {limit:g}/min</text>'
        )
    return _frame(ident, title, top, body, sum(1 for _, v in shown if v > 0), start, end)
