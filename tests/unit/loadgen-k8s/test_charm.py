"""loadgen-k8s with ops.testing: actions, the peer coordination, the workers' Pebble layer and files."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import ops
import pytest
from ops import testing

from loadgen_k8s.charm import LoadgenCharm
from loadgen_k8s.managers.results import new_histogram
from loadgen_k8s.workload import ENGINE_FILE

APP = "loadgen-k8s"
TOKEN = "eyJ0b2tlbi1mb3ItdGVzdHMifQ"
BROKER = "pulsar-k8s-0.pulsar-k8s-endpoints.test.svc.cluster.local"
SERVICE_URL = f"pulsar://{BROKER}:6650"
TLS_SERVICE_URL = f"pulsar+ssl://{BROKER}:6651"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfirstCA\n-----END CERTIFICATE-----\n"
NEW_CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBsecondCA\n-----END CERTIFICATE-----\n"
CA_PATH = "/var/lib/loadgen/pulsar-ca.pem"
PRODUCER = "loadgen-producer-0"
CONSUMER = "loadgen-consumer-0"


def _json(values: dict[str, Any]) -> dict[str, str]:
    return {key: json.dumps(value) for key, value in values.items()}


class Unit:
    """One loadgen unit with its container's image tree and storage on disk."""

    def __init__(self, root: Path, image: Path) -> None:
        self.image = image
        self.storage = root / "storage"
        self.pulsar = root / "pulsar"
        self.storage.mkdir(parents=True)
        self.pulsar.mkdir()
        self.secret = testing.Secret({"token": TOKEN}, owner=None)

    def container(
        self, layers: dict[str, Any] | None = None, service_statuses: dict[str, Any] | None = None
    ) -> testing.Container:
        return testing.Container(
            "loadgen",
            can_connect=True,
            mounts={
                "lib": testing.Mount(location="/pulsar/lib", source=self.image / "lib"),
                "loadgen": testing.Mount(location="/pulsar/loadgen", source=self.pulsar),
                "results": testing.Mount(location="/var/lib/loadgen", source=self.storage),
            },
            layers=layers or {},
            service_statuses=service_statuses or {},
        )

    def pulsar_relation(self, topics: dict[str, int] | None = None, tls_ca: str | None = None) -> testing.Relation:
        grant = {
            "service-url": SERVICE_URL,
            "web-service-url": f"http://{BROKER}:8080",
            "namespace": f"{APP}/default",
            "role": "pulsar-k8s-client-3",
            "secret-credentials": self.secret.id,
        }
        if tls_ca:  # pulsar-k8s hands out the TLS URLs with the CA
            grant |= {"service-url": TLS_SERVICE_URL, "web-service-url": f"https://{BROKER}:8443", "tls-ca": tls_ca}
        if topics:
            grant["partitioned-topics"] = topics
        return testing.Relation("pulsar", remote_app_name="pulsar-k8s", remote_app_data=_json(grant), id=3)

    def state(
        self,
        *,
        leader: bool = True,
        peer_app: dict[str, Any] | None = None,
        peer_units: dict[int, dict[str, Any]] | None = None,
        local_peer: dict[str, Any] | None = None,
        topics: dict[str, int] | None = None,
        related: bool = True,
        tls_ca: str | None = None,
        layers: dict[str, Any] | None = None,
        service_statuses: dict[str, Any] | None = None,
    ) -> testing.State:
        peers = testing.PeerRelation(
            "workers",
            local_app_data=_json(peer_app or {}),
            local_unit_data=_json(local_peer or {}),
            peers_data={n: _json(d) for n, d in (peer_units or {1: {}}).items()},
            id=1,
        )
        relations: set[testing.RelationBase] = {peers}
        if related:
            relations.add(self.pulsar_relation(topics, tls_ca))
        return testing.State(
            leader=leader,
            relations=relations,
            secrets={self.secret},
            containers={self.container(layers, service_statuses)},
        )


