"""Load-test results for people: a plain-text table and a self-contained HTML report.

Pure logic, no ops. Both are built from the same rows: per unit from its `UnitResult`, for the
application from `AppResult` (merged histograms, never averaged percentiles). Publish latency
and publish delay are recorded in microseconds and shown in ms with 3 decimals; end to end is
recorded and shown in whole ms. A latency family nobody recorded shows "-", never 0.

The HTML report has no external resources: inline CSS, and SVG charts drawn here.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence

from managers.results import (
    END_TO_END,
    FAMILIES,
    MB,
    PUBLISH_DELAY,
    PUBLISH_LATENCY,
    AppResult,
    Percentiles,
    UnitResult,
    decode,
)

CLOCK_NOTE = (
    "End to end is the consumer's receive time minus the producer's publish time, each read from "
    "its own pod's clock: it is only as accurate as the pods' clocks agree."
)
CLOCK_MARK = "[clocks]"
FAMILY_NAMES = {PUBLISH_LATENCY: "publish latency", PUBLISH_DELAY: "publish delay", END_TO_END: "end to end"}
# Percentiles shown, as (column heading, Percentiles attribute).
SHOWN = (("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max"))
MISSING = "-"
APPLICATION = "application"

# ---------------------------------------------------------------- rows shared by text and HTML


def _ms(value: float, family: str) -> float:
    """A family's recorded value in ms (publish latency and delay are recorded in us)."""
    return value / 1000.0 if family != END_TO_END else float(value)


def _latency_text(value: int, family: str) -> str:
    return f"{value / 1000:,.3f}" if family != END_TO_END else f"{value:,}"


def _count(value: int) -> str:
    return f"{value:,}"


def _failed(failed: Mapping[str, int], reasons: bool) -> str:
    total = sum(failed.values())
    if not reasons or not total:
        return _count(total)
    return f"{total:,} ({failure_reasons(failed)})"


def failure_reasons(failed: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in sorted(failed.items()) if count)


def _received(received: int, has_consumer: bool) -> str:
    return _count(received) if has_consumer or received else MISSING


def _mb(value: int) -> str:
    return f"{value / MB:,.2f}"


def _compressed_mb(value: int) -> str:
    # 0 compressed bytes means the engine did not report them (pulsar-perf) or sent nothing.
    return _mb(value) if value else MISSING


THROUGHPUT_HEADINGS = (
    "",
    "target msg/s",
    "achieved msg/s",
    "MB/s",
    "sent",
    "acknowledged",
    "received",
    "failed",
    "backlog",
    "payload MB",
    "compressed MB",
)


def _throughput_row(name: str, result: UnitResult | AppResult, has_consumer: bool, reasons: bool) -> list[str]:
    return [
        name,
        f"{result.target_rate:,.0f}",
        f"{result.achieved_rate:,.0f}",
        f"{result.achieved_mb_per_second:,.2f}",
        _count(result.sent),
        _count(result.acknowledged),
        _received(result.received, has_consumer),
        _failed(result.failed, reasons),
        _count(result.backlog),
        _mb(result.bytes_uncompressed),
        _compressed_mb(result.bytes_compressed),
    ]


def throughput_rows(app: AppResult, reasons: bool = False) -> list[list[str]]:
    """One row per unit, then the application's; columns as THROUGHPUT_HEADINGS.

    With `reasons`, the failed cell lists the failures by reason too.
    """
    rows = [_throughput_row(u.unit, u, bool(u.end_to_end), reasons) for u in app.units]
    rows.append(_throughput_row(APPLICATION, app, any(u.end_to_end for u in app.units), reasons))
    return rows


def family_heading(family: str) -> str:
    """Every family is shown in ms; end to end carries the clock mark."""
    mark = f" {CLOCK_MARK}" if family == END_TO_END else ""
    return f"{FAMILY_NAMES[family]} (ms){mark}"


LATENCY_HEADINGS = ("", "", *(heading for heading, _ in SHOWN), "count")


def _latency_cells(percentiles: Percentiles, family: str) -> list[str]:
    if percentiles.count == 0:
        return [MISSING] * (len(SHOWN) + 1)
    return [*(_latency_text(getattr(percentiles, attr), family) for _, attr in SHOWN), _count(percentiles.count)]


def latency_rows(app: AppResult) -> list[list[str]]:
    """Per family: a row per unit and the application's (from the merged histogram)."""
    rows = []
    for family in FAMILIES:
        named = [(u.unit, u.percentiles(family)) for u in app.units]
        named.append((APPLICATION, app.latency[family]))
        for index, (name, percentiles) in enumerate(named):
            rows.append([family_heading(family) if index == 0 else "", name, *_latency_cells(percentiles, family)])
    return rows


# ---------------------------------------------------------------- plain text


