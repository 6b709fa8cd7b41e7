"""A unit's workers for one test: what each runs, at which rate, for which devices. Pure logic.

Each unit runs `producers-per-unit` producer JVMs and, with `consumers=true`, one consumer JVM
in a Shared subscription of the test (so the application's consumers together read every
message once). Rates and device slices split exactly: the application's total into unit
shares (`spec.per_unit_rate`, by unit number), each unit's share into its producers'.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from literals import PEBBLE_CLI, WORKER_DONE_NOTICE
from managers.devices import device_slice
from managers.perf import perf_command
from managers.spec import Engine, LoadTestSpec, per_unit_rate

# Pushed by the charm into the image tree (the pod's own), run by its JDK as one source file.
ENGINE_SOURCE = "/pulsar/loadgen/LoadWorker.java"

# rate=max starts the search here for the whole application (OMB's controller starts at 10k msg/s).
MAX_SEARCH_START_RATE = 10_000
# The bounded footprint of one worker JVM: a fixed heap, bounded direct memory, a bounded
# queue of pending sends and a client memory limit (what pending messages may hold).
PRODUCER_HEAP = "256m"
CONSUMER_HEAP = "256m"
DIRECT_MEMORY = "256m"
MAX_PENDING = 10_000
CLIENT_MEMORY_LIMIT_MB = 64
INTERVAL_S = 10
PROGRESS_S = 2
# Upper bound of a rate search before the hold (the engine stops searching earlier when it converges).
MAX_SEARCH_BUDGET_S = 150
# A consumer outlives the producers by this much, so that it reads what they sent last.
CONSUMER_DRAIN_S = 5


@dataclass(frozen=True)
class Worker:
    """One worker JVM: its name (`producer-0`, `consumer-0`), role, command and properties' values.

    Our engine reads `<output_dir>/<name>.properties` (rendered from `values`); pulsar-perf takes
    its flags as arguments (its token and CA by file) and its stdout goes to `<name>.out` for the
    summary. `values["tls_trust_certs_file"]` is the CA file with TLS, "" in plaintext.
    """

    name: str
    role: str
    engine: Engine
    command: list[str]
    values: dict[str, str | int | float | bool]
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def properties_file(self) -> str:
        return f"{self.values['output_dir']}/{self.name}.properties"


def _java_command(heap: str, properties: str) -> list[str]:
    return [
        "java",
        f"-Xms{heap}",
        f"-Xmx{heap}",
        f"-XX:MaxDirectMemorySize={DIRECT_MEMORY}",
        "-XX:+UseParallelGC",
        "-cp",
        "/pulsar/lib/*",  # expanded by java itself, no shell
        ENGINE_SOURCE,
        properties,
    ]


PERF_EXIT_KIND = "exit"  # a pulsar-perf worker's `<name>.exit.json`: its exit status, once it ended


def _perf_worker(spec: LoadTestSpec, name: str, values: dict[str, str | int | float | bool]) -> Worker:
    output = str(values["output_dir"])
    argv = perf_command(
        service_url=str(values["service_url"]),
        topic=str(values["topic"]),
        rate=int(values["rate"]),
        size=spec.size or 0,
        duration_s=spec.duration_s,
        warmup_s=spec.warm_up_s,
        histogram_file=f"{output}/{name}.hlog",
        batch_delay_ms=spec.batch_delay_ms,
        batch_max_messages=spec.batch_max_messages,
        batch_max_bytes=spec.batch_max_bytes,
        compression=spec.compression.value,
        max_pending=MAX_PENDING,
        memory_limit_mb=CLIENT_MEMORY_LIMIT_MB,
        keys=spec.keys,
        token_file=str(values["auth_token_file"]),
        trust_certs_file=str(values["tls_trust_certs_file"]) or None,
    )
    # pulsar-perf prints its summary and failures on stdout: kept in a file for the result. It
    # cannot say it is done, so its shell records its exit status (the charm's sign that the
    # files are complete) and raises the done notice. Pebble signals the service's whole process
    # group, so a stop still reaches pulsar-perf.
    script = [
        f"{shlex.join(argv)} > {shlex.quote(f'{output}/{name}.out')} 2>&1",
        "status=$?",
        f"""printf '{{"exit_status": %d}}\\n' "$status" > {shlex.quote(f"{output}/{name}.{PERF_EXIT_KIND}.json")}""",
        shlex.join([PEBBLE_CLI, "notify", WORKER_DONE_NOTICE]),
        'exit "$status"',
    ]
    command = ["/bin/sh", "-c", "\n".join(script)]
    memory = f"-Xms{PRODUCER_HEAP} -Xmx{PRODUCER_HEAP} -XX:MaxDirectMemorySize={DIRECT_MEMORY}"
    return Worker(name, "producer", Engine.PULSAR_PERF, command, values, {"PULSAR_MEM": memory})


def budget_s(spec: LoadTestSpec) -> int:
    """How long a test's workers run at most, from start to the end of the measured phase."""
    search = MAX_SEARCH_BUDGET_S if spec.find_max else 0
    return spec.warm_up_s + search + spec.duration_s + CONSUMER_DRAIN_S


