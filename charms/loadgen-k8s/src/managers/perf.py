"""pulsar-perf as the reference engine: its command line, and its results read into a `UnitResult`.

Pure logic, no ops. Facts about `pulsar-perf produce` 4.0.8 (its `--help` and the compiled
`PerformanceProducer`) that this module relies on:

- `-r` is an integer rate for the whole process, split evenly across `-threads` (a client each);
  `-time` counts from the moment the producers exist and includes `--warmup-time`.
- Publish latency is recorded in microseconds (acknowledgement minus the moment the rate limiter
  released the message, 5 significant digits, highest 120 s), and only for acknowledgements after
  the warm-up. There is no publish delay (no coordinated-omission correction) and no end-to-end
  latency: the consumer side is a separate command.
- `--histogram-file` gets HdrHistogram's interval log (format 1.3: version comment, legend, then
  one untagged line per 10 s report with absolute epoch seconds). The last, partial interval
  before exit is not written.
- Stdout ends with `Aggregated throughput stats --- <n> records sent --- ...`, where n counts every
  acknowledgement including the warm-up's; each failed send is logged as a WARN line
  `Write message error with exception` followed by the exception; a producer that cannot start
  logs `Got error` at ERROR level and the process still exits 0.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Mapping

from hdrh.histogram import HdrHistogram

from managers.results import (
    PUBLISH_LATENCY,
    Interval,
    UnitResult,
    encode,
    merge_histograms,
)

PERF_BIN = "/pulsar/bin/pulsar-perf"
TOKEN_AUTH_PLUGIN = "org.apache.pulsar.client.impl.auth.AuthenticationToken"  # noqa: S105 - a class name

# What a pulsar-perf result lacks or approximates; shown with its table and kept with its result.
PERF_NOTES = (
    "pulsar-perf measures publish latency from the moment its rate limiter releases a message: "
    "it records no publish delay (a stalled producer hides its own delay) and no end-to-end latency.",
    "pulsar-perf: sent and acknowledged are the counts of its latency log (acknowledgements after the "
    "warm-up, in the intervals it logged; it does not log the last partial interval), and sent is "
    "acknowledged plus failed; the compressed byte count is not reported.",
)


# ---------------------------------------------------------------- the command


def perf_command(
    *,
    service_url: str,
    topic: str,
    rate: int,
    size: int,
    duration_s: int,
    warmup_s: int,
    histogram_file: str,
    batch_delay_ms: int = 1,
    batch_max_messages: int = 1000,
    batch_max_bytes: int = 131072,
    compression: str = "LZ4",
    producers: int = 1,
    threads: int = 1,
    io_threads: int = 1,
    max_pending: int | None = None,
    memory_limit_mb: int = 64,
    keys: bool = False,
    token_file: str | None = None,
    trust_certs_file: str | None = None,
    perf_bin: str = PERF_BIN,
) -> list[str]:
    """The argv of `pulsar-perf produce` for one process on an existing topic.

    The rate is the process's total (pulsar-perf splits it across threads). `-time` is the
    warm-up plus the duration, because pulsar-perf's test time includes its warm-up. Batching
    off (delay 0) is `-db`. With keys, `-mk random` gives every message a random key, the closest
    pulsar-perf has to device-id keys (keys change how messages spread over partitions). The
    token is passed as a file reference, never as a value. With `trust_certs_file` (TLS URLs)
    the brokers are verified against that CA and by name; insecure connections stay refused
    (the image's client.conf default, which no flag here turns on).
    """
    if rate < 1 or size < 1 or duration_s < 1 or warmup_s < 0 or threads < 1 or producers < 1:
        raise ValueError("rate, size, duration, producers and threads must be positive, warm-up not negative")
    if rate < threads:
        raise ValueError(f"a rate of {rate} msg/s cannot be split across {threads} threads")
    argv = [
        perf_bin,
        "produce",
        "--service-url",
        service_url,
        "--rate",
        str(rate),
        "--size",
        str(size),
        "--num-producers",
        str(producers),
        "--num-test-threads",
        str(threads),
        "--num-io-threads",
        str(io_threads),
        "--compression",
        compression.upper(),
        "--memory-limit",
        f"{memory_limit_mb}M",
        "--warmup-time",
        str(warmup_s),
        "--test-duration",
        str(warmup_s + duration_s),
        "--histogram-file",
        histogram_file,
    ]
    if batch_delay_ms > 0:
        argv += [
            "--batch-time-window",
            str(batch_delay_ms),
            "--batch-max-messages",
            str(batch_max_messages),
            "--batch-max-bytes",
            str(batch_max_bytes),
        ]
    else:
        argv.append("--disable-batching")
    if max_pending is not None:
        # Per partition producer, as our engine's maxPendingMessages: the same bound for both engines.
        argv += ["--max-outstanding", str(max_pending)]
    if keys:
        argv += ["--message-key-generation-mode", "random"]
    if token_file:
        argv += ["--auth-plugin", TOKEN_AUTH_PLUGIN, "--auth-params", f"file://{token_file}"]
    if trust_certs_file:
        argv += ["--trust-cert-file", trust_certs_file, "--tls-enable-hostname-verification"]
    argv.append(topic)
    return argv


# ---------------------------------------------------------------- HdrHistogram interval logs


@dataclasses.dataclass(frozen=True, eq=False)
class LogInterval:
    """One interval line of an HdrHistogram log.

    `start` is in seconds since the epoch when the log says so (absolute stamps, or stamps relative
    to a `#[BaseTime:` / `#[StartTime:` line), otherwise as written.
    """

    tag: str | None
    start: float
    length: float
    histogram: HdrHistogram

    @property
    def end(self) -> float:
        return self.start + self.length

    @property
    def count(self) -> int:
        return self.histogram.get_total_count()


_TIME_COMMENT = re.compile(r"#\[(StartTime|BaseTime):\s*([0-9.]+)")
_INTERVAL = re.compile(r"(?:Tag=([^,]*),)?([0-9.]+),([0-9.]+),([0-9.]+),(\S+)$")
_YEAR_SECONDS = 365 * 24 * 3600


def read_histogram_log(text: str) -> list[LogInterval]:
    """Parse an HdrHistogram interval log (Java's `HistogramLogWriter` format, 1.2 or 1.3).

    Comment lines (`#...`) and the legend are skipped, `#[StartTime: ...]` and `#[BaseTime: ...]`
    turn relative stamps into epoch seconds, as Java's `HistogramLogReader` does. The interval
    max column is ignored (the histogram carries its own). A last line without its newline is a
    line still being written and is skipped; any other unreadable line raises ValueError.
    """
    # hdrh's own HistogramLogReader reads from a file name and drops unparsable lines silently,
    # so the lines are read here.
    start_time: float | None = None
    base_time: float | None = None
    intervals: list[LogInterval] = []
    lines = text.split("\n")
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith('"StartTimestamp"'):
            continue
        if line.startswith("#"):
            match = _TIME_COMMENT.match(line)
            if match and match.group(1) == "StartTime":
                start_time = float(match.group(2))
            elif match:
                base_time = float(match.group(2))
            continue
        match = _INTERVAL.match(line)
        try:
            if not match:
                raise ValueError("not an interval line")
            histogram = HdrHistogram.decode(match.group(5).encode("ascii"))
        except Exception as error:  # the decoder raises several types on a damaged payload
            if number == len(lines) and not text.endswith("\n"):
                break
            raise ValueError(f"histogram log line {number} unreadable: {error}") from error
        stamp = float(match.group(2))
        if base_time is not None:
            stamp += base_time
        elif start_time is not None and stamp < _YEAR_SECONDS:
            stamp += start_time
        intervals.append(LogInterval(match.group(1), stamp, float(match.group(3)), histogram))
    return intervals


@dataclasses.dataclass(frozen=True)
class TaggedInterval:
    """One reporting interval of a tagged log: each tag's histogram, encoded as `results` keeps them."""

    start: float
    length: float
    histograms: Mapping[str, str]

    def count(self, tag: str) -> int:
        encoded = self.histograms.get(tag, "")
        return merge_histograms([encoded], tag).get_total_count() if encoded else 0


def read_tagged_intervals(text: str) -> list[TaggedInterval]:
    """Group a tagged log (our engine's `.hlog`: publish_latency, publish_delay, end_to_end) by interval.

    The writer logs each tag once per interval, so a tag seen again starts the next interval.
    Untagged lines are ignored.
    """
    groups: list[list[LogInterval]] = []
    for interval in read_histogram_log(text):
        if interval.tag is None:
            continue
        if not groups or any(seen.tag == interval.tag for seen in groups[-1]):
            groups.append([])
        groups[-1].append(interval)
    return [
        TaggedInterval(
            start=min(i.start for i in group),
            length=max(i.length for i in group),
            histograms={str(i.tag): encode(i.histogram) for i in group},
        )
        for group in groups
    ]


# ---------------------------------------------------------------- pulsar-perf's stdout


@dataclasses.dataclass(frozen=True)
class PerfSummary:
    """What pulsar-perf's stdout says beyond its histogram log."""

    records_sent: int | None  # acknowledgements over the whole run, warm-up included
    failed: Mapping[str, int]
    error: str | None  # why the producers did not run, if they did not


_RECORDS_SENT = re.compile(r"Aggregated throughput stats --- (\d+) records sent")
_SEND_FAILED = "Write message error with exception"
_GOT_ERROR = "Got error"
_EXCEPTION = re.compile(r"^([\w.$]+(?:Exception|Error))(?::\s*(.*))?$")


def _exception_name(line: str) -> str | None:
    """`org.x.PulsarClientException$TimeoutException: ...` -> `TimeoutException`."""
    match = _EXCEPTION.match(line.strip())
    return re.split(r"[.$]", match.group(1))[-1] if match else None


def read_perf_summary(text: str) -> PerfSummary:
    """Read the totals, failed sends (by exception) and a fatal error from pulsar-perf's output."""
    lines = text.splitlines()
    records = None
    failed: Counter[str] = Counter()
    error = None
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if match := _RECORDS_SENT.search(line):
            records = int(match.group(1))
        elif line.endswith(_SEND_FAILED):
            failed[_exception_name(following) or "send failed"] += 1
        elif line.endswith(_GOT_ERROR) and " ERROR " in line and error is None:
            error = following.strip() or "pulsar-perf failed"
    return PerfSummary(records_sent=records, failed=dict(failed), error=error)


# ---------------------------------------------------------------- the result


def perf_result(
    unit: str,
    target_rate: float,
    log_text: str,
    summary_text: str | None,
    warmup_s: float,
    *,
    message_size: int = 0,
) -> UnitResult:
    """One unit's pulsar-perf run as a `UnitResult`.

    Publish latency is the sum of the log's intervals that start after the warm-up (counted from
    the first interval's start; pulsar-perf also drops the warm-up's latencies itself). Those
    intervals' lengths are the elapsed time and their histogram counts the acknowledgements, so
    the achieved rate is exact for the logged time while the counts leave out the unlogged tail.
    Sent is acknowledged plus failed (pulsar-perf does not count sends). Failures come from the
    summary (stdout), when given. Publish delay and end to end stay empty: pulsar-perf has neither
    (see PERF_NOTES). Payload bytes are acknowledged times `message_size`.
    """
    logged = [i for i in read_histogram_log(log_text) if i.tag is None]
    # A small tolerance: an interval that starts a few ms before the warm-up's end is after it.
    measured = [i for i in logged if i.start >= logged[0].start + warmup_s - 0.5] if logged else []
    summary = read_perf_summary(summary_text) if summary_text is not None else None
    failed = dict(summary.failed) if summary else {}
    intervals = tuple(
        Interval(seconds=i.length, sent=i.count, acknowledged=i.count, publish_latency=encode(i.histogram))
        for i in measured
    )
    total = merge_histograms((i.publish_latency for i in intervals), PUBLISH_LATENCY)
    acknowledged = total.get_total_count()
    return UnitResult(
        unit=unit,
        target_rate=target_rate,
        sent=acknowledged + sum(failed.values()),
        acknowledged=acknowledged,
        failed=failed,
        bytes_uncompressed=acknowledged * message_size,
        elapsed_seconds=math.fsum(i.length for i in measured),
        publish_latency=encode(total) if measured else "",
        intervals=intervals,
    )
