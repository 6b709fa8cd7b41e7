"""loadgen-k8s pulsar-perf engine: its argv, HdrHistogram interval logs, and its results as a UnitResult."""

from __future__ import annotations

import io

import pytest
from hdrh.histogram import HdrHistogram

from loadgen_k8s.managers.perf import (
    TOKEN_AUTH_PLUGIN,
    perf_command,
    perf_result,
    read_histogram_log,
    read_perf_summary,
    read_tagged_intervals,
)
from loadgen_k8s.managers.results import END_TO_END, PUBLISH_DELAY, PUBLISH_LATENCY, decode

# Written by Java HdrHistogram 2.1.9's HistogramLogWriter (the jar pulsar-perf 4.0.8 ships) the way
# pulsar-perf writes its --histogram-file: version, legend, untagged intervals in epoch seconds,
# recorders of 120 s in us with 5 digits. Interval 1 is empty, interval 2 holds 10, 20 .. 10000 us,
# interval 3 holds 20, 40 .. 20000 us.
JAVA_PERF_LOG = """\
#[Histogram log format version 1.3]
"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
1764471600.000,10.000,0.000,HISTFAAAAB942pNpmSzMwMDAyAABrFAazGdX52Ow/wAVAQA/sgK5
1764471610.000,10.000,0.010,HISTFAAAADB42pNpmSzMwMB+gQECWKE0I4hgV+djsP8AERBmEhyFo3AUjsJROApH4RCHAHUwTck=
1764471620.000,10.000,0.020,HISTFAAAADB42pNpmSzMwMB+gQECWKE0I4hgV+djsP8AEVBnUh2Fo3AUjsJROApH4RCHAAI+m+k=
"""

# The same writer with tags, StartTime and BaseTime (stamps relative to the base), as our engine
# writes its .hlog. Each interval: publish_latency 1000..100000 us (+ interval index), publish_delay
# 1..100 us, end_to_end 1..7 ms; 100 values each.
JAVA_TAGGED_LOG = """\
#[Histogram log format version 1.3]
#[StartTime: 1764471600.000 (seconds since epoch), Sun Nov 30 03:00:00 UTC 2025]
#[BaseTime: 1764471600.000 (seconds since epoch)]
"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
Tag=publish_latency,0.000,10.000,0.100,HISTFAAAACd42pNpmSzMwMCowwABrFCaEUQwT25nsP8AETjPz3R2FBGHAAf0WoA=
Tag=publish_delay,0.000,10.000,0.000,HISTFAAAACN42pNpmSzMwMCQygABrFCaEUQwT25nsP8AFWGiAwAADdMExg==
Tag=end_to_end,0.000,10.000,0.000,HISTFAAAACV42pNpmSzMwMDAwQABrFCaEUQwTdZjsP8AFZGRk5MBAgBg5gQP
Tag=publish_latency,10.000,10.000,0.100,HISTFAAAACd42pNpmSzMwMCowwABrFCaEUQwT25nsP8AEbjIz3R2FBGHAApMWoI=
Tag=publish_delay,10.000,10.000,0.000,HISTFAAAACN42pNpmSzMwMCQygABrFCaEUQwT25nsP8AFWGiAwAADdMExg==
Tag=end_to_end,10.000,10.000,0.000,HISTFAAAACV42pNpmSzMwMDAwQABrFCaEUQwTdZjsP8AFZGRk5MBAgBg5gQP
"""

T0 = 1764471600.0


def histogram_of(values: list[int], highest: int = 120_000_000) -> HdrHistogram:
    histogram = HdrHistogram(1, highest, 5)
    for value in values:
        histogram.record_value(value)
    return histogram


def log_text(intervals: list[tuple[float, float, HdrHistogram]], tag: str | None = None) -> str:
    """A log in the Java writer's format (version, legend, "%.3f,%.3f,%.3f,%s" lines)."""
    out = io.StringIO()
    out.write("#[Histogram log format version 1.3]\n")
    out.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
    for start, length, histogram in intervals:
        prefix = f"Tag={tag}," if tag else ""
        max_seconds = histogram.get_max_value() / 1e6
        out.write(f"{prefix}{start:.3f},{length:.3f},{max_seconds:.3f},{histogram.encode().decode()}\n")
    return out.getvalue()


# ---------------------------------------------------------------- logs