@pytest.fixture
def ctx() -> testing.Context:
    return testing.Context(LoadgenCharm, app_name=APP, unit_id=0)


@pytest.fixture
def unit(tmp_path: Path, pulsar_image: Path) -> Unit:
    return Unit(tmp_path / "unit", pulsar_image)


def _peer(out: testing.State) -> testing.PeerRelation:
    relation = next(r for r in out.relations if r.endpoint == "workers")
    assert isinstance(relation, testing.PeerRelation)
    return relation


def _plan(out: testing.State) -> dict[str, Any]:
    return json.loads(_peer(out).local_app_data["test"])


def _running_plan(test_id: str = "t1", phase: str = "running", started_ms: int = 2, **params: Any) -> dict[str, Any]:
    return {
        "id": test_id,
        "params": {"rate": "1000", "duration": "20s", "warm-up": "5s", "partitions": 4, **params},
        "units": [f"{APP}/0", f"{APP}/1"],
        "phase": phase,
        "accepted_ms": 1,
        "started_ms": started_ms,
        "budget_s": 30,
    }


def test_without_the_pulsar_relation_the_unit_blocks_and_start_refuses(ctx: testing.Context, unit: Unit) -> None:
    # Given a unit that is not related to pulsar-k8s
    state = unit.state(related=False)

    # When the user starts a test
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("start-load-test"), state)

    # Then the action says what to do, and so does the status
    assert failed.value.message == "no pulsar relation: juju integrate loadgen-k8s pulsar-k8s"
    out = ctx.run(ctx.on.update_status(), state)
    assert out.unit_status == testing.BlockedStatus("integrate with pulsar-k8s: juju integrate loadgen-k8s pulsar-k8s")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rate": 0}, "rate=0: expected a total rate in msg/s from 1 to 10000000, or 'max', got the integer 0"),
        ({"rate": "fast"}, "rate='fast': expected a total rate"),
        ({"duration": "forever"}, "duration='forever': expected a duration"),
        ({"device-count": 1}, "device-count=1 is smaller than the 2 producers (2 units x 1)"),
    ],
)
def test_bad_parameters_fail_the_action_and_change_nothing(
    ctx: testing.Context, unit: Unit, params: dict[str, Any], message: str
) -> None:
    state = unit.state()
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("start-load-test", params=params), state)
    assert failed.value.message.startswith(message)
    assert "test" not in _peer(ctx.run(ctx.on.update_status(), state)).local_app_data


def test_the_leader_accepts_a_test_and_asks_pulsar_k8s_for_its_topic(ctx: testing.Context, unit: Unit) -> None:
    # Given a leader related to pulsar-k8s, with a peer
    state = unit.state()

    # When the user starts a test on it (rate as a bare number, as `juju run ... rate=750000` gives it)
    out = ctx.run(ctx.on.action("start-load-test", params={"rate": 750000, "partitions": 6, "topic": "iot"}), state)

    # Then the action answers with the test id at once
    results = ctx.action_results or {}
    assert results["units"] == f"{APP}/0,{APP}/1"
    assert results["target-rate"] == "750000 msg/s"
    # and the plan is published, preparing its topic, which is asked of pulsar-k8s
    plan = _plan(out)
    assert (plan["id"], plan["phase"], plan["units"]) == (results["test-id"], "preparing", [f"{APP}/0", f"{APP}/1"])
    request = out.get_relation(3).local_app_data
    assert json.loads(request["partitioned-topics"]) == {"iot": 6}
    assert out.unit_status == testing.MaintenanceStatus(f"load test {plan['id']} preparing its topic")


def test_a_non_leader_leaves_its_request_for_the_leader(ctx: testing.Context, unit: Unit) -> None:
    out = ctx.run(ctx.on.action("start-load-test", params={"rate": "max"}), unit.state(leader=False))
    request = json.loads(_peer(out).local_unit_data["start-request"])
    assert request["id"] == (ctx.action_results or {})["test-id"]
    assert request["params"]["rate"] == "max"
    assert "test" not in _peer(out).local_app_data


