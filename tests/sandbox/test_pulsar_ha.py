"""pulsar-k8s -n 3 (a ZooKeeper quorum of three, three brokers) with bookie-k8s -n 3.

Slower than test_pulsar_cluster: leadership moves in the middle of the bring-up, of a client
grant and of a rolling restart, and the ZooKeeper leader's pod is stopped under a live cluster.
The tests build on each other in order.
"""

from __future__ import annotations

import json
from pathlib import Path

import ops

from sandbox import Model

MESSAGES = 10_000
TIMEOUT = 900
CHARMS = Path(__file__).resolve().parents[2] / "charms"
TEST_CHARMS = Path(__file__).resolve().parent / "charms"
UNITS = ("pulsar-k8s/0", "pulsar-k8s/1", "pulsar-k8s/2")


def _peer_app_data(model: Model) -> dict[str, object]:
    """pulsar-k8s' peer application databag, decoded (each value is JSON)."""
    relation = next(r for r in model.relations.values() if r.endpoints == [("pulsar-k8s", "cluster")])
    return {key: json.loads(value) for key, value in relation.app_data.get("pulsar-k8s", {}).items()}


def _another_unit(model: Model, *besides: str | None) -> str:
    return next(unit for unit in reversed(UNITS) if unit not in besides)


def test_leadership_moving_before_initialization_still_brings_the_cluster_up(model: Model) -> None:
    # Given pulsar-k8s -n 3, bookie-k8s -n 3 and a client, deployed and integrated as a user types it
    model.deploy(CHARMS / "pulsar-k8s", num_units=3, settle=False)
    model.deploy(CHARMS / "bookie-k8s", num_units=3, settle=False)
    model.integrate("pulsar-k8s", "bookie-k8s", settle=False)
    model.deploy(TEST_CHARMS / "pulsar-client-k8s", "client", settle=False)
    model.integrate("client", "pulsar-k8s", settle=False)

    # When leadership moves once the leader has chosen the ensemble, before the metadata exists
    model.drive_until(
        lambda m: bool(_peer_app_data(m).get("zk-members")) and not _peer_app_data(m).get("initialized"), timeout=300
    )
    first_leader = model.leader("pulsar-k8s")
    model.elect_leader(_another_unit(model, first_leader))
    model.wait_for_idle(timeout=TIMEOUT)

    # Then the new leader initialized the cluster, and the bookies and the client were served
    assert model.leader("pulsar-k8s") != first_leader
    assert _peer_app_data(model)["initialized"] == "pulsar"
    status = model.run("pulsar-k8s/0", "cluster-status").results
    assert status["cluster-name"] == "pulsar"
    assert set(status["bookies"].values()) == {"ready"}
    assert model.units["client/0"].workload_status.message == "granted client/default"


def test_three_units_form_a_quorum_and_survive_losing_the_leader(model: Model) -> None:
    # Given pulsar-k8s with three units, with three bookies and a client (brought up above)

    # Then ZooKeeper has one leader and two followers, and three brokers are ready
    status = model.run("pulsar-k8s/0", "cluster-status").results
    roles = sorted(status["zookeeper"].values())
    assert roles == ["follower", "follower", "leader"]
    assert set(status["brokers"].values()) == {"ready"}
    # And the client's service URL lists every broker
    relation = next(r for r in model.relations.values() if ("client", "pulsar") in r.endpoints)
    assert relation.app_data["pulsar-k8s"]["service-url"].count(":6650") == 3

    model.run("client/0", "consume", {"topic": "ha", "count": 0, "subscription": "after"})  # keeps the backlog
    produced = model.run("client/0", "produce", {"topic": "ha", "count": MESSAGES})
    assert produced.results == {"acked": str(MESSAGES), "failed": "0"}, produced.message

    # When the ZooKeeper leader's pod is stopped and comes back
    leader = next(name for name, role in status["zookeeper"].items() if role == "leader")
    model.restart_pod(leader.replace("pulsar-k8s-", "pulsar-k8s/"))
    model.wait_for_idle(timeout=TIMEOUT)

    # Then the quorum is whole again and every acknowledged message is readable
    after = model.run("pulsar-k8s/0", "cluster-status").results
    assert sorted(after["zookeeper"].values()) == ["follower", "follower", "leader"]
    consumed = model.run("client/0", "consume", {"topic": "ha", "count": MESSAGES, "subscription": "after"})
    assert consumed.results == {"received": str(MESSAGES)}, consumed.message


def test_leadership_moving_in_the_middle_of_a_client_grant_still_serves_it(model: Model) -> None:
    # Given a second client that has asked for its namespace, not granted yet
    model.deploy(TEST_CHARMS / "pulsar-client-k8s", "client-two", settle=False)
    relation = model.integrate("client-two", "pulsar-k8s", settle=False)
    model.drive_until(
        lambda m: (
            "namespace" in m.relations[relation.id].app_data.get("client-two", {})
            and "secret-credentials" not in m.relations[relation.id].app_data.get("pulsar-k8s", {})
        ),
        timeout=120,
    )

    # When leadership moves to another unit
    model.elect_leader(_another_unit(model, model.leader("pulsar-k8s")))
    model.wait_for_idle(timeout=TIMEOUT)

    # Then the new leader grants it, and its token works
    assert model.units["client-two/0"].workload_status.message == "granted client-two/default"
    produced = model.run("client-two/0", "produce", {"topic": "grant", "count": 100})
    assert produced.results == {"acked": "100", "failed": "0"}, produced.message


def _broker_changes(model: Model, unit: str) -> set[str]:
    changes = model.pebble(unit, "pulsar").get_changes(select=ops.pebble.ChangeState.ALL)
    return {f"{c.id} {c.summary}" for c in changes if '"broker"' in c.summary}


def test_leadership_moving_in_the_middle_of_a_rolling_restart_finishes_the_roll(model: Model) -> None:
    # Given the record of every broker's starts, and messages waiting for a subscription
    before = {unit: _broker_changes(model, unit) for unit in UNITS}
    model.run("client/0", "consume", {"topic": "roll", "count": 0, "subscription": "after-roll"})
    produced = model.run("client/0", "produce", {"topic": "roll", "count": MESSAGES})
    assert produced.results == {"acked": str(MESSAGES), "failed": "0"}, produced.message

    # When a config change starts a rolling restart, and leadership moves while a unit holds the lock
    model.config("pulsar-k8s", {"broker-heap": "384m"}, settle=False)
    model.drive_until(lambda m: bool(_peer_app_data(m).get("restart-holder")), timeout=300)
    holder = str(_peer_app_data(model)["restart-holder"])
    model.elect_leader(_another_unit(model, model.leader("pulsar-k8s"), holder))
    model.wait_for_idle(timeout=TIMEOUT)

    # Then every broker restarted exactly once, with the new heap, and nothing was lost
    for unit in UNITS:
        assert len(_broker_changes(model, unit) - before[unit]) == 1, unit
        plan = model.pebble(unit, "pulsar").get_plan().services["broker"]
        assert "-Xmx384m" in plan.environment["PULSAR_MEM"]
    status = model.run("pulsar-k8s/0", "cluster-status").results
    assert sorted(status["zookeeper"].values()) == ["follower", "follower", "leader"]
    assert set(status["brokers"].values()) == {"ready"}
    consumed = model.run("client/0", "consume", {"topic": "roll", "count": MESSAGES, "subscription": "after-roll"})
    assert consumed.results == {"received": str(MESSAGES)}, consumed.message
