"""pulsar-k8s -n 3 (a ZooKeeper quorum of three, three brokers) with bookie-k8s -n 3.

Slower than test_pulsar_cluster: it stops the ZooKeeper leader's pod under a live cluster.
"""

from __future__ import annotations

from collections.abc import Callable

from sandbox import Model

MESSAGES = 10_000
TIMEOUT = 900


def test_three_units_form_a_quorum_and_survive_losing_the_leader(
    model: Model, deploy_cluster: Callable[[Model, int], None]
) -> None:
    # When pulsar-k8s is deployed with three units, with three bookies and a client
    deploy_cluster(model, 3)

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