def test_the_leader_adopts_a_request_and_runs_it_once_the_topic_is_ready(ctx: testing.Context, unit: Unit) -> None:
    # Given unit 1 asked for a test and pulsar-k8s already has its topic
    request = {"id": "t9", "params": _running_plan()["params"], "units": [f"{APP}/0", f"{APP}/1"], "budget_s": 30}
    state = unit.state(peer_units={1: {"start-request": request}}, topics={"sensor-readings": 4})

    # When the leader sees it
    out = ctx.run(ctx.on.relation_changed(_peer(testing.State(relations=state.relations)), remote_unit=1), state)

    # Then the test runs, and this unit's workers start
    plan = _plan(out)
    assert (plan["id"], plan["phase"], plan["requested_by"]) == ("t9", "running", f"{APP}/1")
    assert {PRODUCER, CONSUMER} <= set(out.get_container("loadgen").plan.services)


def test_a_running_test_starts_the_workers_as_pebble_services_with_files_not_arguments(
    ctx: testing.Context, unit: Unit
) -> None:
    # Given a running test this unit has not started
    state = unit.state(leader=False, peer_app={"test": _running_plan()})

    # When the unit sees it
    out = ctx.run(ctx.on.update_status(), state)

    # Then one producer and one consumer run as one-shot services of the image's JDK
    services = out.get_container("loadgen").plan.services
    producer = services[PRODUCER]
    assert producer.startup == "disabled"
    assert producer.on_success == "ignore"
    assert producer.on_failure == "ignore"
    assert producer.command.split() == [
        "java", "-Xms256m", "-Xmx256m", "-XX:MaxDirectMemorySize=256m", "-XX:+UseParallelGC",
        "-cp", "'/pulsar/lib/*'", "/pulsar/loadgen/LoadWorker.java", "/var/lib/loadgen/tests/t1/producer-0.properties",
    ]  # fmt: skip
    assert out.get_container("loadgen").service_statuses[PRODUCER].value == "active"
    # and the engine, the token (0600) and the properties are pushed; the token is in no argument or property
    assert (unit.pulsar / "LoadWorker.java").read_text() == ENGINE_FILE.read_text()
    token = unit.storage / "pulsar-token"
    assert token.read_text() == TOKEN
    properties = (unit.storage / "tests" / "t1" / "producer-0.properties").read_text()
    assert "auth.token.file=/var/lib/loadgen/pulsar-token" in properties
    assert TOKEN not in properties
    assert TOKEN not in producer.command
    # unit 0 of 2 takes half the rate and the first half of the devices
    assert "rate=500\n" in properties
    assert "device.first=0\n" in properties
    assert "device.count=50000\n" in properties
    # and the unit says it is running
    assert json.loads(_peer(out).local_unit_data["report"]) == {"test_id": "t1", "state": "running", "result": ""}
    assert out.unit_status.name == "active"
    assert out.unit_status.message.startswith("load test t1: ")


def test_a_second_test_is_refused_while_one_is_active(ctx: testing.Context, unit: Unit) -> None:
    state = unit.state(peer_app={"test": _running_plan()})
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("start-load-test"), state)
    assert failed.value.message == "load test t1 is running: stop it first with stop-load-test"


