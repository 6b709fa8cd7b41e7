"""loadgen-k8s -n 2 against pulsar-k8s -n 1 and bookie-k8s -n 3: load tests as a Juju user runs them.

The tests of this module build on each other in order: one cluster (conftest.py's, shared
with cdc-k8s), several load tests. The cluster's DNS domain is not cluster.local, so the first
test checks that every name the charms hand out follows the pods' own FQDNs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import ops
import pytest

from sandbox import Model
from tests.sandbox.client_charms.conftest import CLUSTER_DOMAIN
from tests.sandbox.conftest import CHARMS

LOADGEN = "loadgen-k8s"
CHECKER = Path(__file__).resolve().parents[1] / "loadgen_checker.py"
CHECKER_IN_POD = "/pulsar/tester/loadgen_checker.py"
TOKEN_FILE = "/var/lib/loadgen/pulsar-token"
TEST_TIMEOUT = 240


@pytest.fixture(scope="module")
def cluster(pulsar_cluster: Model) -> Model:
    model = pulsar_cluster
    model.deploy(CHARMS / LOADGEN, num_units=2)
    model.integrate(LOADGEN, "pulsar-k8s")
    model.wait_for_idle([LOADGEN, "pulsar-k8s", "bookie-k8s"], timeout=600)  # cdc-k8s may be there, blocked
    return model


def _plan(model: Model) -> dict[str, Any]:
    """The current test as the leader published it in the peer application databag."""
    peers = next(r for r in model.relations.values() if r.endpoints == [(LOADGEN, "workers")])
    raw = peers.app_data.get(LOADGEN, {}).get("test")
    return json.loads(raw) if raw else {}


def _wait_phase(model: Model, test_id: str, phases: set[str], timeout: float = TEST_TIMEOUT) -> None:
    def reached(m: Model) -> bool:
        plan = _plan(m)
        return plan.get("id") == test_id and plan.get("phase") in phases

    model.drive_until(reached, timeout=timeout)


def _results_when_written(model: Model, unit: str, test_id: str, timeout: float = 120) -> dict[str, Any]:
    """load-test-results on `unit`, once the application's files are there."""
    deadline = time.monotonic() + timeout
    while True:
        result = model.run(unit, "load-test-results", {"test-id": test_id})
        assert result.status == "completed", result.message
        if "table" in result.results or time.monotonic() > deadline:
            return result.results
        model.settle()
        time.sleep(2)


def _finished_on_target(
    model: Model, unit: str, test_id: str, target: float, tolerance: float, timeout: float = TEST_TIMEOUT
) -> dict[str, Any]:
    """Wait for the test to finish; check it met `target` within `tolerance` with no failure."""
    _wait_phase(model, test_id, {"finished", "stopped", "failed"}, timeout=timeout)
    assert _plan(model)["phase"] == "finished"
    results = _results_when_written(model, unit, test_id)
    assert results["state"] == "finished"
    assert results["failed"] == "0"
    assert float(results["target-rate"]) == target
    assert abs(float(results["achieved-rate"]) - target) / target < tolerance, results["table"]
    return results


def _application(model: Model, unit: str, test_id: str) -> dict[str, Any]:
    path = f"/var/lib/loadgen/tests/{test_id}/application.json"
    return json.loads(model.pebble(unit, "loadgen").pull(path).read())


def _check_topic(model: Model, unit: str, topic: str) -> dict[str, Any]:
    """Read the whole topic from inside a loadgen pod with its own token (see loadgen_checker.py)."""
    client = model.pebble(unit, "loadgen")
    client.push(CHECKER_IN_POD, CHECKER.read_text(), make_dirs=True)
    token = client.pull(TOKEN_FILE).read().strip()
    relation = next(
        r for r in model.relations.values() if set(r.endpoints) == {(LOADGEN, "pulsar"), ("pulsar-k8s", "pulsar")}
    )
    grant = {k: json.loads(v) for k, v in relation.app_data["pulsar-k8s"].items()}
    request = {
        "service_url": grant["service-url"],
        "web_service_url": grant["web-service-url"],
        "topic": f"persistent://{grant['namespace']}/{topic}",
        "token": token,
    }
    process = client.exec(["python3", CHECKER_IN_POD], stdin=json.dumps(request), timeout=180)
    stdout, _ = process.wait_output()
    return json.loads(stdout.strip().splitlines()[-1])


