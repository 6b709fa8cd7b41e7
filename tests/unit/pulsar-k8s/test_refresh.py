"""pulsar-k8s: the refresh guard (the StatefulSet's partition) and the pre-upgrade-check action."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.kubernetes import NEW, OLD, FakeKubernetes
from helpers.pulsar_k8s_builders import (
    FQDN1,
    FQDN2,
    Probes,
    Unit,
    decoded,
    initialized_app_data,
    member,
    ready_bookies,
    record_admin_calls,
    signing_key_secret,
)
from ops import testing

from pulsar_k8s.literals import Status

THREE = [member(0), member(1), member(2)]
SUMMARY = "3 brokers, ZooKeeper 3/3, 3 bookies"
WAITING = {"phase": "waiting", "services": ["broker"]}


@pytest.fixture
def cluster(probes: Probes, monkeypatch: pytest.MonkeyPatch) -> Probes:
    """Three units whose ZooKeepers and brokers all serve (the probes' answers)."""
    record_admin_calls(monkeypatch)
    probes.zookeeper_mode, probes.broker_ready = "leader", True
    probes.zookeeper_modes = {FQDN1: "follower", FQDN2: "follower"}
    probes.brokers_ready = {FQDN1: True, FQDN2: True}
    return probes


def peer(serving: bool = True, revision: str = OLD, **more: Any) -> dict[str, Any]:
    """A peer's databag: its host, whether it serves, and the revision its pod published."""
    return {"host": FQDN1, "serving": serving, **({"pod-revision": revision} if revision else {}), **more}


def three_units(unit: Unit, peers: dict[int, dict[str, Any]] | None = None, **kwargs: Any) -> testing.State:
    """An initialized cluster of three units with three ready bookies, seen from unit 0."""
    secret = signing_key_secret()
    app_data = {**initialized_app_data(secret), "zk-members": THREE}
    peers = peers if peers is not None else {1: peer(), 2: peer()}
    return unit.state(
        app_data=app_data,
        peers=peers,
        secrets=(secret,),
        relations=(ready_bookies(3, 3),),
        planned_units=3,
        **kwargs,
    )


def test_an_untrusted_application_works_unguarded_and_says_how_to_guard_it(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given a serving cluster whose application was deployed without `juju trust`
    kubernetes.trusted = False

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), three_units(unit))

    # Then the application is active, and its status says the refresh guard is off and how to turn it on
    assert out.app_status == Status.APP_REFRESH_UNGUARDED(summary=SUMMARY, app="pulsar-k8s")
    assert out.app_status.message == f"{SUMMARY}; refresh guard off: juju trust pulsar-k8s --scope=cluster"
    assert out.unit_status == Status.ACTIVE(role="leader")
    # And the unit publishes no revision for its pod, and nothing was patched
    assert "pod-revision" not in out.get_relations("cluster")[0].local_unit_data
    assert kubernetes.patches == []

    # When the operator asks whether a refresh may start
    with pytest.raises(testing.ActionFailed, match=r"not trusted: juju trust pulsar-k8s --scope=cluster"):
        ctx.run(ctx.on.action("pre-upgrade-check"), out)


def test_in_steady_state_the_partition_is_armed_at_the_highest_ordinal(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given a serving cluster of three pods, trusted, with no partition set
    kubernetes.steady(replicas=3)

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), three_units(unit))

    # Then it arms the partition at the highest ordinal: a refresh would replace pulsar-k8s-2 only
    assert kubernetes.partitions_set == [2]
    assert kubernetes.namespaces == {"test"}
    # And it publishes its pod's revision next to `serving`
    assert decoded(out.get_relations("cluster")[0].local_unit_data)["pod-revision"] == OLD
    assert decoded(out.get_relations("cluster")[0].local_unit_data)["serving"] is True
    assert out.app_status == Status.APP_ACTIVE(brokers="3 brokers", serving=3, members=3, bookies="3 bookies")

    # When it reconciles again
    ctx.run(ctx.on.update_status(), out)

    # Then the partition is where it should be: nothing more is sent
    assert kubernetes.partitions_set == [2]


def test_a_refreshed_unit_that_serves_lets_the_next_unit_refresh(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given a refresh under way: pulsar-k8s-2 replaced, and its new pod says it serves on the new revision
    kubernetes.refreshing(replicas=3, partition=2)
    peers = {1: peer(), 2: peer(revision=NEW)}

    # When the leader hears of it
    out = ctx.run(ctx.on.update_status(), three_units(unit, peers))

    # Then it lowers the partition by one: pulsar-k8s-1 is replaced next
    assert kubernetes.partitions_set == [1]
    # And the application says the refresh is under way
    assert out.app_status == Status.APP_REFRESHING(updated=1, total=3)
    assert out.app_status.message == "refreshing: 1/3 units on the new revision"


def test_the_old_pods_serving_flag_does_not_count(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given pulsar-k8s-2 just replaced: its databag still holds what the old pod wrote (serving, old revision)
    kubernetes.refreshing(replicas=3, partition=2)

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), three_units(unit, {1: peer(), 2: peer(revision=OLD)}))

    # Then the partition stays: the new pod has not said anything yet
    assert kubernetes.patches == []
    assert out.app_status == Status.APP_REFRESHING(updated=0, total=3)

    # When the new pod's first hook says it runs the new revision but does not serve yet
    out = ctx.run(ctx.on.update_status(), three_units(unit, {1: peer(), 2: peer(serving=False, revision=NEW)}))

    # Then the partition still stays
    assert kubernetes.patches == []
    assert out.app_status == Status.APP_REFRESHING(updated=1, total=3)