def _text_table(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell: text left-aligned in the first two, numbers right-aligned."""
    widths = [max(len(row[i]) for row in [headings, *rows]) for i in range(len(headings))]
    numeric_from = 2 if headings[1] == "" else 1

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if index >= numeric_from else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [line(headings), rule, *(line(row) for row in rows)]


def _wrapped(notes: Iterable[str]) -> list[str]:
    lines = []
    for note in notes:
        lines.extend(textwrap.wrap(note, width=100, initial_indent="- ", subsequent_indent="  "))
    return lines


def results_table(app: AppResult, title: str, notes: Sequence[str] = ()) -> str:
    """The results as a plain-text table: throughput per unit and application, then latencies.

    Elapsed is the longest unit's measured time. The end-to-end rows carry CLOCK_MARK, explained
    under the table with CLOCK_NOTE; `notes` follow it.
    """
    lines = [title, "=" * len(title), ""]
    lines.append(f"Throughput (measured for {app.elapsed_seconds:,.1f} s, MB = 10^6 bytes of payload)")
    lines.extend(_text_table(THROUGHPUT_HEADINGS, throughput_rows(app)))
    # Reasons go under the table: a terminal has no room for them in a column.
    lines.extend(f"failed on {u.unit}: {failure_reasons(u.failed)}" for u in app.units if u.failed_total)
    lines.append("")
    lines.append("Latency (publish latency and delay recorded in us, end to end in ms)")
    lines.extend(_text_table(LATENCY_HEADINGS, latency_rows(app)))
    lines.append("")
    lines.extend(_wrapped([f"{CLOCK_MARK} {CLOCK_NOTE}", *notes]))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- SVG charts

_WIDTH, _HEIGHT = 760, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 150, 20, 45
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")

Series = tuple[str, Sequence[tuple[float, float]]]


def _nice_step(span: float, ticks: int = 5) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `ticks` intervals over span."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.6g}"


def _chart(
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]] | None = None,
    x_max: float | None = None,
) -> str:
    """An SVG line chart (y from 0) with axes, ticks and a legend; the caller's labels are escaped."""
    points = [p for _, values in series for p in values]
    x_low = 0.0 if x_ticks is not None else min((x for x, _ in points), default=0.0)
    x_high = x_max if x_max is not None else max((x for x, _ in points), default=1.0)
    if x_high <= x_low:
        x_high = x_low + 1.0
    y_step = _nice_step(max((y for _, y in points), default=0.0))
    y_high = y_step * max(1, math.ceil(max((y for _, y in points), default=0.0) / y_step))
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return _TOP + plot_h - y / y_high * plot_h

    if x_ticks is None:
        step = _nice_step(x_high - x_low)
        first = math.ceil(x_low / step) * step
        x_ticks = [(first + i * step, _number(first + i * step)) for i in range(int((x_high - first) / step) + 1)]
    parts = [
        # Inline SVG in HTML needs no namespace declaration.
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    for i in range(round(y_high / y_step) + 1):
        y = i * y_step
        parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" class="grid"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{sy(y) + 4:.1f}" class="ytick">{html.escape(_number(y))}</text>')
    for x, label in x_ticks:
        if x_low <= x <= x_high:
            parts.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{_TOP}" y2="{_TOP + plot_h}" class="grid"/>')
            parts.append(f'<text x="{sx(x):.1f}" y="{_TOP + plot_h + 16}" class="xtick">{html.escape(label)}</text>')
    parts.append(f'<text x="{_LEFT + plot_w / 2}" y="{_HEIGHT - 6}" class="xlabel">{html.escape(x_label)}</text>')
    parts.append(
        f'<text x="14" y="{_TOP + plot_h / 2}" class="ylabel" '
        f'transform="rotate(-90 14 {_TOP + plot_h / 2})">{html.escape(y_label)}</text>'
    )
    for index, (name, values) in enumerate(series):
        colour = _COLOURS[index % len(_COLOURS)]
        coordinates = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        if len(values) == 1:
            x, y = values[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>')
        elif values:
            parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="2"/>')
        legend_y = _TOP + 10 + index * 18
        parts.append(
            f'<line x1="{_WIDTH - _RIGHT + 12}" x2="{_WIDTH - _RIGHT + 32}" y1="{legend_y}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="3"/>'
        )
        parts.append(f'<text x="{_WIDTH - _RIGHT + 38}" y="{legend_y + 4}" class="legend">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _interval_ends(app: AppResult) -> list[float]:
    """Each interval's end, in seconds since the measured phase began."""
    ends, elapsed = [], 0.0
    for interval in app.intervals:
        elapsed += interval.seconds
        ends.append(elapsed)
    return ends


def throughput_chart(app: AppResult) -> str:
    ends = _interval_ends(app)
    series: list[Series] = [("publish", list(zip(ends, (i.publish_rate for i in app.intervals), strict=True)))]
    if any(i.consume_rate for i in app.intervals):
        series.append(("consume", list(zip(ends, (i.consume_rate for i in app.intervals), strict=True))))
    if any(i.error_rate for i in app.intervals):
        series.append(("errors", list(zip(ends, (i.error_rate for i in app.intervals), strict=True))))
    return _chart(series, "seconds (end of interval)", "msg/s")


def latency_over_time_chart(app: AppResult, family: str) -> str | None:
    """p50 and p99 per interval in ms; None when no interval recorded this family."""
    ends = _interval_ends(app)
    recorded = [(end, i.latency[family]) for end, i in zip(ends, app.intervals, strict=True) if i.latency[family].count]
    if not recorded:
        return None
    series: list[Series] = [
        (name, [(end, _ms(getattr(p, attr), family)) for end, p in recorded])
        for name, attr in (("p50", "p50"), ("p99", "p99"))
    ]
    return _chart(series, "seconds (end of interval)", "ms")


def _nines(percentile: float) -> float:
    """The x of a percentile on the "nines" scale: 0 -> 0, 90 -> 1, 99 -> 2, 99.9 -> 3..."""
    return math.log10(100.0 / (100.0 - percentile))


def _nines_label(nines: int) -> str:
    return "0%" if nines == 0 else f"{100 - 100 / 10**nines:.{max(0, nines - 2)}f}%"


def percentile_points(encoded: str, family: str) -> tuple[list[tuple[float, float]], float]:
    """(nines, value in ms) along a histogram's percentile distribution, and the scale's end.

    As HdrHistogram's percentile plots: the scale ends where the sample runs out (log10 of the
    count, at least 99.9); the 100th percentile (the max) is drawn at that end.
    """
    histogram = decode(encoded)
    if histogram is None or histogram.get_total_count() == 0:
        return [], 0.0
    end = max(3.0, math.log10(histogram.get_total_count()))
    points: list[tuple[float, float]] = []
    for step in histogram.get_percentile_iterator(5):
        percentile = step.percentile_level_iterated_to
        x = end if percentile >= 100.0 else min(end, _nines(percentile))
        points.append((x, _ms(step.value_iterated_to, family)))
    points.append((end, _ms(histogram.get_max_value(), family)))
    # The iterator repeats its last point; a repeated point adds nothing to a line.
    return [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]], end


def percentile_chart(app: AppResult, family: str) -> str | None:
    points, end = percentile_points(app.histograms[family], family)
    if not points:
        return None
    ticks = [(float(n), _nines_label(n)) for n in range(math.floor(end) + 1)]
    return _chart([(FAMILY_NAMES[family], points)], "percentile", "ms", x_ticks=ticks, x_max=end)


# ---------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1.2em; }
dt { font-weight: 600; } dd { margin: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.app td { font-weight: 600; background: #f4f4f4; }
.note { font-size: 0.9em; color: #555; }
svg .plot { fill: #fff; stroke: #999; } svg .grid { stroke: #e4e4e4; }
svg text { font-size: 11px; fill: #333; }
svg .ytick { text-anchor: end; } svg .xtick, svg .xlabel, svg .ylabel { text-anchor: middle; }
"""


def _meta_value(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_meta_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(_meta_value(v) for v in value)
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _definition_list(meta: Mapping[str, object]) -> str:
    items = "".join(
        f"<dt>{html.escape(str(key))}</dt><dd>{html.escape(_meta_value(value))}</dd>" for key, value in meta.items()
    )
    return f"<dl>{items}</dl>"


def _html_table(headings: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    body = []
    for row in rows:
        css = ' class="app"' if APPLICATION in row[:2] else ""
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>' if i >= numeric_from else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(svg: str | None, caption: str) -> str:
    if svg is None:
        return f'<p class="note">{html.escape(caption)}: not recorded.</p>'
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def html_report(app: AppResult, meta: Mapping[str, object], title: str) -> str:
    """One self-contained HTML page of the result.

    What produced it (`meta`, every key, as a definition list), the results tables with the clock
    note, throughput and latency over time per interval, and percentile plots of the merged histograms.
    """
    clock = f'<p class="note">{html.escape(CLOCK_MARK)} {html.escape(CLOCK_NOTE)}</p>'
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>What produced this result</h2>",
        _definition_list(meta),
        "<h2>Results</h2>",
        f'<p class="note">Measured for {app.elapsed_seconds:,.1f} s; MB = 10^6 bytes of payload.</p>',
        _html_table(THROUGHPUT_HEADINGS, throughput_rows(app, reasons=True), numeric_from=1),
        _html_table(LATENCY_HEADINGS, latency_rows(app), numeric_from=2),
        clock,
        "<h2>Throughput over time</h2>",
    ]
    if app.intervals:
        parts.append(_figure(throughput_chart(app), "Acknowledged (publish) and received (consume) msg/s per interval"))
    else:
        parts.append('<p class="note">No intervals were recorded.</p>')
    parts.append("<h2>Latency over time</h2>")
    for family in FAMILIES:
        caption = f"{FAMILY_NAMES[family]}: p50 and p99 per interval (ms)"
        parts.append(_figure(latency_over_time_chart(app, family) if app.intervals else None, caption))
        if family == END_TO_END:
            parts.append(clock)
    parts.append("<h2>Latency percentiles (whole test, all units merged)</h2>")
    for family in FAMILIES:
        parts.append(_figure(percentile_chart(app, family), f"{FAMILY_NAMES[family]} by percentile (ms)"))
        if family == END_TO_END:
            parts.append(clock)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