def test_in_another_dns_domain_every_name_handed_out_is_the_pods_own(cluster: Model) -> None:
    model = cluster
    # Given a cluster whose pods are named under CLUSTER_DOMAIN
    fqdn = f"pulsar-k8s-0.pulsar-k8s-endpoints.{model.name}.svc.{CLUSTER_DOMAIN}"
    assert model.fqdn("pulsar-k8s/0") == fqdn

    # Then the broker advertises its FQDN, bookies register under theirs, and clients get URLs of it
    broker_conf = model.pebble("pulsar-k8s/0", "pulsar").pull("/pulsar/conf/broker.conf").read()
    assert f"advertisedAddress={fqdn}\n" in broker_conf
    bookkeeper = next(r for r in model.relations.values() if ("bookie-k8s", "bookkeeper") in r.endpoints)
    assert json.loads(bookkeeper.unit_data["bookie-k8s/0"]["bookie-id"]) == (
        f"bookie-k8s-0.bookie-k8s-endpoints.{model.name}.svc.{CLUSTER_DOMAIN}:3181"
    )
    credentials = model.run("pulsar-k8s/0", "get-admin-credentials").results
    assert credentials["service-url"] == f"pulsar://{fqdn}:6650"
    granted = next(r for r in model.relations.values() if (LOADGEN, "pulsar") in r.endpoints)
    assert json.loads(granted.app_data["pulsar-k8s"]["service-url"]) == f"pulsar://{fqdn}:6650"
    # And clients connect through them
    produced = model.run("client/0", "produce", {"topic": "named", "count": 100})
    assert produced.results == {"acked": "100", "failed": "0"}, produced.message


def test_a_fixed_rate_test_meets_its_target_with_every_latency_family(cluster: Model) -> None:
    model = cluster
    # When the user starts a 20 s test at a modest rate from a non-leader unit
    unit = next(u for u in model.apps[LOADGEN].units if u != model.leader(LOADGEN))
    started = model.run(
        unit,
        "start-load-test",
        {"rate": 4000, "duration": "20s", "warm-up": "5s", "partitions": 4, "device-count": 1000, "topic": "fixed"},
    )
    assert started.status == "completed", started.message
    test_id = started.results["test-id"]

    # Then it runs on both units with one test id, and finishes
    # and the application reached its target within 2 %, with no failure
    results = _finished_on_target(model, unit, test_id, target=4000, tolerance=0.02)
    # and every latency family was measured, on every unit
    document = _application(model, unit, test_id)
    assert [u["unit"] for u in document["units"]] == [f"{LOADGEN}/0", f"{LOADGEN}/1"]
    for unit_result in document["units"]:
        for family in ("publish_latency", "publish_delay", "end_to_end"):
            assert unit_result[family], f"{unit_result['unit']} has no {family}"
    assert "end to end" in results["table"]
    # and the report files are there
    files = {f.name for f in model.pebble(unit, "loadgen").list_files(f"/var/lib/loadgen/tests/{test_id}")}
    assert {"report.html", "omb-result.json", "results.txt", "producer-0.hlog", "consumer-0.hlog"} <= files


def test_units_send_disjoint_device_ids_as_avro_with_the_registered_schema(cluster: Model) -> None:
    # Given the topic the last test filled (both units, 1000 devices)
    checked = _check_topic(cluster, f"{LOADGEN}/0", "fixed")

    # Then the topic's registered schema is AVRO and decodes every message
    assert checked["schema_type"] == "AVRO"
    assert checked["undecodable"] == 0
    assert checked["messages"] > 0
    # and every message's key is the reading's device id
    assert checked["key_mismatches"] == 0
    # and the two units' device ids are disjoint and cover the devices
    keys = {unit: set(ids) for unit, ids in checked["keys_by_unit"].items()}
    assert sorted(keys) == [f"{LOADGEN}/0", f"{LOADGEN}/1"]
    assert not keys[f"{LOADGEN}/0"] & keys[f"{LOADGEN}/1"]
    assert len(keys[f"{LOADGEN}/0"] | keys[f"{LOADGEN}/1"]) == 1000


