"""loadgen-k8s report: the plain-text results table and the self-contained HTML report."""

from __future__ import annotations

import itertools
import math
import re
from html.parser import HTMLParser

from loadgen_k8s.managers.report import (
    APPLICATION,
    CLOCK_MARK,
    CLOCK_NOTE,
    LATENCY_HEADINGS,
    THROUGHPUT_HEADINGS,
    html_report,
    latency_rows,
    percentile_points,
    results_table,
    throughput_rows,
)
from loadgen_k8s.managers.results import (
    END_TO_END,
    PUBLISH_DELAY,
    PUBLISH_LATENCY,
    Interval,
    UnitResult,
    encode,
    merge,
    new_histogram,
)


def encoded(values: list[int], family: str) -> str:
    histogram = new_histogram(family)
    for value in values:
        histogram.record_value(value)
    return encode(histogram)


def interval(latency_us: int, delay_us: int | None, end_to_end_ms: int | None) -> Interval:
    return Interval(
        seconds=10.0,
        sent=1000,
        acknowledged=1000,
        received=1000 if end_to_end_ms else 0,
        publish_latency=encoded([latency_us] * 1000, PUBLISH_LATENCY),
        publish_delay=encoded([delay_us] * 1000, PUBLISH_DELAY) if delay_us else "",
        end_to_end=encoded([end_to_end_ms] * 1000, END_TO_END) if end_to_end_ms else "",
    )


def unit(name: str, latency_us: int, delay_us: int | None, end_to_end_ms: int | None, **fields: object) -> UnitResult:
    """A unit with 2000 messages over 20 s (two intervals), every latency of a family the same value."""
    values: dict[str, object] = {
        "target_rate": 100.0,
        "sent": 2000,
        "acknowledged": 2000,
        "received": 2000 if end_to_end_ms else 0,
        "elapsed_seconds": 20.0,
        "bytes_uncompressed": 200_000,
        "bytes_compressed": 80_000,
        "publish_latency": encoded([latency_us] * 2000, PUBLISH_LATENCY),
        "publish_delay": encoded([delay_us] * 2000, PUBLISH_DELAY) if delay_us else "",
        "end_to_end": encoded([end_to_end_ms] * 2000, END_TO_END) if end_to_end_ms else "",
        "intervals": (interval(latency_us, delay_us, end_to_end_ms),) * 2,
    }
    values.update(fields)
    return UnitResult(unit=name, **values)  # type: ignore[arg-type]


def two_units() -> list[UnitResult]:
    """Unit 0 with a consumer; unit 1 like pulsar-perf: no publish delay, no end to end."""
    return [
        unit("loadgen-k8s/0", 1500, 250, 12, failed={"TimeoutException": 3}),
        unit("loadgen-k8s/1", 2500, None, None, bytes_compressed=0),
    ]


# ---------------------------------------------------------------- the table


def test_rows_hold_the_known_figures() -> None:
    # Given two units with known latencies (1.5 ms and 2.5 ms publish latency, 2000 messages each)
    app = merge(two_units())

    # When the rows are built
    throughput = {row[0]: dict(zip(THROUGHPUT_HEADINGS, row, strict=True)) for row in throughput_rows(app)}
    latency = latency_rows(app)

    # Then each unit and the application have their rate, counts and bytes
    assert list(throughput) == ["loadgen-k8s/0", "loadgen-k8s/1", APPLICATION]
    assert throughput[APPLICATION]["target msg/s"] == "200"
    assert throughput[APPLICATION]["achieved msg/s"] == "200"
    assert throughput["loadgen-k8s/0"]["achieved msg/s"] == "100"
    assert throughput[APPLICATION]["MB/s"] == "0.02"
    assert throughput[APPLICATION]["sent"] == "4,000"
    assert throughput["loadgen-k8s/0"]["failed"] == "3"
    assert throughput[APPLICATION]["payload MB"] == "0.40"
    assert throughput[APPLICATION]["compressed MB"] == "0.08"
    # And what was not measured is "-", not 0
    assert throughput["loadgen-k8s/1"]["received"] == "-"
    assert throughput["loadgen-k8s/1"]["compressed MB"] == "-"
    assert throughput["loadgen-k8s/0"]["received"] == "2,000"

    # And the latencies come in ms: the application's from the merged histogram (half 1.5, half 2.5 ms)
    by_name = {(family, row[1]): row[2:] for family, row in zip(_families(latency), latency, strict=True)}
    assert by_name[PUBLISH_LATENCY, "loadgen-k8s/0"] == ["1.500", "1.500", "1.500", "1.500", "1.500", "2,000"]
    assert by_name[PUBLISH_LATENCY, APPLICATION] == ["1.500", "2.500", "2.500", "2.500", "2.500", "4,000"]
    assert by_name[PUBLISH_DELAY, "loadgen-k8s/0"] == ["0.250"] * 5 + ["2,000"]
    assert by_name[PUBLISH_DELAY, "loadgen-k8s/1"] == ["-"] * 6
    assert by_name[PUBLISH_DELAY, APPLICATION] == ["0.250"] * 5 + ["2,000"]
    assert by_name[END_TO_END, "loadgen-k8s/0"] == ["12"] * 5 + ["2,000"]
    assert by_name[END_TO_END, "loadgen-k8s/1"] == ["-"] * 6


def _families(rows: list[list[str]]) -> list[str]:
    """The family of each latency row (the heading sits on the first row of its group)."""
    names = {"publish latency": PUBLISH_LATENCY, "publish delay": PUBLISH_DELAY, "end to end": END_TO_END}
    families, current = [], ""
    for row in rows:
        if row[0]:
            current = next(family for name, family in names.items() if row[0].startswith(name))
        families.append(current)
    return families


