"""Load-test results: one unit's figures, their exact merge for the application, and OMB's file layout.

Pure logic, no ops. Latencies travel as HdrHistograms in the compressed base64 encoding that
Java's HdrHistogram writes (`Histogram.encodeIntoCompressedByteBuffer`, as OMB's workers and
pulsar-perf's `--histogram-file` logs use), read and written with the `hdrhistogram` package.
The application's percentiles come from the sum of the units' histograms, never from averaged
percentiles.

Units, as in the OpenMessaging Benchmark's workers:

- publish latency: acknowledgement minus actual send, microseconds;
- publish delay: actual minus intended send time, microseconds;
- end to end: consumer receive time minus the message's publish time, milliseconds (the pods'
  clocks must agree for this figure to mean anything).

All histograms keep 5 significant digits. Byte counts are payload bytes of acknowledged
messages; MB is 10^6 bytes.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hdrh.histogram import HdrHistogram

SIGNIFICANT_DIGITS = 5
PUBLISH_LATENCY = "publish_latency"
PUBLISH_DELAY = "publish_delay"
END_TO_END = "end_to_end"
FAMILIES = (PUBLISH_LATENCY, PUBLISH_DELAY, END_TO_END)
UNITS = {PUBLISH_LATENCY: "us", PUBLISH_DELAY: "us", END_TO_END: "ms"}
# Highest trackable value of a new histogram, per family (OMB's ranges: 60 s, 60 s, 12 h).
# A decoded histogram keeps the range it was written with; a merge widens to the largest.
HIGHEST = {PUBLISH_LATENCY: 60_000_000, PUBLISH_DELAY: 60_000_000, END_TO_END: 12 * 3600 * 1000}

PERCENTILES = {"p50": 50.0, "p75": 75.0, "p95": 95.0, "p99": 99.0, "p999": 99.9, "p9999": 99.99, "p99999": 99.999}
MB = 1_000_000


# ---------------------------------------------------------------- histograms


def new_histogram(family: str) -> HdrHistogram:
    """An empty histogram for one latency family, with 5 significant digits."""
    return HdrHistogram(1, HIGHEST[family], SIGNIFICANT_DIGITS)


def encode(histogram: HdrHistogram) -> str:
    """The compressed base64 encoding (Java HdrHistogram's `HISTF...` form) as text."""
    return histogram.encode().decode("ascii")


def encode_recorded(histogram: HdrHistogram) -> str:
    """`encode`, or "" when nothing was recorded (a family the workers did not measure)."""
    return encode(histogram) if histogram.get_total_count() else ""


def decode(encoded: str) -> HdrHistogram | None:
    """Decode a histogram; an empty string means none was recorded (None)."""
    if not encoded:
        return None
    return HdrHistogram.decode(encoded.encode("ascii"))


def merge_histograms(encoded: Iterable[str], family: str) -> HdrHistogram:
    """The exact sum of encoded histograms (counts added bucket by bucket, as `Histogram.add`)."""
    decoded = [h for h in (decode(e) for e in encoded) if h is not None]
    highest = max([HIGHEST[family], *(h.highest_trackable_value for h in decoded)])
    merged = HdrHistogram(1, highest, SIGNIFICANT_DIGITS)
    for histogram in decoded:
        merged.add(histogram)
    return merged


@dataclasses.dataclass(frozen=True)
class Percentiles:
    """A latency family's summary, in the family's unit (us or ms); all zero when nothing was recorded."""

    count: int
    mean: float
    p50: int
    p75: int
    p95: int
    p99: int
    p999: int
    p9999: int
    p99999: int
    max: int

    @classmethod
    def of(cls, histogram: HdrHistogram) -> Percentiles:
        """Summarise in one pass over the counts (the package's per-percentile scans are slow in Python).

        Same definitions as the package's `get_value_at_percentile` and `get_mean_value`.
        """
        total = histogram.get_total_count()
        if total == 0:
            return cls(0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0)
        last = histogram.get_counts_array_index(histogram.get_max_value())
        counts = histogram.counts[: last + 1]
        cumulative = list(itertools.accumulate(counts))
        values: dict[str, int] = {}
        for name, percentile in PERCENTILES.items():
            index = bisect.bisect_left(cumulative, histogram.get_target_count_at_percentile(percentile))
            values[name] = histogram.get_highest_equivalent_value(histogram.get_value_from_index(index))
        weighted = sum(
            count * histogram._hdr_median_equiv_value(histogram.get_value_from_index(index))
            for index, count in enumerate(counts)
            if count
        )
        return cls(count=total, mean=weighted / total, max=histogram.get_max_value(), **values)


# ---------------------------------------------------------------- one unit


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer, not {value!r}")
    return value


def _float(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{key} must be a non-negative number, not {value!r}")
    return float(value)


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, not {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Interval:
    """One reporting interval of one unit (OMB reports every 10 s): counts and its own histograms."""

    seconds: float
    sent: int = 0
    acknowledged: int = 0
    received: int = 0
    failed: int = 0
    backlog: int = 0
    publish_latency: str = ""
    publish_delay: str = ""
    end_to_end: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interval:
        return cls(
            seconds=_float(data, "seconds"),
            sent=_int(data, "sent"),
            acknowledged=_int(data, "acknowledged"),
            received=_int(data, "received"),
            failed=_int(data, "failed"),
            backlog=_int(data, "backlog"),
            **{family: _str(data, family) for family in FAMILIES},
        )


@dataclasses.dataclass(frozen=True)
class UnitResult:
    """What one unit measured in one test. Histograms are encoded strings ("" when none recorded)."""

    unit: str
    target_rate: float
    sent: int = 0
    acknowledged: int = 0
    received: int = 0
    failed: Mapping[str, int] = dataclasses.field(default_factory=dict)
    bytes_uncompressed: int = 0
    bytes_compressed: int = 0
    elapsed_seconds: float = 0.0
    backlog: int = 0
    publish_latency: str = ""
    publish_delay: str = ""
    end_to_end: str = ""
    intervals: tuple[Interval, ...] = ()
    state: str = "finished"  # finished, stopped (partial, by stop-load-test) or failed
    errors: tuple[str, ...] = ()  # why a worker failed, one line each
    found_rate: float = 0.0  # rate=max: the highest rate sustained (msg/s), else 0
    stability_cv: float = 0.0  # rate=max: coefficient of variation of the rate held
    notes: tuple[str, ...] = ()  # what the figures lack or approximate (e.g. pulsar-perf's)

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def achieved_rate(self) -> float:
        """Acknowledged messages per second."""
        return self.acknowledged / self.elapsed_seconds if self.elapsed_seconds else 0.0

    @property
    def achieved_mb_per_second(self) -> float:
        """Payload MB (before compression) acknowledged per second."""
        return self.bytes_uncompressed / MB / self.elapsed_seconds if self.elapsed_seconds else 0.0

    def percentiles(self, family: str) -> Percentiles:
        return Percentiles.of(merge_histograms([getattr(self, family)], family))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UnitResult:
        """Parse `to_json`'s output; ValueError on a missing unit or a field of the wrong type."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a unit result is a JSON object")
        unit = data.get("unit")
        if not isinstance(unit, str) or not unit:
            raise ValueError(f"unit must be a non-empty string, not {unit!r}")
        failed = data.get("failed", {})
        if not isinstance(failed, dict):
            raise ValueError(f"failed must map reasons to counts, not {failed!r}")
        intervals = data.get("intervals", [])
        if not isinstance(intervals, list) or not all(isinstance(i, dict) for i in intervals):
            raise ValueError("intervals must be a list of objects")
        return cls(
            unit=unit,
            target_rate=_float(data, "target_rate"),
            sent=_int(data, "sent"),
            acknowledged=_int(data, "acknowledged"),
            received=_int(data, "received"),
            failed={str(reason): _int(failed, reason) for reason in failed},
            bytes_uncompressed=_int(data, "bytes_uncompressed"),
            bytes_compressed=_int(data, "bytes_compressed"),
            elapsed_seconds=_float(data, "elapsed_seconds"),
            backlog=_int(data, "backlog"),
            intervals=tuple(Interval.from_dict(i) for i in intervals),
            state=_str(data, "state") or "finished",
            errors=tuple(str(e) for e in data.get("errors") or ()),
            found_rate=_float(data, "found_rate"),
            stability_cv=_float(data, "stability_cv"),
            notes=tuple(str(n) for n in data.get("notes") or ()),
            **{family: _str(data, family) for family in FAMILIES},
        )


def _worst_state(states: Iterable[str]) -> str:
    """A unit is failed if any worker failed, stopped if any stopped, finished otherwise."""
    found = set(states)
    return next((state for state in ("failed", "stopped") if state in found), "finished")


def _producers_elapsed(parsed: Sequence[UnitResult], workers: Sequence[Mapping[str, Any]]) -> float:
    """The unit's measured time: its producers' (a consumer runs longer, to drain), else any worker's."""
    producers = [r.elapsed_seconds for r, w in zip(parsed, workers, strict=True) if w.get("role") != "consumer"]
    return max(producers, default=0.0) or max((r.elapsed_seconds for r in parsed), default=0.0)


def combine_workers(unit: str, workers: Sequence[Mapping[str, Any]]) -> UnitResult:
    """One unit's result from its workers' result files (the engine's `<worker>.result.json`).

    Producers' counts and publish histograms add up; the consumer brings `received` and end to
    end. Intervals are combined by index (the workers of a unit start together). A worker's
    `max_search` adds its found rate; the unit's stability is the largest of its workers'.
    """
    # The engine's own `errors` (counts by reason) are in `failed` already; a worker's `error` is kept below.
    parsed = [UnitResult.from_json(json.dumps({**w, "unit": unit, "errors": []})) for w in workers]
    failed: Counter[str] = Counter()
    for result in parsed:
        failed.update(result.failed)
    intervals = []
    for index in range(max((len(r.intervals) for r in parsed), default=0)):
        group = [r.intervals[index] for r in parsed if index < len(r.intervals)]
        intervals.append(
            Interval(
                seconds=max(i.seconds for i in group),
                sent=sum(i.sent for i in group),
                acknowledged=sum(i.acknowledged for i in group),
                received=sum(i.received for i in group),
                failed=sum(i.failed for i in group),
                backlog=sum(i.backlog for i in group),
                **{f: encode_recorded(merge_histograms((getattr(i, f) for i in group), f)) for f in FAMILIES},
            )
        )
    searches = [w.get("max_search") for w in workers if isinstance(w.get("max_search"), dict)]
    return UnitResult(
        unit=unit,
        target_rate=sum(r.target_rate for r in parsed),
        sent=sum(r.sent for r in parsed),
        acknowledged=sum(r.acknowledged for r in parsed),
        received=sum(r.received for r in parsed),
        failed=dict(failed),
        bytes_uncompressed=sum(r.bytes_uncompressed for r in parsed),
        bytes_compressed=sum(r.bytes_compressed for r in parsed),
        elapsed_seconds=_producers_elapsed(parsed, workers),
        backlog=sum(r.backlog for r in parsed),
        intervals=tuple(intervals),
        state=_worst_state(str(w.get("state") or "finished") for w in workers),
        errors=tuple(str(w["error"]) for w in workers if w.get("error")),
        found_rate=sum(float(s.get("found_rate") or 0.0) for s in searches if s),
        stability_cv=max((float(s.get("stability_cv") or 0.0) for s in searches if s), default=0.0),
        notes=tuple(dict.fromkeys(n for r in parsed for n in r.notes)),
        **{f: encode_recorded(merge_histograms((getattr(r, f) for r in parsed), f)) for f in FAMILIES},
    )


# ---------------------------------------------------------------- the application


@dataclasses.dataclass(frozen=True)
class IntervalSummary:
    """One interval across every unit: summed counts and rates, merged histograms."""

    seconds: float
    publish_rate: float
    consume_rate: float
    error_rate: float
    backlog: int
    latency: Mapping[str, Percentiles]


@dataclasses.dataclass(frozen=True)
class AppResult:
    """The whole application: sums over the units, percentiles of the merged histograms."""

    units: tuple[UnitResult, ...]
    target_rate: float
    sent: int
    acknowledged: int
    received: int
    failed: Mapping[str, int]
    bytes_uncompressed: int
    bytes_compressed: int
    elapsed_seconds: float
    backlog: int
    achieved_rate: float
    achieved_mb_per_second: float
    histograms: Mapping[str, str]
    latency: Mapping[str, Percentiles]
    intervals: tuple[IntervalSummary, ...]

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


def _merge_intervals(units: Sequence[UnitResult]) -> tuple[IntervalSummary, ...]:
    """Interval i of the application is interval i of every unit that has one (units report in step)."""
    summaries = []
    for index in range(max((len(u.intervals) for u in units), default=0)):
        group = [u.intervals[index] for u in units if index < len(u.intervals)]

        def rate(count: str, group: list[Interval] = group) -> float:
            return sum(getattr(i, count) / i.seconds for i in group if i.seconds)

        summaries.append(
            IntervalSummary(
                seconds=max(i.seconds for i in group),
                publish_rate=rate("acknowledged"),
                consume_rate=rate("received"),
                error_rate=rate("failed"),
                backlog=sum(i.backlog for i in group),
                latency={
                    family: Percentiles.of(merge_histograms((getattr(i, family) for i in group), family))
                    for family in FAMILIES
                },
            )
        )
    return tuple(summaries)


def merge(units: Sequence[UnitResult]) -> AppResult:
    """Sum the units' counts and rates and add their histograms exactly.

    The achieved rate is the sum of the units' own rates (they run side by side); elapsed is the
    longest unit's.
    """
    failed: Counter[str] = Counter()
    for unit in units:
        failed.update(unit.failed)
    merged = {family: merge_histograms((getattr(u, family) for u in units), family) for family in FAMILIES}
    return AppResult(
        units=tuple(units),
        target_rate=sum(u.target_rate for u in units),
        sent=sum(u.sent for u in units),
        acknowledged=sum(u.acknowledged for u in units),
        received=sum(u.received for u in units),
        failed=dict(failed),
        bytes_uncompressed=sum(u.bytes_uncompressed for u in units),
        bytes_compressed=sum(u.bytes_compressed for u in units),
        elapsed_seconds=max((u.elapsed_seconds for u in units), default=0.0),
        backlog=sum(u.backlog for u in units),
        achieved_rate=sum(u.achieved_rate for u in units),
        achieved_mb_per_second=sum(u.achieved_mb_per_second for u in units),
        histograms={family: encode(histogram) for family, histogram in merged.items()},
        latency={family: Percentiles.of(histogram) for family, histogram in merged.items()},
        intervals=_merge_intervals(units),
    )


# ---------------------------------------------------------------- OpenMessaging Benchmark layout


@dataclasses.dataclass(frozen=True)
class OmbMeta:
    """What OMB records about the test itself (its workload file's fields)."""

    workload: str
    driver: str
    message_size: int
    topics: int = 1
    partitions: int = 1
    producers_per_topic: int = 1
    consumers_per_topic: int = 0


# OMB's field prefix and the unit it writes each family in, with our histogram's unit divisor.
_OMB_FAMILIES = {
    PUBLISH_LATENCY: ("publishLatency", 1000.0),  # recorded in us, written in ms (double)
    PUBLISH_DELAY: ("publishDelayLatency", None),  # recorded and written in us (long)
    END_TO_END: ("endToEndLatency", 1.0),  # recorded and written in ms (double)
}
_OMB_SUFFIXES = {key: key[1:] + "pct" for key in PERCENTILES}  # p999 -> 999pct


def _omb_value(value: float, divisor: float | None) -> float | int:
    return int(value) if divisor is None else value / divisor


def _omb_family(percentiles: Percentiles, prefix: str, divisor: float | None) -> dict[str, float | int]:
    fields: dict[str, float | int] = {f"{prefix}Avg": percentiles.mean / (divisor or 1.0)}
    for attribute, suffix in _OMB_SUFFIXES.items():
        fields[f"{prefix}{suffix}"] = _omb_value(getattr(percentiles, attribute), divisor)
    fields[f"{prefix}Max"] = _omb_value(percentiles.max, divisor)
    return fields


def _omb_quantiles(encoded: str, family: str, divisor: float | None) -> dict[str, float | int]:
    """OMB's quantile map: `percentiles(100)` iteration, percentile -> value, keys as JSON writes doubles."""
    histogram = merge_histograms([encoded], family)
    return {
        repr(float(step.percentile_level_iterated_to)): _omb_value(step.value_iterated_to, divisor)
        for step in histogram.get_percentile_iterator(100)
    }


def omb_json(app: AppResult, meta: OmbMeta) -> dict[str, Any]:
    """The application's result in the field layout of an OMB result file (its `TestResult`).

    Filled: `workload`, `driver`, `messageSize`, `topics`, `partitions`, `producersPerTopic`,
    `consumersPerTopic`; per interval (in the units' reporting intervals; OMB's charts assume
    10 s) `publishRate`, `publishErrorRate`, `consumeRate`, `backlog` and, for each of
    `publishLatency`, `publishDelayLatency`, `endToEndLatency`, the series
    `{Avg,50pct,75pct,95pct,99pct,999pct,9999pct,99999pct,Max}`; the same as single
    `aggregated...` values over the whole test; and
    `aggregated{PublishLatency,PublishDelayLatency,EndToEndLatency}Quantiles`.
    OMB's units: publish latency in ms (double), publish delay in us (integer), end to end in ms
    (newer OMB records end to end in us and writes ms with decimals; ours are whole ms).

    Not filled: the series are empty when the units reported no intervals (`create_charts.py`
    needs them non-empty to draw its time charts; its quantile charts still work). Fields of
    newer OMB versions beyond `TestResult` above (e.g. consumer-side error rates) are absent.
    """
    result: dict[str, Any] = {
        "workload": meta.workload,
        "driver": meta.driver,
        "messageSize": meta.message_size,
        "topics": meta.topics,
        "partitions": meta.partitions,
        "producersPerTopic": meta.producers_per_topic,
        "consumersPerTopic": meta.consumers_per_topic,
        "publishRate": [i.publish_rate for i in app.intervals],
        "publishErrorRate": [i.error_rate for i in app.intervals],
        "consumeRate": [i.consume_rate for i in app.intervals],
        "backlog": [i.backlog for i in app.intervals],
    }
    for family, (prefix, divisor) in _OMB_FAMILIES.items():
        aggregated = "aggregated" + prefix[0].upper() + prefix[1:]
        result.update({key: [] for key in _omb_family(app.latency[family], prefix, divisor)})
        for interval in app.intervals:
            for key, value in _omb_family(interval.latency[family], prefix, divisor).items():
                result[key].append(value)
        result.update(_omb_family(app.latency[family], aggregated, divisor))
        result[f"{aggregated}Quantiles"] = _omb_quantiles(app.histograms[family], family, divisor)
    return result