def test_reads_the_java_writers_untagged_log() -> None:
    # Given the log Java's writer produced
    # When it is read
    intervals = read_histogram_log(JAVA_PERF_LOG)

    # Then every interval line is there, with its stamps and exact counts and values
    assert [(i.tag, i.start, i.length, i.count) for i in intervals] == [
        (None, T0, 10.0, 0),
        (None, T0 + 10, 10.0, 1000),
        (None, T0 + 20, 10.0, 1000),
    ]
    second = intervals[1].histogram
    assert second.get_min_value() == 10
    assert second.get_max_value() == 10_000
    assert second.get_value_at_percentile(50.0) == 5000
    assert second.get_value_at_percentile(99.0) == 9900
    assert intervals[2].histogram.get_max_value() == 20_000


def test_reads_the_java_writers_tagged_log_by_interval() -> None:
    # Given a tagged log whose stamps are relative to its BaseTime
    # When it is grouped by interval
    intervals = read_tagged_intervals(JAVA_TAGGED_LOG)

    # Then each interval has the three families, at absolute stamps, with their counts and values
    assert [(i.start, i.length) for i in intervals] == [(T0, 10.0), (T0 + 10, 10.0)]
    for index, interval in enumerate(intervals):
        assert set(interval.histograms) == {PUBLISH_LATENCY, PUBLISH_DELAY, END_TO_END}
        assert [interval.count(tag) for tag in (PUBLISH_LATENCY, PUBLISH_DELAY, END_TO_END)] == [100, 100, 100]
        latency = decode(interval.histograms[PUBLISH_LATENCY])
        assert latency is not None
        assert latency.get_min_value() == 1000 + index
        assert latency.get_max_value() == 100_000 + index
        end_to_end = decode(interval.histograms[END_TO_END])
        assert end_to_end is not None
        assert (end_to_end.get_min_value(), end_to_end.get_max_value()) == (1, 7)
    assert intervals[0].count("missing") == 0


def test_round_trip_of_known_histograms_is_exact() -> None:
    # Given histograms of known values, written as a log in the Java format
    first = histogram_of(list(range(1, 10_001)))
    second = histogram_of([123_456] * 5 + [59_999_999])
    text = log_text([(T0, 10.0, first), (T0 + 10, 10.0, second)])

    # When the log is read back
    intervals = read_histogram_log(text)

    # Then each histogram is the one written, bucket by bucket
    assert [i.count for i in intervals] == [10_000, 6]
    assert intervals[0].histogram.equals(first)
    assert intervals[1].histogram.equals(second)
    assert intervals[0].histogram.get_value_at_percentile(99.9) == 9990
    assert intervals[1].histogram.get_value_at_percentile(50.0) == 123_456


def test_a_line_still_being_written_is_skipped_but_a_damaged_one_fails() -> None:
    # Given a log whose last line is cut short (the writer is mid-line)
    text = log_text([(T0, 10.0, histogram_of([5]))])
    cut = text + "1764471610.000,10.000,0.000,HISTFAAAAB9"

    # When it is read, Then the complete lines are returned
    assert [i.count for i in read_histogram_log(cut)] == [1]

    # But a damaged line followed by more lines is an error
    with pytest.raises(ValueError, match="line 3"):
        read_histogram_log(text.replace("HISTF", "garbage", 1) + "# more\n")


# ---------------------------------------------------------------- stdout


# The shape of pulsar-perf 4.0.8's output: log4j's pattern from conf/log4j2.yaml, its message texts.
def logged(level: str, message: str, thread: str = "main") -> str:
    logger = "org.apache.pulsar.testclient.PerformanceProducer"
    return f"2026-11-30T02:58:27,847+0000 [{thread}] {level:<5} {logger} - {message}"