def test_table_has_every_column_the_clock_note_and_the_notes() -> None:
    app = merge(two_units())
    table = results_table(app, "Load test 20261130-031500-ab12", notes=["pulsar-perf has no publish delay."])
    lines = table.splitlines()

    assert lines[0] == "Load test 20261130-031500-ab12"
    for heading in [*THROUGHPUT_HEADINGS[1:], *LATENCY_HEADINGS[2:]]:
        assert heading in table
    for name in ("loadgen-k8s/0", "loadgen-k8s/1", APPLICATION):
        assert name in table
    # end to end carries the mark, explained under the table
    assert any(line.startswith(f"end to end (ms) {CLOCK_MARK}") for line in lines)
    assert " ".join(table.split()).count(" ".join(f"{CLOCK_MARK} {CLOCK_NOTE}".split())) == 1
    assert "failed on loadgen-k8s/0: TimeoutException 3" in table
    assert "- pulsar-perf has no publish delay." in table
    # a unit without the family shows "-" in every latency cell, never a zero
    delay = next(index for index, line in enumerate(lines) if line.startswith("publish delay (ms)"))
    assert lines[delay + 1].split() == ["loadgen-k8s/1", *["-"] * 6]
    assert "0.000" not in table
    # numbers line up: every latency row is as long as its heading row or shorter
    assert max(len(line) for line in lines if not line.startswith("- ")) <= 160


def test_table_of_an_empty_test() -> None:
    table = results_table(merge([]), "nothing ran")
    assert APPLICATION in table
    assert "publish latency (ms)" in table


# ---------------------------------------------------------------- HTML


class Checker(HTMLParser):
    """Fails on tags closed out of order; records tags, attributes and text."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "rect", "line", "circle", "polyline"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        assert self.stack.pop() == tag, f"</{tag}> out of order"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


META = {
    "units": 2,
    "rate (msg/s)": 200,
    "payload": "iot-avro <script>alert(1)</script>",
    "encoded size (B)": 87.5,
    "batching": {"delay ms": 1, "max messages": 1000},
    "brokers": ["pulsar-k8s/0", "pulsar-k8s/1"],
    "Pulsar & version": "4.0.8",
}


def test_html_is_self_contained_and_escaped() -> None:
    # Given a result with all three families on one unit and none on the other
    app = merge(two_units())

    # When the report is rendered
    page = html_report(app, META, "Load test <1> & co")

    # Then it parses, every element closed in order
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    # And it needs nothing from outside: no scripts, no links, no external sources
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page
    assert not any(name in {"src", "href"} for name, _ in checker.attributes)
    assert "link" not in checker.tags
    # And every meta key and value is there, escaped
    text = "".join(checker.text)
    assert "iot-avro <script>alert(1)</script>" in text
    assert "iot-avro &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Pulsar &amp; version" in page
    assert "delay ms: 1, max messages: 1000" in text
    assert "pulsar-k8s/0, pulsar-k8s/1" in text
    assert "87.5" in text
    assert "<title>Load test &lt;1&gt; &amp; co</title>" in page
    # And the charts: throughput, latency over time (3 families), percentile plots (3 families)
    assert checker.tags.count("svg") == 7
    assert checker.tags.count("polyline") >= 7
    assert "99.9%" in text
    # And the tables, with the clock note next to end to end
    assert checker.tags.count("table") == 2
    assert "TimeoutException 3" in text
    assert text.count(CLOCK_NOTE) == 3
    assert f"end to end (ms) {CLOCK_MARK}" in text


def test_html_without_intervals_or_families_says_so() -> None:
    # Given a pulsar-perf-like unit without intervals, publish delay or end to end
    app = merge([unit("loadgen-k8s/0", 1500, None, None, intervals=())])

    page = html_report(app, {}, "empty")
    checker = Checker()
    checker.feed(page)
    checker.close()

    assert checker.stack == []
    assert "No intervals were recorded." in page
    assert "end to end by percentile (ms): not recorded." in page
    assert checker.tags.count("svg") == 1  # the publish latency percentile plot


def test_percentile_points_follow_the_histogram() -> None:
    # Given end-to-end latencies of 1..1000 ms, each once
    points, end = percentile_points(encoded(list(range(1, 1001)), END_TO_END), END_TO_END)

    # Then the scale runs to 3 nines (log10 of the count) and starts at the minimum
    assert end == 3.0
    assert points[0] == (0.0, 1.0)
    assert points[-1] == (3.0, 1000.0)
    # And along the way the value near p99 (x = 2) is about 990 ms, the curve never falling
    near_99 = min(points, key=lambda point: abs(point[0] - 2.0))
    assert abs(near_99[0] - 2.0) < 0.05
    assert 985.0 <= near_99[1] <= 995.0
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(points))
    assert len(set(points)) == len(points)
    # And publish latencies come back in ms
    points_us, _ = percentile_points(encoded([1500] * 10, PUBLISH_LATENCY), PUBLISH_LATENCY)
    assert {y for _, y in points_us} == {1.5}
    assert percentile_points("", PUBLISH_DELAY) == ([], 0.0)


def test_chart_coordinates_are_finite_numbers() -> None:
    page = html_report(merge(two_units()), META, "t")
    numbers = re.findall(r'\s(?:x|y|x1|x2|y1|y2|cx|cy)="([^"]+)"', page)
    assert numbers
    assert all(math.isfinite(float(n)) for n in numbers)
