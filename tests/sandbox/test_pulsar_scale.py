"""Scaling pulsar-k8s 1 -> 3 -> 1: the ZooKeeper ensemble grows one server at a time and shrinks
as units leave, and no acknowledged message is lost."""

from __future__ import annotations

import time
from collections.abc import Callable

from sandbox import Model
from sandbox.scheduler import ActionResult

MESSAGES = 5_000
TIMEOUT = 900


def _run_while_ownership_moves(
    model: Model, action: str, params: dict[str, object], within: float = 90.0
) -> ActionResult:
    """Run a client action, again while it fails because topics are changing brokers.

    Right after the ensemble changes a broker can lose its ZooKeeper session for a moment and
    give up its bundles (growing through two servers has no fault tolerance), and a removed
    broker's ownership lasts until its session expires, so a lookup times out or points at the
    removed broker until another broker owns the bundle. Clients retry; so do these tests, and
    only on those two failures: any other (authorization above all) is final at once.
    """
    deadline = time.monotonic() + within
    while True:
        result = model.run("client/0", action, params)
        transient = "TimeOut" in result.message or "ConnectError" in result.message
        if result.status == "completed" or not transient or time.monotonic() > deadline:
            return result
        time.sleep(5)


def test_scale_up_keeps_the_data_and_ends_in_a_quorum_of_three(
    model: Model, deploy_cluster: Callable[[Model, int], None]
) -> None:
    # Given a single-unit cluster holding messages
    deploy_cluster(model, 1)
    model.run("client/0", "consume", {"topic": "scale", "count": 0, "subscription": "later"})
    produced = model.run("client/0", "produce", {"topic": "scale", "count": MESSAGES})
    assert produced.results == {"acked": str(MESSAGES), "failed": "0"}, produced.message

    # When two units are added
    model.add_unit("pulsar-k8s", 2)
    model.wait_for_idle(timeout=TIMEOUT)

    # Then ZooKeeper runs as a quorum of three (grown 1 -> 2 -> 3, never a majority of new servers)
    status = model.run("pulsar-k8s/0", "cluster-status").results
    assert sorted(status["zookeeper"].values()) == ["follower", "follower", "leader"]
    assert set(status["brokers"].values()) == {"ready"}
    # And the restarts it took happened one unit at a time, and nothing was lost
    consumed = _run_while_ownership_moves(
        model, "consume", {"topic": "scale", "count": MESSAGES, "subscription": "later"}
    )
    assert consumed.results == {"received": str(MESSAGES)}, consumed.message
    leader_log = (model.units["pulsar-k8s/0"].pod.log_dir / "charm.log").read_text()
    assert "zookeeper ensemble" in leader_log
    assert leader_log.count("restart lock: pulsar-k8s/") >= 2


def _client_grant(model: Model) -> dict[str, str]:
    relation = next(r for r in model.relations.values() if ("client", "pulsar") in r.endpoints)
    return relation.app_data["pulsar-k8s"]


def _client_token_secret(model: Model) -> str:
    return _client_grant(model)["secret-credentials"]


def test_scale_down_one_unit_at_a_time_shrinks_the_ensemble_and_keeps_the_data(model: Model) -> None:
    # Given the quorum of three from the test above, and messages produced through it
    model.run("client/0", "consume", {"topic": "shrink", "count": 0, "subscription": "later"})
    produced = model.run("client/0", "produce", {"topic": "shrink", "count": MESSAGES})
    assert produced.results == {"acked": str(MESSAGES), "failed": "0"}, produced.message
    # And leadership on the unit a scale-down removes first (the highest ordinal)
    model.elect_leader("pulsar-k8s/2")
    model.wait_for_idle(timeout=TIMEOUT)
    granted = _client_token_secret(model)

    # When units are removed one at a time, as `juju remove-unit --num-units 1` and waiting in between
    for unit in ("pulsar-k8s/2", "pulsar-k8s/1"):
        model.remove_unit("pulsar-k8s", num_units=1)
        model.wait_for_idle(timeout=TIMEOUT)

        # Then after each removal the survivors form the smaller ensemble, and serve
        status = model.run("pulsar-k8s/0", "cluster-status").results
        assert unit.replace("/", "-") not in status["zookeeper"]
        assert set(status["brokers"].values()) == {"ready"}
        # And the client keeps its grant, now listing the surviving brokers only
        assert _client_token_secret(model) == granted
        assert f"{unit.replace('/', '-')}.pulsar-k8s-endpoints" not in _client_grant(model)["service-url"]
        produced = _run_while_ownership_moves(model, "produce", {"topic": "during-shrink", "count": 10})
        assert produced.results == {"acked": "10", "failed": "0"}, produced.message
    assert status["zookeeper"] == {"pulsar-k8s-0": "standalone"}
    # And every acknowledged message is still there, served by the last broker
    consumed = _run_while_ownership_moves(
        model, "consume", {"topic": "shrink", "count": MESSAGES, "subscription": "later"}
    )
    assert consumed.results == {"received": str(MESSAGES)}, consumed.message