def test_stop_from_a_non_leader_asks_the_leader_and_stops_its_own_workers(ctx: testing.Context, unit: Unit) -> None:
    # Given this unit's workers run for test t1
    (unit.storage / "tests" / "t1").mkdir(parents=True)
    (unit.storage / "tests" / "t1" / "workers.json").write_text('{"producer-0": "java"}')
    layers = {"loadgen": ops.pebble.Layer({"services": {PRODUCER: {"override": "replace", "command": "java x"}}})}
    state = unit.state(
        leader=False,
        peer_app={"test": _running_plan()},
        local_peer={"report": {"test_id": "t1", "state": "running"}},
        layers=layers,
        service_statuses={PRODUCER: ops.pebble.ServiceStatus.ACTIVE},
    )

    # When the user stops the test here
    out = ctx.run(ctx.on.action("stop-load-test"), state)

    # Then the leader is asked, and this unit's workers are stopped
    assert json.loads(_peer(out).local_unit_data["stop-request"]) == "t1"
    assert (ctx.action_results or {})["test-id"] == "t1"
    assert out.get_container("loadgen").service_statuses[PRODUCER].value == "inactive"


def test_stop_without_a_running_test_fails(ctx: testing.Context, unit: Unit) -> None:
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("stop-load-test"), unit.state(peer_app={"test": _running_plan(phase="finished")}))
    assert failed.value.message == "no load test is running (last: t1, finished)"


def _worker_result(worker: str, acknowledged: int, state: str = "finished") -> dict[str, Any]:
    histogram = new_histogram("publish_latency")
    histogram.record_value(1500, acknowledged)
    encoded = histogram.encode().decode()
    producer = worker.startswith("producer")
    return {
        "worker": worker,
        "state": state,
        "target_rate": 500.0 if producer else 0.0,
        "sent": acknowledged if producer else 0,
        "acknowledged": acknowledged if producer else 0,
        "received": 0 if producer else acknowledged,
        "elapsed_seconds": 20.0,
        "bytes_uncompressed": 60 * acknowledged if producer else 0,
        "publish_latency": encoded if producer else "",
    }


def test_finished_workers_are_collected_and_the_application_results_written(ctx: testing.Context, unit: Unit) -> None:
    # Given both workers of this unit ended, and the other unit reported its result
    directory = unit.storage / "tests" / "t1"
    directory.mkdir(parents=True)
    (directory / "workers.json").write_text('{"producer-0": "java", "consumer-0": "java"}')
    (directory / "producer-0.result.json").write_text(json.dumps(_worker_result("producer-0", 10000)))
    (directory / "consumer-0.result.json").write_text(json.dumps(_worker_result("consumer-0", 19000)))
    other = _worker_result("producer-0", 9000) | {"unit": f"{APP}/1"}
    state = unit.state(
        # started just now: the test ends because every unit reported, not because time ran out
        peer_app={"test": _running_plan(phase="running", started_ms=int(time.time() * 1000))},
        local_peer={"report": {"test_id": "t1", "state": "running"}},
        peer_units={1: {"report": {"test_id": "t1", "state": "finished", "result": json.dumps(other)}}},
        topics={"sensor-readings": 4},
    )

    # When an event comes (the engine's notice, here update-status)
    out = ctx.run(ctx.on.update_status(), state)

    # Then this unit's result is its workers' sum, the test is finished, and the files are written
    report = json.loads(_peer(out).local_unit_data["report"])
    assert report["state"] == "finished"
    assert json.loads(report["result"])["acknowledged"] == 10000
    assert json.loads(report["result"])["received"] == 19000
    assert _plan(out)["phase"] == "finished"
    assert json.loads(_peer(out).local_app_data["history"]) == ["t1"]
    assert {"application.json", "results.txt", "report.html", "omb-result.json", "unit-result.json"} <= {
        p.name for p in directory.iterdir()
    }
    omb = json.loads((directory / "omb-result.json").read_text())
    assert omb["messageSize"] == 60

    # And load-test-results shows the application's figures
    ctx.run(ctx.on.action("load-test-results"), out)
    results = ctx.action_results or {}
    assert results["state"] == "finished"
    assert results["acknowledged"] == "19000"
    assert f"{APP}/1" in results["table"]