SEND_FAILED = logged("WARN", "Write message error with exception", "pulsar-client-io-2-1")
TIMEOUT = (
    "org.apache.pulsar.client.api.PulsarClientException$TimeoutException: "
    "The producer pulsar-1-0 can not send message to the topic within given timeout"
)
PERF_STDOUT = "\n".join(
    [
        logged("INFO", "Dumping latency stats to x.hlog"),
        logged(
            "INFO",
            "Throughput produced:    9990 msg ---    999.0 msg/s ---      0.8 Mbit/s  --- failure      0.3 msg/s "
            "--- Latency: mean:   1.000 ms - med:   1.000 - 95pct:   1.000 - 99pct:   1.000 - 99.9pct:   1.000 "
            "- 99.99pct:   1.000 - Max:   1.000",
        ),
        SEND_FAILED,
        TIMEOUT,
        "\tat org.apache.pulsar.client.impl.ProducerImpl.failPendingMessages(ProducerImpl.java:1)",
        SEND_FAILED,
        TIMEOUT,
        SEND_FAILED,
        "org.apache.pulsar.client.api.PulsarClientException$ProducerQueueIsFullError: queue full",
        logged(
            "INFO",
            "Aggregated throughput stats --- 12345 records sent --- 999.000 msg/s --- 0.762 Mbit/s ",
            "perf-client-shutdown",
        ),
        logged("INFO", "Aggregated latency stats --- Latency: mean:   0.000 ms - med:   0.000", "perf-client-shutdown"),
    ]
)
PERF_STDOUT_NOT_STARTED = "\n".join(
    [
        logged("ERROR", "Got error", "pulsar-perf-producer-exec-1-1"),
        "java.util.concurrent.ExecutionException: org.apache.pulsar.client.api.PulsarClientException: "
        "Connection refused",
        logged(
            "INFO",
            "Aggregated throughput stats --- 0 records sent --- 0.000 msg/s --- 0.000 Mbit/s ",
            "perf-client-shutdown",
        ),
    ]
)


def test_summary_counts_failures_by_exception() -> None:
    summary = read_perf_summary(PERF_STDOUT)
    assert summary.records_sent == 12345
    assert summary.failed == {"TimeoutException": 2, "ProducerQueueIsFullError": 1}
    assert summary.error is None


def test_summary_reports_producers_that_never_started() -> None:
    # pulsar-perf exits 0 even then: the output is the only sign
    summary = read_perf_summary(PERF_STDOUT_NOT_STARTED)
    assert summary.records_sent == 0
    assert summary.error == (
        "java.util.concurrent.ExecutionException: org.apache.pulsar.client.api.PulsarClientException: "
        "Connection refused"
    )


# ---------------------------------------------------------------- the result


def test_perf_result_sums_the_intervals_after_warm_up() -> None:
    # Given a 10 s warm-up interval and two measured ones, with known latencies (us)
    warm = histogram_of([50_000] * 100)
    first = histogram_of(list(range(100, 100_100, 100)))  # 1000 values
    second = histogram_of([2000] * 500)
    text = log_text([(T0, 10.2, warm), (T0 + 10.2, 10.0, first), (T0 + 20.2, 9.8, second)])

    # When the run is read as a unit result, with 100 B messages and stdout
    result = perf_result("loadgen-k8s/0", 100.0, text, PERF_STDOUT, 10, message_size=100)

    # Then the warm-up interval is left out and the rest adds up exactly
    assert result.acknowledged == 1500
    assert result.sent == 1503  # acknowledged plus the three failed sends
    assert result.failed == {"TimeoutException": 2, "ProducerQueueIsFullError": 1}
    assert result.elapsed_seconds == pytest.approx(19.8)
    assert result.achieved_rate == pytest.approx(1500 / 19.8)
    assert result.bytes_uncompressed == 150_000
    assert result.bytes_compressed == 0
    expected = histogram_of(list(range(100, 100_100, 100)) + [2000] * 500)
    latency = result.percentiles(PUBLISH_LATENCY)
    assert latency.count == 1500
    assert latency.max == expected.get_max_value() == 100_000
    assert latency.p50 == expected.get_value_at_percentile(50.0)
    assert latency.p99 == expected.get_value_at_percentile(99.0)
    assert [(i.seconds, i.acknowledged) for i in result.intervals] == [(10.0, 1000), (9.8, 500)]
    decoded = decode(result.intervals[1].publish_latency)
    assert decoded is not None
    assert decoded.equals(second)
    # And pulsar-perf's missing families stay empty, never zero-valued histograms
    assert result.publish_delay == ""
    assert result.end_to_end == ""
    assert result.percentiles(PUBLISH_DELAY).count == 0


def test_perf_result_of_the_java_log_and_no_stdout() -> None:
    result = perf_result("loadgen-k8s/1", 100.0, JAVA_PERF_LOG, None, 0)
    assert result.acknowledged == result.sent == 2000
    assert result.failed == {}
    assert result.elapsed_seconds == pytest.approx(30.0)
    assert result.percentiles(PUBLISH_LATENCY).max == 20_000


