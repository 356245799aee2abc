"""Charts as inline SVG, drawn on the server: the usage dashboard loads no script and no CDN.

Every mark carries its exact number for tests and for people (``data-label``,
``data-series``, ``data-value`` and a ``<title>`` tooltip); the figure names its
chart in ``data-chart``. Labels come from operators and clients (model names, key
names), so every text is escaped.
"""

import math
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import mark_safe

COLUMN_WIDTH, COLUMN_HEIGHT = 640, 220
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 12, 12, 30
BAR_HEIGHT, BAR_LABEL_WIDTH, BAR_WIDTH = 22, 200, 640
MAX_X_LABELS = 8


@dataclass
class Series:
    name: str
    values: list  # one per label; None: no value (drawn as nothing)
    color: str


def machine(value) -> str:
    """The exact number, as data-value carries it: no exponent, no thousands separator."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = f"{value.normalize():f}"
        return text if text != "-0" else "0"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def human(value, unit="") -> str:
    if value is None:
        return "–"
    if unit == "$":
        if value >= 1 or value == 0:
            return f"${value:,.2f}"
        cents, rest = f"{value:.4f}"[:4], f"{value:.4f}"[4:].rstrip("0")
        return f"${cents}{rest}"  # at least the cents, and up to four decimals
    if unit == "ms":
        return f"{value:,.0f} ms" if value >= 10 else f"{value:,.1f} ms"
    number = float(value)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= size:
            return f"{number / size:.3g}{suffix}"
    return f"{number:g}"


def axis_top(largest: float, whole: bool) -> float:
    """The top of an axis of four equal steps of 1, 2, 2.5 or 5 × 10^k, just above ``largest``.

    ``whole``: counts, whose gridlines should fall on whole numbers (no step of 2.5 or below 1).
    """
    if largest <= 0:
        return 4.0 if whole else 1.0
    wanted = largest / 4
    power = 10 ** math.floor(math.log10(wanted))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * power
        if whole and (step < 1 or step != int(step)):
            continue
        if step * (1 + 1e-9) >= wanted:
            return 4 * step
    return 40 * power


def _top_of(series: list[Series], stacked: bool) -> float:
    totals = []
    for i in range(len(series[0].values)):
        values = [float(s.values[i] or 0) for s in series]
        totals.append(sum(values) if stacked else max(values))
    whole = all(isinstance(v, int) for s in series for v in s.values if v is not None)
    return axis_top(max(totals, default=0), whole)


def _figure(chart_id, title, svg, series, unit, empty):
    legend = ""
    if len(series) > 1:
        legend = "".join(
            f'<span class="legend-item"><i style="background:{s.color}"></i>{escape(s.name)}</span>'
            for s in series
        )
        legend = f'<div class="legend">{legend}</div>'
    note = '<p class="chart-empty">No usage in this range.</p>' if empty else ""
    return mark_safe(  # noqa: S308 - every text above went through escape()
        f'<figure class="chart" data-chart="{escape(chart_id)}" data-unit="{escape(unit)}">'
        f"<figcaption>{escape(title)}</figcaption>{svg}{legend}{note}</figure>"
    )


def _tooltip(label, series_name, value, unit):
    return f"<title>{escape(label)} · {escape(series_name)}: {escape(human(value, unit))}</title>"


def _mark(shape, label, series, value, unit, **attributes):
    attrs = " ".join(f'{name.replace("_", "-")}="{escape(v)}"' for name, v in attributes.items())
    return (
        f'<{shape} class="{"bar" if shape == "rect" else "point"}" data-label="{escape(label)}" '
        f'data-series="{escape(series.name)}" data-value="{machine(value)}" {attrs}>'
        f"{_tooltip(label, series.name, value, unit)}</{shape}>"
    )


def _y_axis(top, unit, width, height):
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    parts = []
    for i in range(5):
        value = top * i / 4
        y = MARGIN_TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" x2="{width - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(human(value, unit))}</text>"
        )
    return "".join(parts)


def _x_labels(labels, x_of, height, short):
    step = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    return "".join(
        f'<text class="tick" x="{x_of(i):.1f}" y="{height - 10}" text-anchor="middle">'
        f"{escape(short(label))}</text>"
        for i, label in enumerate(labels)
        if i % step == 0
    )


def column_chart(chart_id, title, labels, series, *, unit="", stacked=True, short=lambda label: label):
    """Vertical bars, one column per label (days), series stacked or side by side."""
    width, height = COLUMN_WIDTH, COLUMN_HEIGHT
    plot_w, plot_h = width - MARGIN_LEFT - MARGIN_RIGHT, height - MARGIN_TOP - MARGIN_BOTTOM
    top = _top_of(series, stacked)
    slot = plot_w / max(len(labels), 1)
    bar_w = slot * (0.7 if stacked else 0.7 / len(series))
    parts = [_y_axis(top, unit, width, height)]
    for i, label in enumerate(labels):
        base = 0.0
        for j, s in enumerate(series):
            value = s.values[i]
            number = float(value or 0)
            h = plot_h * number / top
            x = MARGIN_LEFT + slot * i + slot * 0.15 + (0 if stacked else bar_w * j)
            y = MARGIN_TOP + plot_h - h - (plot_h * base / top if stacked else 0)
            if stacked:
                base += number
            parts.append(
                _mark(
                    "rect",
                    label,
                    s,
                    value,
                    unit,
                    x=f"{x:.1f}",
                    y=f"{y:.1f}",
                    width=f"{bar_w:.1f}",
                    height=f"{h:.1f}",
                    fill=s.color,
                )
            )
    parts.append(_x_labels(labels, lambda i: MARGIN_LEFT + slot * (i + 0.5), height, short))
    svg = (
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="xMinYMin meet">{"".join(parts)}</svg>'
    )
    return _figure(chart_id, title, svg, series, unit, not any(v for s in series for v in s.values))


def line_chart(chart_id, title, labels, series, *, unit="", short=lambda label: label):
    """Lines over the labels (days); a label without a value breaks the line."""
    width, height = COLUMN_WIDTH, COLUMN_HEIGHT
    plot_w, plot_h = width - MARGIN_LEFT - MARGIN_RIGHT, height - MARGIN_TOP - MARGIN_BOTTOM
    top = _top_of(series, stacked=False)
    slot = plot_w / max(len(labels), 1)
    parts = [_y_axis(top, unit, width, height)]

    def x_of(i):
        return MARGIN_LEFT + slot * (i + 0.5)

    for s in series:
        runs, run = [], []
        for i, value in enumerate(s.values):
            if value is None:
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{x_of(i):.1f},{MARGIN_TOP + plot_h - plot_h * float(value) / top:.1f}")
        if run:
            runs.append(run)
        for points in runs:
            parts.append(
                f'<polyline fill="none" stroke="{s.color}" stroke-width="2" points="{" ".join(points)}"/>'
            )
        for i, value in enumerate(s.values):
            if value is not None:
                y = MARGIN_TOP + plot_h - plot_h * float(value) / top
                parts.append(
                    _mark(
                        "circle",
                        labels[i],
                        s,
                        value,
                        unit,
                        cx=f"{x_of(i):.1f}",
                        cy=f"{y:.1f}",
                        r="3",
                        fill=s.color,
                    )
                )
    parts.append(_x_labels(labels, x_of, height, short))
    svg = (
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="xMinYMin meet">{"".join(parts)}</svg>'
    )
    return _figure(
        chart_id, title, svg, series, unit, not any(v is not None for s in series for v in s.values)
    )


def bar_chart(chart_id, title, labels, series, *, unit="", stacked=True):
    """Horizontal bars, one row per label (models, keys, tenants)."""
    rows = max(len(labels), 1)
    height = MARGIN_TOP + rows * BAR_HEIGHT + MARGIN_BOTTOM
    width = BAR_WIDTH
    plot_w = width - BAR_LABEL_WIDTH - MARGIN_RIGHT
    top = _top_of(series, stacked) if labels else 1.0
    parts = []
    for i in range(5):
        x = BAR_LABEL_WIDTH + plot_w * i / 4
        parts.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_TOP}" y2="{height - MARGIN_BOTTOM}"/>'
        )
        anchor = "end" if i == 4 else "middle"  # the last one would overflow the right edge
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{height - 10}" text-anchor="{anchor}">'
            f"{escape(human(top * i / 4, unit))}</text>"
        )
    thickness = BAR_HEIGHT * (0.7 if stacked else 0.7 / len(series))
    for i, label in enumerate(labels):
        y0 = MARGIN_TOP + i * BAR_HEIGHT + BAR_HEIGHT * 0.15
        shown = label if len(label) <= 30 else label[:29] + "…"
        parts.append(
            f'<text class="row-label" x="{BAR_LABEL_WIDTH - 8}" y="{y0 + BAR_HEIGHT * 0.5:.1f}" '
            f'text-anchor="end">{escape(shown)}<title>{escape(label)}</title></text>'
        )
        base = 0.0
        for j, s in enumerate(series):
            value = s.values[i]
            number = float(value or 0)
            w = plot_w * number / top
            x = BAR_LABEL_WIDTH + (plot_w * base / top if stacked else 0)
            y = y0 + (0 if stacked else thickness * j)
            if stacked:
                base += number
            parts.append(
                _mark(
                    "rect",
                    label,
                    s,
                    value,
                    unit,
                    x=f"{x:.1f}",
                    y=f"{y:.1f}",
                    width=f"{w:.1f}",
                    height=f"{thickness:.1f}",
                    fill=s.color,
                )
            )
    svg = (
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="xMinYMin meet">{"".join(parts)}</svg>'
    )
    return _figure(chart_id, title, svg, series, unit, not labels)
