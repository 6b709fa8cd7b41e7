"""loadgen-k8s results: exact histogram merges, JSON round trips, and OMB's result-file layout."""

from __future__ import annotations

import json
import random

import pytest
from hdrh.histogram import HdrHistogram

from loadgen_k8s.managers.results import (
    END_TO_END,
    FAMILIES,
    PUBLISH_DELAY,
    PUBLISH_LATENCY,
    Interval,
    OmbMeta,
    UnitResult,
    decode,
    encode,
    merge,
    new_histogram,
    omb_json,
)

CHECKED_PERCENTILES = [0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 99.999, 100.0]


def histogram_of(values: list[int], family: str = PUBLISH_LATENCY) -> HdrHistogram:
    histogram = new_histogram(family)
    for value in values:
        histogram.record_value(value)
    return histogram


def unit(name: str, values: list[int], **fields: object) -> UnitResult:
    encoded = encode(histogram_of(values))
    defaults: dict[str, object] = {
        "target_rate": 1000.0,
        "sent": len(values),
        "acknowledged": len(values),
        "elapsed_seconds": 10.0,
        "publish_latency": encoded,
        "publish_delay": encoded,
        "end_to_end": encode(histogram_of([v // 1000 + 1 for v in values], END_TO_END)),
    }
    defaults.update(fields)
    return UnitResult(unit=name, **defaults)  # type: ignore[arg-type]


def test_merge_equals_the_histogram_of_the_union() -> None:
    # Given two units' publish latencies drawn from different distributions (us)
    rng = random.Random(9)  # noqa: S311 - reproducible test data
    first = [rng.randint(200, 5_000) for _ in range(20_000)]
    second = [rng.randint(3_000, 2_000_000) for _ in range(7_000)] + [59_000_000]

    # When the application result merges the two units
    app = merge([unit("loadgen-k8s/0", first), unit("loadgen-k8s/1", second)])

    # Then the merged histogram is the histogram of all values: same counts at every percentile
    merged = decode(app.histograms[PUBLISH_LATENCY])
    union = histogram_of(first + second)
    assert merged is not None
    assert merged.get_total_count() == union.get_total_count() == 27_001
    assert merged.get_percentile_to_value_dict(CHECKED_PERCENTILES) == union.get_percentile_to_value_dict(
        CHECKED_PERCENTILES
    )
    # And every bucket holds the same count (the merge is exact, not an approximation)
    assert merged.counts_len == union.counts_len
    assert merged.counts[:] == union.counts[:]
    # And the summary reads from the merged histogram, not from averaged unit percentiles
    expected = union.get_percentile_to_value_dict([50.0, 75.0, 95.0, 99.0, 99.9, 99.99, 99.999])
    latency = app.latency[PUBLISH_LATENCY]
    assert (latency.p50, latency.p75, latency.p95, latency.p99) == (
        expected[50.0],
        expected[75.0],
        expected[95.0],
        expected[99.0],
    )
    assert (latency.p999, latency.p9999, latency.p99999) == (expected[99.9], expected[99.99], expected[99.999])
    assert latency.max == union.get_max_value()
    assert latency.mean == pytest.approx(union.get_mean_value())
    averaged = (decode_p99(app.units[0]) + decode_p99(app.units[1])) / 2
    assert app.latency[PUBLISH_LATENCY].p99 != averaged


def decode_p99(result: UnitResult) -> int:
    histogram = decode(result.publish_latency)
    assert histogram is not None
    return histogram.get_value_at_percentile(99.0)


def test_merge_widens_to_a_histogram_written_with_a_larger_range() -> None:
    # Given a unit whose engine wrote publish delays with a range beyond the default 60 s
    wide = HdrHistogram(1, 3_600_000_000, 5)
    wide.record_value(3_000_000_000)
    wide.record_value(100)

    # When it is merged with an ordinary unit
    app = merge([unit("a/0", [100]), unit("a/1", [], publish_delay=encode(wide))])

    # Then nothing is lost
    assert app.latency[PUBLISH_DELAY].count == 3
    assert wide.values_are_equivalent(app.latency[PUBLISH_DELAY].max, 3_000_000_000)


def test_encoding_round_trips_through_the_package_decoder() -> None:
    # Given a histogram with 5 significant digits
    original = histogram_of([1, 7, 123_456, 123_457, 999_999, 59_999_999])

    # When it is encoded as text and decoded by the package's own decoder
    text = encode(original)
    decoded = HdrHistogram.decode(text.encode("ascii"))

    # Then it is Java HdrHistogram's compressed form and equal to the original
    assert text.startswith("HISTF")
    assert decoded.significant_figures == 5
    assert decoded.equals(original)
    assert decoded.get_total_count() == 6
    assert decode("") is None


def test_percentiles_match_known_data() -> None:
    # Given one unit whose publish latencies are 1..10000 us, each once
    result = unit("loadgen-k8s/0", list(range(1, 10_001)))

    # When its percentiles are read
    latency = result.percentiles(PUBLISH_LATENCY)

    # Then they are the known values (exact below 10^5 with 5 significant digits)
    assert (latency.p50, latency.p75, latency.p95, latency.p99) == (5000, 7500, 9500, 9900)
    assert (latency.p999, latency.p9999, latency.max) == (9990, 9999, 10_000)
    assert latency.mean == pytest.approx(5000.5)
    assert latency.count == 10_000


def test_merge_sums_counts_rates_and_failures() -> None:
    # Given two units that each ran their share of the load
    first = unit(
        "loadgen-k8s/0",
        [100] * 4,
        target_rate=250_000.0,
        sent=2_500_000,
        acknowledged=2_499_000,
        received=2_400_000,
        failed={"TimeoutException": 600, "ProducerQueueIsFullError": 400},
        bytes_uncompressed=250_000_000,
        bytes_compressed=100_000_000,
        elapsed_seconds=10.0,
        backlog=99_000,
    )
    second = unit(
        "loadgen-k8s/1",
        [200] * 6,
        target_rate=250_000.0,
        sent=2_000_000,
        acknowledged=2_000_000,
        failed={"TimeoutException": 5},
        bytes_uncompressed=200_000_000,
        bytes_compressed=80_000_000,
        elapsed_seconds=8.0,
        backlog=1_000,
    )

    # When they are merged
    app = merge([first, second])

    # Then counts, bytes, backlog and rates are sums, and the failures are counted by reason
    assert app.target_rate == 500_000.0
    assert (app.sent, app.acknowledged, app.received) == (4_500_000, 4_499_000, 2_400_000)
    assert app.failed == {"TimeoutException": 605, "ProducerQueueIsFullError": 400}
    assert app.failed_total == 1005
    assert (app.bytes_uncompressed, app.bytes_compressed, app.backlog) == (450_000_000, 180_000_000, 100_000)
    assert app.elapsed_seconds == 10.0
    assert app.achieved_rate == pytest.approx(249_900.0 + 250_000.0)
    assert app.achieved_mb_per_second == pytest.approx(25.0 + 25.0)
    assert app.latency[PUBLISH_LATENCY].count == 10


def test_unit_result_json_round_trip() -> None:
    # Given a unit result with failures and intervals
    result = unit(
        "loadgen-k8s/2",
        [5, 50, 500],
        failed={"TimeoutException": 3},
        intervals=(Interval(seconds=10.0, sent=3, acknowledged=3, publish_latency=encode(histogram_of([5]))),),
    )

    # When it goes to JSON and back
    again = UnitResult.from_json(result.to_json())

    # Then nothing changed
    assert again == result
    assert json.loads(result.to_json())["unit"] == "loadgen-k8s/2"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"unit": ""}, "unit"),
        ({"sent": -1}, "sent"),
        ({"sent": "10"}, "sent"),
        ({"acknowledged": True}, "acknowledged"),
        ({"elapsed_seconds": "5"}, "elapsed_seconds"),
        ({"failed": ["TimeoutException"]}, "failed"),
        ({"failed": {"TimeoutException": 1.5}}, "TimeoutException"),
        ({"publish_latency": 3}, "publish_latency"),
        ({"intervals": {}}, "intervals"),
    ],
)
def test_unit_result_json_refuses_wrong_types(change: dict[str, object], field: str) -> None:
    # Given a stored unit result with one field of the wrong type
    data = json.loads(unit("loadgen-k8s/0", [1]).to_json()) | change

    # When it is read / Then the error names the field
    with pytest.raises(ValueError, match=field):
        UnitResult.from_json(json.dumps(data))