def test_perf_result_of_an_empty_log() -> None:
    result = perf_result("loadgen-k8s/0", 100.0, "", None, 10)
    assert (result.acknowledged, result.elapsed_seconds, result.publish_latency, result.intervals) == (0, 0.0, "", ())


# ---------------------------------------------------------------- the command

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl"  # what the token file would hold


def command(**overrides: object) -> list[str]:
    args: dict[str, object] = {
        "service_url": "pulsar://broker-0:6650,broker-1:6650",
        "topic": "persistent://loadgen-k8s/default/sensor-readings",
        "rate": 250_000,
        "size": 100,
        "duration_s": 60,
        "warmup_s": 10,
        "histogram_file": "/var/lib/loadgen/tests/t/producer-0.hlog",
        "token_file": "/var/lib/loadgen/pulsar-token",
    }
    args.update(overrides)
    return perf_command(**args)  # type: ignore[arg-type]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_command_carries_the_knobs() -> None:
    argv = command(
        batch_delay_ms=5,
        batch_max_messages=500,
        batch_max_bytes=65536,
        compression="zstd",
        threads=2,
        producers=3,
        io_threads=2,
        max_pending=10_000,
        memory_limit_mb=128,
        keys=True,
    )
    assert argv[:2] == ["/pulsar/bin/pulsar-perf", "produce"]
    assert argv[-1] == "persistent://loadgen-k8s/default/sensor-readings"
    assert option(argv, "--service-url") == "pulsar://broker-0:6650,broker-1:6650"
    assert option(argv, "--rate") == "250000"
    assert option(argv, "--size") == "100"
    assert option(argv, "--batch-time-window") == "5"
    assert option(argv, "--batch-max-messages") == "500"
    assert option(argv, "--batch-max-bytes") == "65536"
    assert option(argv, "--compression") == "ZSTD"
    assert option(argv, "--num-test-threads") == "2"
    assert option(argv, "--num-producers") == "3"
    assert option(argv, "--num-io-threads") == "2"
    assert option(argv, "--max-outstanding") == "10000"
    assert "--max-outstanding-across-partitions" not in argv
    assert option(argv, "--memory-limit") == "128M"
    assert option(argv, "--message-key-generation-mode") == "random"
    assert option(argv, "--histogram-file") == "/var/lib/loadgen/tests/t/producer-0.hlog"
    # pulsar-perf's test time includes its warm-up
    assert option(argv, "--warmup-time") == "10"
    assert option(argv, "--test-duration") == "70"
    # the topic exists: pulsar-perf must not try to create it
    assert "--partitions" not in argv
    assert "--disable-batching" not in argv


def test_command_without_batching() -> None:
    argv = command(batch_delay_ms=0)
    assert "--disable-batching" in argv
    assert "--batch-time-window" not in argv


def test_command_never_carries_the_token() -> None:
    argv = command()
    assert option(argv, "--auth-plugin") == TOKEN_AUTH_PLUGIN
    assert option(argv, "--auth-params") == "file:///var/lib/loadgen/pulsar-token"
    assert not any(TOKEN in arg or "token:" in arg for arg in argv)
    assert "--auth-params" not in command(token_file=None)


def test_command_with_tls_trusts_the_ca_file_and_checks_hostnames() -> None:
    argv = command(service_url="pulsar+ssl://broker-0:6651", trust_certs_file="/var/lib/loadgen/pulsar-ca.pem")
    assert option(argv, "--trust-cert-file") == "/var/lib/loadgen/pulsar-ca.pem"
    assert "--tls-enable-hostname-verification" in argv
    # insecure TLS stays off: its flag, a bare switch, would turn it on
    assert "--tls-allow-insecure" not in argv
    assert argv[-1] == "persistent://loadgen-k8s/default/sensor-readings"


def test_command_in_plaintext_has_no_tls_flags() -> None:
    assert not any(arg.startswith(("--trust-cert-file", "--tls-")) for arg in command())


@pytest.mark.parametrize(
    "overrides", [{"rate": 0}, {"rate": 1, "threads": 2}, {"size": 0}, {"duration_s": 0}, {"warmup_s": -1}]
)
def test_command_refuses_impossible_values(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"rate|positive"):
        command(**overrides)