def _split(items: range, parts: int, index: int) -> range:
    base, remainder = divmod(len(items), parts)
    start = items.start + index * base + min(index, remainder)
    return range(start, start + base + (1 if index < remainder else 0))


def plan_workers(
    spec: LoadTestSpec,
    test_id: str,
    units: list[str],
    unit: str,
    service_url: str,
    topic: str,
    output_dir: str,
    token_file: str,
    trust_certs_file: str | None = None,
) -> list[Worker]:
    """The workers `unit` runs for this test (empty when the unit does not take part).

    `trust_certs_file` is the CA file the clients verify the brokers with (TLS URLs); None in plaintext.
    """
    if unit not in units:
        return []
    index = sorted(units, key=lambda u: int(u.rpartition("/")[2])).index(unit)
    total = MAX_SEARCH_START_RATE if spec.rate is None else spec.rate
    unit_rate = per_unit_rate(total, len(units), index)
    devices = device_slice(spec.device_count, units, unit)
    common: dict[str, str | int | float | bool] = {
        "test_id": test_id,
        "unit": unit,
        "service_url": service_url,
        "auth_token_file": token_file,
        "tls_trust_certs_file": trust_certs_file or "",
        "topic": topic,
        "subscription": f"loadgen-{test_id}",
        "warmup_seconds": spec.warm_up_s,
        "duration_seconds": spec.duration_s,
        "payload": spec.payload.value,
        "size": spec.size or 100,  # read for payload=bytes only
        "device_total": spec.device_count,
        "keys": spec.keys,
        "batch_delay_ms": spec.batch_delay_ms,
        "batch_max_messages": spec.batch_max_messages,
        "batch_max_bytes": spec.batch_max_bytes,
        "compression": spec.compression.value,
        "max_pending": MAX_PENDING,
        "memory_limit_mb": CLIENT_MEMORY_LIMIT_MB,
        "io_threads": 1,
        "interval_seconds": INTERVAL_S,
        "progress_seconds": PROGRESS_S,
        "output_dir": output_dir,
        "max_search": spec.find_max,
        "rate": 1,
        # The consumer reads every device's messages; it carries the unit's slice for the record.
        "device_first": devices.start if len(devices) else 0,
        "device_count": max(1, len(devices)),
    }
    workers = []
    producers = spec.producers_per_unit
    for number in range(producers):
        mine = _split(devices, producers, number)
        values = {
            **common,
            "role": "producer",
            "worker": f"producer-{number}",
            "rate": max(1, per_unit_rate(unit_rate, producers, number)),
            "device_first": mine.start,
            "device_count": len(mine),
        }
        name = f"producer-{number}"
        if spec.engine is Engine.PULSAR_PERF:
            workers.append(_perf_worker(spec, name, values))
        else:
            workers.append(
                Worker(
                    name,
                    "producer",
                    Engine.JAVA,
                    _java_command(PRODUCER_HEAP, f"{output_dir}/{name}.properties"),
                    values,
                )
            )
    if spec.consumers and spec.engine is Engine.JAVA:
        values = {**common, "role": "consumer", "worker": "consumer-0", "max_search": False}
        values["duration_seconds"] = spec.duration_s + (MAX_SEARCH_BUDGET_S if spec.find_max else 0) + CONSUMER_DRAIN_S
        command = _java_command(CONSUMER_HEAP, f"{output_dir}/consumer-0.properties")
        workers.append(Worker("consumer-0", "consumer", Engine.JAVA, command, values))
    return workers