def test_a_unit_with_no_messages() -> None:
    # Given a unit that sent nothing and recorded no histograms at all
    idle = UnitResult(unit="loadgen-k8s/0", target_rate=0.0)

    # When it is merged alone and with a busy unit
    alone = merge([idle])
    together = merge([idle, unit("loadgen-k8s/1", [100, 200])])

    # Then the idle unit reports zeros and changes nothing of the busy one
    assert alone.achieved_rate == 0.0
    assert alone.achieved_mb_per_second == 0.0
    for family in FAMILIES:
        assert alone.latency[family].count == 0
        assert alone.latency[family].p99 == 0
    assert together.latency[PUBLISH_LATENCY].count == 2
    assert together.acknowledged == 2
    # And the idle unit survives JSON and OMB's layout
    assert UnitResult.from_json(idle.to_json()) == idle
    document = omb_json(alone, OmbMeta(workload="idle", driver="pulsar", message_size=100))
    assert document["aggregatedPublishLatency99pct"] == 0.0
    assert document["aggregatedPublishLatencyQuantiles"] == {}
    assert document["publishRate"] == []
    assert merge([]).acknowledged == 0


def test_omb_json_has_omb_field_names_and_units() -> None:
    # Given two units with two 10 s intervals each: publish latency 2000 us, delay 30 us, end to end 7 ms
    def interval(acknowledged: int) -> Interval:
        return Interval(
            seconds=10.0,
            sent=acknowledged,
            acknowledged=acknowledged,
            received=acknowledged,
            failed=1,
            backlog=5,
            publish_latency=encode(histogram_of([2000] * acknowledged)),
            publish_delay=encode(histogram_of([30] * acknowledged, PUBLISH_DELAY)),
            end_to_end=encode(histogram_of([7] * acknowledged, END_TO_END)),
        )

    units = [
        UnitResult(
            unit=f"loadgen-k8s/{n}",
            target_rate=100.0,
            sent=2000,
            acknowledged=2000,
            received=2000,
            elapsed_seconds=20.0,
            publish_latency=encode(histogram_of([2000] * 2000)),
            publish_delay=encode(histogram_of([30] * 2000, PUBLISH_DELAY)),
            end_to_end=encode(histogram_of([7] * 2000, END_TO_END)),
            intervals=(interval(1000), interval(1000)),
        )
        for n in range(2)
    ]
    meta = OmbMeta(workload="iot-avro-100b", driver="Pulsar", message_size=100, partitions=16, consumers_per_topic=1)

    # When the application result is written in OMB's layout
    document = json.loads(json.dumps(omb_json(merge(units), meta)))

    # Then the fields create_charts.py reads are there, in OMB's units
    assert document["workload"] == "iot-avro-100b"
    assert document["driver"] == "Pulsar"
    assert (document["messageSize"], document["partitions"], document["consumersPerTopic"]) == (100, 16, 1)
    assert document["publishRate"] == [200.0, 200.0]
    assert document["consumeRate"] == [200.0, 200.0]
    assert document["publishErrorRate"] == [0.2, 0.2]
    assert document["backlog"] == [10, 10]
    assert document["publishLatency99pct"] == [2.0, 2.0]  # ms
    assert document["publishDelayLatency99pct"] == [30, 30]  # us
    assert document["endToEndLatency95pct"] == [7.0, 7.0]  # ms
    assert document["endToEndLatencyAvg"] == [7.0, 7.0]
    for prefix, value in [("PublishLatency", 2.0), ("PublishDelayLatency", 30), ("EndToEndLatency", 7.0)]:
        for suffix in ["Avg", "50pct", "75pct", "95pct", "99pct", "999pct", "9999pct", "99999pct", "Max"]:
            assert document[f"aggregated{prefix}{suffix}"] == value, (prefix, suffix)
        quantiles = document[f"aggregated{prefix}Quantiles"]
        assert quantiles["100.0"] == value
        assert all(float(key) <= 100.0 for key in quantiles)
    assert isinstance(document["aggregatedPublishDelayLatency99pct"], int)