def test_a_pending_restart_holds_the_partition(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given pulsar-k8s-2 refreshed and serving, while pulsar-k8s-1 waits for the restart lock
    kubernetes.refreshing(replicas=3, partition=2)
    peers = {1: peer(**{"restart-request": WAITING}), 2: peer(revision=NEW)}

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), three_units(unit, peers))

    # Then the partition stays until the restart is done
    assert kubernetes.patches == []
    assert out.app_status == Status.APP_REFRESHING(updated=1, total=3)


def test_no_restart_lock_is_handed_out_while_a_pod_is_replaced(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given pulsar-k8s-2 being replaced (not serving yet) while pulsar-k8s-1 waits for the restart lock
    kubernetes.refreshing(replicas=3, partition=2)
    peers = {1: peer(**{"restart-request": WAITING}), 2: peer(serving=False, revision=NEW)}

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), three_units(unit, peers))

    # Then nobody gets the lock: one unit down at a time
    assert "restart-holder" not in out.get_relations("cluster")[0].local_app_data
    assert kubernetes.patches == []

    # When pulsar-k8s-2 serves again
    peers = {1: peer(**{"restart-request": WAITING}), 2: peer(revision=NEW)}
    out = ctx.run(ctx.on.update_status(), three_units(unit, peers))

    # Then the restart goes first, and the refresh waits for it
    assert decoded(out.get_relations("cluster")[0].local_app_data)["restart-holder"] == "pulsar-k8s/1"
    assert kubernetes.patches == []


def test_the_partition_is_never_raised_during_a_roll(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given a roll at partition 1: pulsar-k8s-1 being replaced
    kubernetes.refreshing(replicas=3, partition=1)
    peers = {1: peer(serving=False, revision=""), 2: peer(revision=NEW)}

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), three_units(unit, peers))

    # Then it leaves the partition at 1 (2 would put pulsar-k8s-2 back on the old revision)
    assert kubernetes.patches == []
    assert out.app_status == Status.APP_REFRESHING(updated=1, total=3)


def test_a_refreshed_leader_publishes_its_new_revision_with_its_serving(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given the leader's pod replaced by the refresh (partition 0), its databag as its old pod left it
    kubernetes.refreshing(replicas=3, partition=0)
    peers = {1: peer(revision=NEW), 2: peer(revision=NEW)}
    state = three_units(unit, peers, unit_data={"host": "x", "serving": True, "pod-revision": OLD})

    # When its new pod starts the workload (upgrade-charm, as the first hook of the new pod)
    out = ctx.run(ctx.on.upgrade_charm(), state)

    # Then its services start fresh, with no restart lock asked for, and it says it serves on the new revision
    data = decoded(out.get_relations("cluster")[0].local_unit_data)
    assert "restart-request" not in data
    assert (data["pod-revision"], data["serving"]) == (NEW, True)
    assert set(out.get_container("pulsar").plan.services) >= {"zookeeper", "broker"}
    assert kubernetes.partitions_set == []  # partition 0: the StatefulSet finishes the roll


def test_pre_upgrade_check_arms_the_partition_and_names_the_first_unit(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given a serving cluster whose partition is not armed
    kubernetes.steady(replicas=3, partition=0)

    # When the operator runs the check on the leader
    ctx.run(ctx.on.action("pre-upgrade-check"), three_units(unit, unit_data={"serving": True}))

    # Then the partition is at the highest ordinal, and the results say what comes next
    assert kubernetes.partitions_set == [2]
    results = ctx.action_results or {}
    assert results["first-unit"] == "pulsar-k8s/2"
    assert results["partition"] == 2
    assert "run juju refresh" in results["message"]


def test_pre_upgrade_check_fails_on_a_non_leader(ctx: testing.Context, unit: Unit, cluster: Probes) -> None:
    with pytest.raises(testing.ActionFailed, match="run it on the leader unit"):
        ctx.run(ctx.on.action("pre-upgrade-check"), three_units(unit, leader=False))


def test_pre_upgrade_check_refuses_while_a_unit_does_not_serve(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given pulsar-k8s-1 saying it does not serve
    kubernetes.steady(replicas=3, partition=0)
    state = three_units(unit, {1: peer(serving=False), 2: peer()}, unit_data={"serving": True})

    # When the operator runs the check
    with pytest.raises(testing.ActionFailed, match=r"not every unit serves \(pulsar-k8s/1\)"):
        ctx.run(ctx.on.action("pre-upgrade-check"), state)

    # Then the partition is left alone
    assert kubernetes.patches == []


def test_pre_upgrade_check_refuses_while_a_restart_is_pending(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    kubernetes.steady(replicas=3, partition=2)
    state = three_units(unit, {1: peer(**{"restart-request": WAITING}), 2: peer()}, unit_data={"serving": True})
    with pytest.raises(testing.ActionFailed, match=r"a restart is under way or asked for \(pulsar-k8s/1\)"):
        ctx.run(ctx.on.action("pre-upgrade-check"), state)


def test_pre_upgrade_check_refuses_without_a_zookeeper_quorum(
    ctx: testing.Context, unit: Unit, cluster: Probes, kubernetes: FakeKubernetes
) -> None:
    # Given two of the three ZooKeeper servers not answering
    cluster.zookeeper_modes = {}
    with pytest.raises(testing.ActionFailed, match=r"lacks a serving quorum \(1/3 members serve\)"):
        ctx.run(ctx.on.action("pre-upgrade-check"), three_units(unit, unit_data={"serving": True}))
    assert kubernetes.patches == []
