"""A unit's workers: rates and device slices split exactly, the consumer's place, the bounds."""

from __future__ import annotations

import pytest

from loadgen_k8s.managers.spec import LoadTestSpec
from loadgen_k8s.managers.workers import MAX_SEARCH_START_RATE, budget_s, plan_workers

UNITS = ["lg/0", "lg/1", "lg/10", "lg/2"]


def _workers(unit: str, trust_certs_file: str | None = None, **params: object) -> list:
    spec = LoadTestSpec.parse({"rate": "1000003", "device-count": 100, **params})
    url = "pulsar+ssl://b:6651" if trust_certs_file else "pulsar://b:6650"
    topic = "persistent://lg/default/s"
    return plan_workers(spec, "t1", UNITS, unit, url, topic, "/out", "/token", trust_certs_file)


def test_rates_and_devices_add_up_across_units_and_producers() -> None:
    producers = [w for unit in UNITS for w in _workers(unit, **{"producers-per-unit": 3}) if w.role == "producer"]
    assert len(producers) == 12
    assert sum(w.values["rate"] for w in producers) == 1_000_003
    devices = [
        d
        for w in producers
        for d in range(w.values["device_first"], w.values["device_first"] + w.values["device_count"])
    ]
    assert sorted(devices) == list(range(100))  # disjoint and complete


def test_unit_order_is_by_number_not_by_name() -> None:
    # lg/10 is the last unit: it takes the last slice
    last = _workers("lg/10")[0]
    assert last.values["device_first"] + last.values["device_count"] == 100


def test_one_consumer_per_unit_unless_turned_off_or_pulsar_perf() -> None:
    assert [w.name for w in _workers("lg/0")] == ["producer-0", "consumer-0"]
    assert [w.name for w in _workers("lg/0", consumers=False)] == ["producer-0"]
    perf = _workers("lg/0", engine="pulsar-perf", payload="bytes")
    assert [w.name for w in perf] == ["producer-0"]


def test_a_unit_outside_the_test_runs_nothing() -> None:
    spec = LoadTestSpec.parse({})
    assert plan_workers(spec, "t1", UNITS, "lg/7", "u", "t", "/o", "/k") == []


def test_rate_max_starts_the_search_from_the_application_start_rate() -> None:
    producers = [w for unit in UNITS for w in _workers(unit, rate="max") if w.role == "producer"]
    assert sum(w.values["rate"] for w in producers) == MAX_SEARCH_START_RATE
    assert all(w.values["max_search"] for w in producers)


@pytest.mark.parametrize(
    ("params", "expected"), [({}, 10 + 60 + 5), ({"rate": "max", "duration": "30s"}, 10 + 150 + 30 + 5)]
)
def test_the_budget_covers_warm_up_search_and_duration(params: dict, expected: int) -> None:
    assert budget_s(LoadTestSpec.parse(params)) == expected


def test_the_token_and_topic_reach_the_worker_by_file_and_name() -> None:
    values = _workers("lg/0")[0].values
    assert values["auth_token_file"] == "/token"
    assert values["topic"] == "persistent://lg/default/s"
    assert values["subscription"] == "loadgen-t1"


def test_pulsar_perf_runs_as_the_reference_with_its_token_by_file() -> None:
    # Given a test with the reference engine
    workers = _workers("lg/0", engine="pulsar-perf", payload="bytes", size=1024)

    # Then one pulsar-perf process runs, its stdout kept for the summary, its token read from a
    # file; when it ends, the done notice is raised and its exit status kept
    (worker,) = workers
    assert worker.command[:2] == ["/bin/sh", "-c"]
    perf, status, record, notify, exit_line = worker.command[2].split("\n")
    assert perf.startswith("/pulsar/bin/pulsar-perf produce ")
    assert "--auth-params file:///token" in perf
    assert "--histogram-file /out/producer-0.hlog" in perf
    assert perf.endswith("> /out/producer-0.out 2>&1")
    assert status == "status=$?"
    assert record == """printf '{"exit_status": %d}\\n' "$status" > /out/producer-0.exit.json"""
    assert notify == "/charm/bin/pebble notify pulsar.apache.org/loadgen-worker-done"
    assert exit_line == 'exit "$status"'
    assert worker.environment["PULSAR_MEM"].startswith("-Xms256m -Xmx256m")


def test_our_engine_is_the_jdk_running_one_source_file_with_a_bounded_heap() -> None:
    producer, consumer = _workers("lg/0")
    assert producer.command == [
        "java", "-Xms256m", "-Xmx256m", "-XX:MaxDirectMemorySize=256m", "-XX:+UseParallelGC",
        "-cp", "/pulsar/lib/*", "/pulsar/loadgen/LoadWorker.java", "/out/producer-0.properties",
    ]  # fmt: skip
    assert consumer.command[-1] == "/out/consumer-0.properties"


def test_with_tls_every_worker_gets_the_ca_file_and_without_none() -> None:
    # Our engine's workers carry it for their properties file; pulsar-perf as its flags
    assert {w.values["tls_trust_certs_file"] for w in _workers("lg/0", "/ca.pem")} == {"/ca.pem"}
    (perf,) = _workers("lg/0", "/ca.pem", engine="pulsar-perf", payload="bytes")
    assert "--trust-cert-file /ca.pem --tls-enable-hostname-verification" in perf.command[2]
    assert {w.values["tls_trust_certs_file"] for w in _workers("lg/0")} == {""}
    (perf,) = _workers("lg/0", engine="pulsar-perf", payload="bytes")
    assert "--trust-cert-file" not in perf.command[2]