def test_a_units_workers_combine_into_one_result_over_the_producers_time() -> None:
    from loadgen_k8s.managers.results import combine_workers, new_histogram

    def histogram(value: int, count: int, family: str) -> str:
        recorded = new_histogram(family)
        recorded.record_value(value, count)
        return recorded.encode().decode()

    producers = [
        {"role": "producer", "state": "finished", "target_rate": 500.0, "sent": n, "acknowledged": n,
         "elapsed_seconds": 20.0, "bytes_uncompressed": 80 * n, "errors": {"TimeoutException": 0},
         "publish_latency": histogram(1000 * (i + 1), n, "publish_latency")}
        for i, n in enumerate((10_000, 9_000))
    ]  # fmt: skip
    consumer = {"role": "consumer", "state": "stopped", "received": 19_000, "elapsed_seconds": 31.0,
                "end_to_end": histogram(12, 19_000, "end_to_end")}  # fmt: skip

    result = combine_workers("lg/0", [*producers, consumer])

    assert (result.sent, result.acknowledged, result.received) == (19_000, 19_000, 19_000)
    assert result.elapsed_seconds == 20.0  # the consumer drains longer; the rate is the producers'
    assert result.achieved_rate == 950.0
    assert result.percentiles("publish_latency").count == 19_000
    assert result.percentiles("publish_latency").max == 2000
    assert result.publish_delay == ""  # not recorded: absent, not zero
    assert result.state == "stopped"
    assert result.errors == ()
