"""The pipeline's counters, read from the Prometheus text its two runners serve (pure logic).

The source's Java instance serves `pulsar_source_*`; the Python function instance serves
`pulsar_function_*`, and our function's own counts as the summary `pulsar_function_user_metric`
(label `metric`: `enriched`, `dead_lettered`, `source_lag_ms`, `publish_failed`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[A-Za-z_][A-Za-z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (comments and unreadable lines skipped)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        labels = {m["key"]: m["value"] for m in _LABEL.finditer(match["labels"] or "")}
        samples.append(Sample(match["name"], labels, value))
    return samples


def total(samples: list[Sample], name: str, **labels: str) -> float | None:
    """Sum of the samples called `name` whose labels include `labels`; None if there is none."""
    values = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()) and not math.isnan(s.value)
    ]
    return math.fsum(values) if values else None


@dataclass(frozen=True)
class PipelineCounts:
    """What cdc-status reports of the pipeline's traffic since its runners started."""

    captured: int | None  # records the source wrote to Pulsar: changes, and Debezium's heartbeats
    source_errors: int | None
    received: int | None  # changes the function read
    enriched: int | None
    dead_lettered: int | None
    publish_failed: int | None
    last_change_ms: int | None  # when the function last processed a change (epoch ms)
    last_lag_ms: float | None  # mean commit-to-enrichment lag over the function's life


def pipeline_counts(source_text: str | None, function_text: str | None) -> PipelineCounts:
    source = parse(source_text or "")
    function = parse(function_text or "")

    def count(samples: list[Sample], name: str, **labels: str) -> int | None:
        value = total(samples, name, **labels)
        return int(value) if value is not None else None

    lag_sum = total(function, "pulsar_function_user_metric_sum", metric="source_lag_ms")
    lag_count = total(function, "pulsar_function_user_metric_count", metric="source_lag_ms")
    last = total(function, "pulsar_function_last_invocation")
    return PipelineCounts(
        captured=count(source, "pulsar_source_written_total"),
        source_errors=count(source, "pulsar_source_source_exceptions_total"),
        received=count(function, "pulsar_function_received_total"),
        enriched=count(function, "pulsar_function_user_metric_count", metric="enriched"),
        dead_lettered=count(function, "pulsar_function_user_metric_count", metric="dead_lettered"),
        publish_failed=count(function, "pulsar_function_user_metric_count", metric="publish_failed"),
        last_change_ms=int(last) if last else None,
        last_lag_ms=lag_sum / lag_count if lag_sum is not None and lag_count else None,
    )