def test_the_reference_engine_reports_through_the_same_results(cluster: Model) -> None:
    model = cluster
    leader = model.leader(LOADGEN)
    assert leader is not None
    # When the user runs a test with pulsar-perf as the engine
    params = {"engine": "pulsar-perf", "payload": "bytes", "size": 100, "rate": 2000, "duration": "20s"}
    started = model.run(leader, "start-load-test", {**params, "warm-up": "5s", "topic": "reference"})
    assert started.status == "completed", started.message
    test_id = started.results["test-id"]

    # Then it finishes as soon as pulsar-perf ends (its done notice: update-status is 5 min away)
    # and pulsar-perf's own histogram log gives the figures, near its target, with no failure
    _finished_on_target(model, leader, test_id, target=2000, tolerance=0.05, timeout=120)
    document = _application(model, leader, test_id)
    for unit_result in document["units"]:
        assert unit_result["publish_latency"], unit_result["unit"]
        assert not unit_result["publish_delay"], "pulsar-perf measures no publish delay"


def test_a_second_test_is_refused_while_one_runs_and_stop_keeps_partial_results(cluster: Model) -> None:
    model = cluster
    leader = model.leader(LOADGEN)
    assert leader is not None
    started = model.run(
        leader, "start-load-test", {"rate": 2000, "duration": "5m", "warm-up": "0s", "topic": "stopped"}
    )
    assert started.status == "completed", started.message
    test_id = started.results["test-id"]
    _wait_phase(model, test_id, {"running"})

    # When another test is asked for meanwhile, from the other unit
    other = next(u for u in model.apps[LOADGEN].units if u != leader)
    refused = model.run(other, "start-load-test", {"rate": 10})
    assert refused.status == "failed"
    assert refused.message.startswith(f"load test {test_id} is ")

    # When the user stops the running test after some load
    model.drive_until(lambda m: _units_acknowledged(m, test_id) > 2000, timeout=120)
    stopped = model.run(other, "stop-load-test")
    assert stopped.status == "completed", stopped.message

    # Then every worker stops, and the partial results are kept, marked stopped
    _wait_phase(model, test_id, {"stopped"})
    for unit in model.apps[LOADGEN].units:
        services = model.pebble(unit, "loadgen").get_services()
        assert not [s.name for s in services if s.is_running()], unit
    results = _results_when_written(model, other, test_id)
    assert results["state"] == "stopped"
    assert int(results["acknowledged"]) > 0


def _units_acknowledged(model: Model, test_id: str) -> int:
    total = 0
    for unit in model.apps[LOADGEN].units:
        try:
            progress = model.pebble(unit, "loadgen").pull(f"/var/lib/loadgen/tests/{test_id}/producer-0.progress.json")
            total += int(json.loads(progress.read()).get("acknowledged", 0))
        except (ops.pebble.PathError, ValueError):
            pass
    return total


def test_a_pod_restart_keeps_the_stored_results(cluster: Model) -> None:
    model = cluster
    unit = f"{LOADGEN}/1"
    plan = _plan(model)
    before = model.run(unit, "load-test-results", {"test-id": plan["id"]})
    assert "table" in before.results

    # When the pod is deleted and comes back
    model.restart_pod(unit)
    model.wait_for_idle([LOADGEN], timeout=300)

    # Then its results are still there
    after = model.run(unit, "load-test-results", {"test-id": plan["id"]})
    assert after.status == "completed", after.message
    assert after.results["table"] == before.results["table"]


def test_bad_parameters_fail_with_the_reason(cluster: Model) -> None:
    result = cluster.run(f"{LOADGEN}/0", "start-load-test", {"duration": "forever"})
    assert result.status == "failed"
    assert result.message.startswith("duration='forever': expected a duration")