def _perf_log(acknowledged_per_interval: int) -> str:
    """pulsar-perf's --histogram-file: two 10 s intervals of latencies in us (the first is warm-up)."""
    lines = [
        "#[Histogram log format version 1.3]",
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"',
    ]
    for start in (1764471600, 1764471610):
        histogram = new_histogram("publish_latency")
        histogram.record_value(1000, acknowledged_per_interval)
        lines.append(f"{start}.000,10.000,1.000,{histogram.encode().decode()}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("ended", [False, True])
def test_a_pulsar_perf_worker_is_collected_once_its_shell_recorded_its_exit(
    ctx: testing.Context, unit: Unit, ended: bool
) -> None:
    # Given a pulsar-perf worker whose histogram log and summary are written, its service still
    # active (its shell is raising the done notice), with or without its exit status recorded
    directory = unit.storage / "tests" / "t1"
    directory.mkdir(parents=True)
    (directory / "workers.json").write_text('{"producer-0": "pulsar-perf"}')
    (directory / "producer-0.hlog").write_text(_perf_log(4000))
    summary = "INFO  PerformanceProducer - Aggregated throughput stats --- 8000 records sent --- 400.000 msg/s"
    (directory / "producer-0.out").write_text(summary + "\n")
    if ended:
        (directory / "producer-0.exit.json").write_text('{"exit_status": 0}\n')
    layers = {"loadgen": ops.pebble.Layer({"services": {PRODUCER: {"override": "replace", "command": "sh"}}})}
    state = unit.state(
        leader=False,
        peer_app={"test": _running_plan(engine="pulsar-perf", payload="bytes", size=100)},
        local_peer={"report": {"test_id": "t1", "state": "running"}},
        layers=layers,
        service_statuses={PRODUCER: ops.pebble.ServiceStatus.ACTIVE},
    )

    notice = testing.Notice("pulsar.apache.org/loadgen-worker-done")
    container = dataclasses.replace(state.get_container("loadgen"), notices=[notice])
    state = dataclasses.replace(state, containers={container})

    # When the done notice comes
    out = ctx.run(ctx.on.pebble_custom_notice(container, notice), state)

    # Then the unit reports the measured interval only once the exit status is there
    report = json.loads(_peer(out).local_unit_data["report"])
    if not ended:
        assert report["state"] == "running"
        return
    assert report["state"] == "finished"
    assert json.loads(report["result"])["acknowledged"] == 4000


def test_results_of_an_unknown_test_fail(ctx: testing.Context, unit: Unit) -> None:
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("load-test-results", params={"test-id": "nope"}), unit.state())
    assert failed.value.message == "no results for load test nope on this unit"
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("load-test-results"), unit.state())
    assert failed.value.message == "no load test has run yet"


def test_follow_logs_the_progress_of_this_units_workers(ctx: testing.Context, unit: Unit) -> None:
    # Given this unit's producer runs test t1 and reports its progress
    directory = unit.storage / "tests" / "t1"
    directory.mkdir(parents=True)
    (directory / "workers.json").write_text('{"producer-0": "java"}')
    progress = {"worker": "producer-0", "state": "running", "elapsed_seconds": 12.0, "current_rate": 499.5, "failed": 0}
    (directory / "producer-0.progress.json").write_text(json.dumps(progress))
    layers = {"loadgen": ops.pebble.Layer({"services": {PRODUCER: {"override": "replace", "command": "java x"}}})}
    state = unit.state(
        leader=False,
        peer_app={"test": _running_plan()},
        local_peer={"report": {"test_id": "t1", "state": "running"}},
        layers=layers,
        service_statuses={PRODUCER: ops.pebble.ServiceStatus.ACTIVE},
    )

    # When the user follows the test (its budget is long past here, so one line is logged)
    ctx.run(ctx.on.action("load-test-results", params={"follow": True}), state)

    # Then the action logs the progress and says the results are not in yet
    assert ctx.action_logs == ["load test t1: running, 12s measured, 500 msg/s, 0 failed"]
    assert (ctx.action_results or {})["message"] == "no results yet: 0/2 units reported"


