"""pulsar-k8s -n 1 and bookie-k8s -n 3 on the real Pulsar distribution, authenticated end to end.

The tests of this module build on each other in order, as one story of a cluster's life.
"""

from __future__ import annotations

from collections.abc import Callable

import ops
import pytest

from sandbox import Model

MESSAGES = 10_000
BRING_UP_TIMEOUT = 600


def _consume_all(model: Model, subscription: str) -> dict[str, str]:
    result = model.run("client/0", "consume", {"topic": "readings", "count": MESSAGES, "subscription": subscription})
    assert result.status == "completed", result.message
    return result.results


def test_cluster_comes_up_with_no_manual_step(model: Model, deploy_cluster: Callable[[Model, int], None]) -> None:
    # When the user deploys and integrates, as in the README
    deploy_cluster(model, 1)

    # Then every unit is active, and the cluster reports its parts
    assert model.units["pulsar-k8s/0"].workload_status.message == "zookeeper standalone, broker ready"
    assert model.units["client/0"].workload_status.message == "granted client/default"
    status = model.run("pulsar-k8s/0", "cluster-status").results
    assert status["zookeeper"] == {"pulsar-k8s-0": "standalone"}
    assert status["brokers"] == {"pulsar-k8s-0": "ready"}
    assert status["bookies"] == {f"bookie-k8s-{n}": "ready" for n in range(3)}
    assert status["ledger-quorum"] == {"ensemble-size": "3", "write-quorum": "2", "ack-quorum": "2"}


RESTARTED = ["bookie-k8s/1", "pulsar-k8s/0"]


def _subscription(unit: str) -> str:
    return f"after-restart-{unit.replace('/', '-')}"


def test_a_related_client_produces_and_consumes_with_its_token(model: Model) -> None:
    # Subscriptions that read only after the pod restarts below: they keep the backlog
    # (messages acknowledged by every subscription may be deleted, as Pulsar does).
    for unit in RESTARTED:
        model.run("client/0", "consume", {"topic": "readings", "count": 0, "subscription": _subscription(unit)})
    produced = model.run("client/0", "produce", {"topic": "readings", "count": MESSAGES})
    assert produced.status == "completed", produced.message
    assert produced.results == {"acked": str(MESSAGES), "failed": "0"}
    assert _consume_all(model, "first") == {"received": str(MESSAGES)}


def test_an_unauthenticated_client_is_refused(model: Model) -> None:
    result = model.run("client/0", "produce", {"topic": "readings", "count": 1, "authenticate": False})
    assert result.status == "failed"
    assert result.message.startswith("client failed:")


def test_a_client_cannot_touch_another_namespace(model: Model) -> None:
    result = model.run("client/0", "produce", {"topic": "readings", "count": 1, "namespace": "public/default"})
    assert result.status == "failed"
    assert "AuthorizationError" in result.message


def test_a_client_cannot_ask_for_another_tenant(model: Model) -> None:
    # When the client asks for a namespace in a tenant that is not its own
    model.config("client", {"namespace": "pulsar-k8s/stolen"})
    model.wait_for_idle(["client"], status="blocked", timeout=60)

    # Then pulsar-k8s refuses, and says why
    assert model.units["client/0"].workload_status.message == (
        "refused: namespace 'pulsar-k8s/stolen': the tenant must be the application name 'client'"
    )
    model.config("client", reset=["namespace"])
    model.wait_for_idle(["client"], timeout=60)


def _broker_changes(model: Model) -> list[str]:
    """Pebble's record of every start, stop, restart and replan that touched the broker."""
    changes = model.pebble("pulsar-k8s/0", "pulsar").get_changes(select=ops.pebble.ChangeState.ALL)
    return sorted(f"{c.id} {c.summary}" for c in changes if '"broker"' in c.summary)


def test_invalid_config_blocks_and_leaves_the_broker_running(model: Model) -> None:
    before = _broker_changes(model)
    model.config("pulsar-k8s", {"broker-heap": "lots"})
    model.wait_for_idle(["pulsar-k8s"], status="blocked", timeout=60)
    assert model.units["pulsar-k8s/0"].workload_status.message == (
        "invalid config broker-heap: 'lots' (a size such as 512m or 2g)"
    )
    assert model.pebble("pulsar-k8s/0", "pulsar").get_services(["broker"])[0].is_running()
    assert _broker_changes(model) == before  # neither stopped nor restarted
    model.config("pulsar-k8s", reset=["broker-heap"])
    model.wait_for_idle(["pulsar-k8s"], timeout=60)


@pytest.mark.parametrize("unit", RESTARTED)
def test_a_pod_restart_returns_to_active_and_loses_no_message(model: Model, unit: str) -> None:
    # When the pod is deleted and comes back
    model.restart_pod(unit)
    model.wait_for_idle(timeout=BRING_UP_TIMEOUT)

    # Then every acknowledged message is still readable
    assert _consume_all(model, _subscription(unit)) == {"received": str(MESSAGES)}
