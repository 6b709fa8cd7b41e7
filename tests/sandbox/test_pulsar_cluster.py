"""pulsar-k8s -n 1 and bookie-k8s -n 3 on the real Pulsar distribution, authenticated end to end.

The tests of this module build on each other in order, as one story of a cluster's life.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import ops
import pytest

from sandbox import Model
from sandbox.state import RelationState
from tests.sandbox.writers import run_while_topics_move

TEST_CHARMS = Path(__file__).resolve().parent / "charms"

MESSAGES = 10_000
BRING_UP_TIMEOUT = 600


def _consume_all(model: Model, subscription: str) -> dict[str, str]:
    params: dict[str, object] = {"topic": "readings", "count": MESSAGES, "subscription": subscription}
    result = run_while_topics_move(model, "consume", params)
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
    assert status["ledger-quorum"] == {"ensemble-size": "3", "write-quorum": "3", "ack-quorum": "2"}


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


def test_a_dip_of_ready_bookies_leaves_a_running_broker_alone(model: Model) -> None:
    # Given a serving broker and the record of its starts
    before = _broker_changes(model)

    # When a bookie's pod restarts, so that fewer bookies are ready than the ensemble size for a while
    model.restart_pod("bookie-k8s/2")
    model.wait_for_idle(timeout=BRING_UP_TIMEOUT)

    # Then the broker, whose own config did not change, was neither stopped nor restarted
    assert _broker_changes(model) == before


def _client_relation(model: Model, app: str = "client") -> RelationState:
    return next(r for r in model.relations.values() if (app, "pulsar") in r.endpoints)


def _granted_token(model: Model, app: str = "client") -> str:
    """The token pulsar-k8s handed the client, read from the Juju secret it granted."""
    secret_id = json.loads(_client_relation(model, app).app_data["pulsar-k8s"]["secret-credentials"])
    secret = model.secrets[secret_id]
    return secret.revisions[secret.latest]["token"]


def _admin(model: Model, path: str, **params: object) -> str:
    result = model.run("client/0", "admin", {"path": path, **params})
    assert result.status == "completed", result.message
    return result.results["status"]


LOOKUP = "/lookup/v2/topic/persistent/client/default/readings"
PROTECTED = (LOOKUP, "/admin/v2/persistent/client/default", "/admin/v2/namespaces/client/default/permissions")


def test_a_removed_client_loses_its_access_and_keeps_its_data(model: Model) -> None:
    # Given the client's role and token, a subscription holding messages, and the token working
    role = model.run("client/0", "connection").results["role"]
    old_token = _granted_token(model)
    model.run("client/0", "consume", {"topic": "readings", "count": 0, "subscription": "across-revocation"})
    produced = model.run("client/0", "produce", {"topic": "readings", "count": 100})
    assert produced.results == {"acked": "100", "failed": "0"}, produced.message
    assert _admin(model, LOOKUP) == "200"

    # When the relation is removed
    model.remove_relation("client", "pulsar-k8s")
    model.wait_for_idle(["pulsar-k8s"], timeout=120)

    # Then the token the client kept is accepted for nothing: produce, consume, lookup, admin calls
    deadline = time.monotonic() + 30  # namespace policies reach the broker's cache asynchronously
    while (
        produce := model.run("client/0", "produce", {"topic": "readings", "count": 1, "kept-token": True})
    ).status != ("failed") and time.monotonic() < deadline:
        time.sleep(2)
    assert produce.status == "failed"
    assert "AuthorizationError" in produce.message
    consume = model.run(
        "client/0", "consume", {"topic": "readings", "count": 1, "subscription": "thief", "kept-token": True}
    )
    assert consume.status == "failed"
    assert "AuthorizationError" in consume.message
    other = model.run(
        "client/0", "produce", {"topic": "readings", "count": 1, "namespace": "public/default", "kept-token": True}
    )
    assert "AuthorizationError" in other.message
    for path in (*PROTECTED, "/admin/v2/tenants"):
        assert _admin(model, path, **{"kept-token": True}) in ("401", "403"), path
    # And the superuser sees the role gone from the namespace, and the client's data kept
    admin_token = model.run("pulsar-k8s/0", "get-admin-credentials").results["token"]
    permissions = model.run(
        "client/0", "admin", {"path": PROTECTED[2], "token": admin_token, "kept-token": True}
    ).results
    assert permissions["status"] == "200"
    assert role not in json.loads(permissions["body"])
    topics = model.run("client/0", "admin", {"path": PROTECTED[1], "token": admin_token, "kept-token": True})
    assert "readings" in topics.results["body"]

    # When the client is related again
    model.integrate("client", "pulsar-k8s")
    model.wait_for_idle(timeout=120)

    # Then it gets a new role whose token reads the kept messages, and the old token still gets nothing
    assert model.run("client/0", "connection").results["role"] != role
    assert _admin(model, LOOKUP, token=old_token) in ("401", "403")
    consumed = model.run(
        "client/0", "consume", {"topic": "readings", "count": 100, "subscription": "across-revocation"}
    )
    assert consumed.results == {"received": "100"}, consumed.message


@pytest.mark.parametrize("app", ["pulsar-k8s-admin", "public", "pulsar"])
def test_a_client_named_like_a_reserved_role_or_tenant_gets_nothing(model: Model, app: str) -> None:
    # When a client application is deployed under a reserved name and related
    model.deploy(TEST_CHARMS / "pulsar-client-k8s", app)
    model.integrate(app, "pulsar-k8s")
    model.wait_for_idle([app], status="blocked", timeout=120)

    # Then pulsar-k8s refuses it and says why, and hands it no token
    assert model.units[f"{app}/0"].workload_status.message == (
        f"refused: namespace '{app}/default': tenant '{app}' is reserved (public, pulsar, pulsar-k8s*); "
        "deploy the client under another application name"
    )
    grant = _client_relation(model, app).app_data.get("pulsar-k8s", {})
    assert "secret-credentials" not in grant
    assert not any(_client_relation(model, app).id in secret.grants for secret in model.secrets.values())