def test_the_results_record_the_cluster_that_produced_them(ctx: testing.Context, unit: Unit) -> None:
    # Given a finished test and pulsar-k8s's facts about its cluster in the grant
    directory = unit.storage / "tests" / "t1"
    directory.mkdir(parents=True)
    (directory / "workers.json").write_text('{"producer-0": "java"}')
    (directory / "producer-0.result.json").write_text(json.dumps(_worker_result("producer-0", 100)))
    other = _worker_result("producer-0", 100) | {"unit": f"{APP}/1"}
    state = unit.state(
        peer_app={"test": _running_plan()},
        local_peer={"report": {"test_id": "t1", "state": "running"}},
        peer_units={1: {"report": {"test_id": "t1", "state": "finished", "result": json.dumps(other)}}},
    )
    cluster = {
        "pulsar-version": "4.0.8",
        "brokers": 3,
        "bookies": 4,
        "ensemble-size": 3,
        "write-quorum": 3,
        "ack-quorum": 2,
    }
    relation = next(r for r in state.relations if r.endpoint == "pulsar")
    assert isinstance(relation, testing.Relation)
    granted = testing.Relation(
        "pulsar", remote_app_name="pulsar-k8s", id=3,
        remote_app_data={**relation.remote_app_data, "cluster": json.dumps(cluster)},
    )  # fmt: skip
    state = dataclasses.replace(state, relations={r for r in state.relations if r.endpoint != "pulsar"} | {granted})

    # When the unit writes the application's results
    ctx.run(ctx.on.update_status(), state)

    # Then they say which cluster produced them
    meta = json.loads((directory / "application.json").read_text())["meta"]
    assert meta["pulsar version (cluster)"] == "4.0.8"
    assert (meta["brokers"], meta["bookies"]) == (3, 4)
    assert meta["ledger quorum (ensemble/write/ack)"] == "3/3/2"
    assert meta["payload encoded bytes"] == 60.0


# ---------------------------------------------------------------- TLS to the brokers


def _properties(unit: Unit, worker: str) -> str:
    return (unit.storage / "tests" / "t1" / f"{worker}.properties").read_text()


def test_a_tls_connection_pushes_the_ca_and_every_worker_trusts_it(ctx: testing.Context, unit: Unit) -> None:
    # Given a running test this unit has not started, and pulsar-k8s handing out TLS URLs with its CA
    state = unit.state(leader=False, peer_app={"test": _running_plan()}, tls_ca=CA_PEM)

    # When the unit sees it
    out = ctx.run(ctx.on.update_status(), state)

    # Then the CA is pushed, readable by the workers (not a secret), next to the 0600 token
    ca = unit.storage / "pulsar-ca.pem"
    assert ca.read_text() == CA_PEM
    assert ca.stat().st_mode & 0o777 == 0o644
    assert (unit.storage / "pulsar-token").stat().st_mode & 0o777 == 0o600
    # and both workers connect to the TLS URL, verifying the brokers against that file
    for worker in ("producer-0", "consumer-0"):
        properties = _properties(unit, worker)
        assert f"service.url={TLS_SERVICE_URL}\n" in properties
        assert f"tls.trust.certs.file={CA_PATH}\n" in properties
        assert TOKEN not in properties
    # and neither the token nor the CA's content is in the plan
    plan = str(out.get_container("loadgen").plan.to_dict())
    assert TOKEN not in plan
    assert "MIIB" not in plan


def test_pulsar_perf_trusts_the_ca_by_file_and_checks_the_brokers_names(ctx: testing.Context, unit: Unit) -> None:
    # Given a pulsar-perf test on a TLS connection
    plan = _running_plan(engine="pulsar-perf", payload="bytes", size=100)
    state = unit.state(leader=False, peer_app={"test": plan}, tls_ca=CA_PEM)

    # When the unit starts its worker
    out = ctx.run(ctx.on.update_status(), state)

    # Then pulsar-perf is told where the CA is, to verify hostnames, and never to allow insecure TLS
    command = out.get_container("loadgen").plan.services[PRODUCER].command
    assert f"--service-url {TLS_SERVICE_URL} " in command
    assert f"--trust-cert-file {CA_PATH} --tls-enable-hostname-verification " in command
    assert "--tls-allow-insecure" not in command
    assert (unit.storage / "pulsar-ca.pem").read_text() == CA_PEM


@pytest.mark.parametrize("related", [True, False], ids=["plaintext grant", "relation gone"])
def test_without_tls_no_trust_settings_and_a_ca_left_from_before_is_removed(
    ctx: testing.Context, unit: Unit, related: bool
) -> None:
    # Given a CA file left from a TLS connection before, and a running test this unit has not started
    (unit.storage / "pulsar-ca.pem").write_text(CA_PEM)
    state = unit.state(leader=False, peer_app={"test": _running_plan()}, related=related)

    # When the unit sees a plaintext grant (or no relation at all)
    out = ctx.run(ctx.on.update_status(), state)

    # Then the CA file is gone
    assert not (unit.storage / "pulsar-ca.pem").exists()
    if not related:
        return
    # and the workers connect in plaintext with no TLS setting at all, as before TLS existed
    for worker in ("producer-0", "consumer-0"):
        properties = _properties(unit, worker)
        assert f"service.url={SERVICE_URL}\n" in properties
        assert "tls." not in properties
    assert {PRODUCER, CONSUMER} <= set(out.get_container("loadgen").plan.services)


def test_a_plaintext_pulsar_perf_worker_gets_no_tls_flags(ctx: testing.Context, unit: Unit) -> None:
    plan = _running_plan(engine="pulsar-perf", payload="bytes", size=100)
    out = ctx.run(ctx.on.update_status(), unit.state(leader=False, peer_app={"test": plan}))
    command = out.get_container("loadgen").plan.services[PRODUCER].command
    assert f"--service-url {SERVICE_URL} " in command
    assert "--trust-cert-file" not in command
    assert "--tls-" not in command


def test_a_changed_ca_replaces_the_file_the_running_workers_read(ctx: testing.Context, unit: Unit) -> None:
    # Given this unit's producer runs test t1 over TLS, trusting the first CA by file
    directory = unit.storage / "tests" / "t1"
    directory.mkdir(parents=True)
    (directory / "workers.json").write_text('{"producer-0": "java"}')
    properties = f"service.url={TLS_SERVICE_URL}\ntls.trust.certs.file={CA_PATH}\n"
    (directory / "producer-0.properties").write_text(properties)
    (unit.storage / "pulsar-ca.pem").write_text(CA_PEM)
    layers = {"loadgen": ops.pebble.Layer({"services": {PRODUCER: {"override": "replace", "command": "java x"}}})}
    state = unit.state(
        leader=False,
        peer_app={"test": _running_plan()},
        local_peer={"report": {"test_id": "t1", "state": "running"}},
        tls_ca=NEW_CA_PEM,
        layers=layers,
        service_statuses={PRODUCER: ops.pebble.ServiceStatus.ACTIVE},
    )

    # When pulsar-k8s hands out a new CA (a new certificates provider)
    out = ctx.run(ctx.on.relation_changed(unit.pulsar_relation(tls_ca=NEW_CA_PEM)), state)

    # Then the file the workers' clients reload holds the new CA, at the same path, still 0644
    ca = unit.storage / "pulsar-ca.pem"
    assert ca.read_text() == NEW_CA_PEM
    assert ca.stat().st_mode & 0o777 == 0o644
    assert (directory / "producer-0.properties").read_text() == properties
    # and the running worker is left running (as with a new token): no restart breaks the measurement
    assert out.get_container("loadgen").service_statuses[PRODUCER] == ops.pebble.ServiceStatus.ACTIVE
    assert out.get_container("loadgen").plan.services[PRODUCER].command == "java x"
