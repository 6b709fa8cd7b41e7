"""bookie-k8s: the refresh guard (the StatefulSet's partition) and the pre-upgrade-check action."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.bookie_k8s_builders import CREDENTIALS, PROVIDER_DATA
from helpers.kubernetes import NEW, OLD, FakeKubernetes
from helpers.pulsar_k8s_builders import CHOWN
from ops import testing

from bookie_k8s.charm import BookieCharm
from bookie_k8s.literals import Status
from bookie_k8s.workload import BookieWorkload


@pytest.fixture
def ctx() -> testing.Context:
    return testing.Context(BookieCharm, app_name="bookie-k8s", unit_id=0)


@pytest.fixture
def bookie(pulsar_image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> testing.Container:
    """A bookie container whose bookie is ready."""
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: True)
    conf = tmp_path / "conf"
    conf.mkdir()
    mounts = {
        "image": testing.Mount(location="/pulsar/lib", source=pulsar_image / "lib"),
        "conf": testing.Mount(location="/pulsar/conf", source=conf),
    }
    for storage in ("journal", "ledgers"):
        (tmp_path / storage).mkdir()
        mounts[storage] = testing.Mount(location=f"/var/lib/bookkeeper/{storage}", source=tmp_path / storage)
    return testing.Container("bookie", can_connect=True, mounts=mounts, execs={CHOWN})


def peer(ready: bool = True, revision: str = OLD, **more: Any) -> dict[str, str]:
    values = {"ready": ready, **({"pod-revision": revision} if revision else {}), **more}
    return {key: json.dumps(value) for key, value in values.items()}


def three_bookies(
    bookie: testing.Container, peers: dict[int, dict[str, str]] | None = None, leader: bool = True
) -> testing.State:
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)
    bookies = testing.PeerRelation("bookies", peers_data=peers if peers is not None else {1: peer(), 2: peer()})
    return testing.State(
        leader=leader,
        containers={bookie},
        relations={relation, bookies},
        secrets={CREDENTIALS},
        planned_units=3,
        model=testing.Model("test"),
    )


def test_an_untrusted_application_works_unguarded_and_says_how_to_guard_it(
    ctx: testing.Context, bookie: testing.Container, kubernetes: FakeKubernetes
) -> None:
    # Given three ready bookies, deployed without `juju trust`
    kubernetes.trusted = False

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), three_bookies(bookie))

    # Then the application is active and says the refresh guard is off, and how to turn it on
    assert out.app_status == Status.APP_REFRESH_UNGUARDED(summary="3 bookies ready", app="bookie-k8s")
    assert "juju trust bookie-k8s --scope=cluster" in out.app_status.message
    assert "pod-revision" not in out.get_relations("bookies")[0].local_unit_data

    # And the check before a refresh fails, saying why
    with pytest.raises(testing.ActionFailed, match=r"not trusted: juju trust bookie-k8s --scope=cluster"):
        ctx.run(ctx.on.action("pre-upgrade-check"), out)


def test_in_steady_state_the_partition_is_armed_at_the_highest_ordinal(
    ctx: testing.Context, bookie: testing.Container, kubernetes: FakeKubernetes
) -> None:
    kubernetes.steady(replicas=3)

    out = ctx.run(ctx.on.update_status(), three_bookies(bookie))

    assert kubernetes.partitions_set == [2]
    data = out.get_relations("bookies")[0].local_unit_data
    assert (json.loads(data["ready"]), json.loads(data["pod-revision"])) == (True, OLD)
    assert out.app_status == Status.APP_ACTIVE(ready=3, total=3)


def test_a_refreshed_bookie_that_is_ready_lets_the_next_one_refresh(
    ctx: testing.Context, bookie: testing.Container, kubernetes: FakeKubernetes
) -> None:
    # Given bookie-k8s-2 replaced, its new pod saying it is ready on the new revision
    kubernetes.refreshing(replicas=3, partition=2)

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), three_bookies(bookie, {1: peer(), 2: peer(revision=NEW)}))

    # Then bookie-k8s-1 may be replaced next, and the application says a refresh is under way
    assert kubernetes.partitions_set == [1]
    assert out.app_status == Status.APP_REFRESHING(updated=1, total=3)


def test_the_old_pods_readiness_does_not_count(
    ctx: testing.Context, bookie: testing.Container, kubernetes: FakeKubernetes
) -> None:
    kubernetes.refreshing(replicas=3, partition=2)
    out = ctx.run(ctx.on.update_status(), three_bookies(bookie, {1: peer(), 2: peer(revision=OLD)}))
    assert kubernetes.patches == []
    assert out.app_status == Status.APP_REFRESHING(updated=0, total=3)


def test_a_pending_restart_holds_the_partition(
    ctx: testing.Context, bookie: testing.Container, kubernetes: FakeKubernetes
) -> None:
    kubernetes.refreshing(replicas=3, partition=2)
    waiting = {"restart-request": {"phase": "waiting", "services": ["bookie"]}}
    ctx.run(ctx.on.update_status(), three_bookies(bookie, {1: peer(**waiting), 2: peer(revision=NEW)}))
    assert kubernetes.patches == []


def test_pre_upgrade_check_arms_the_partition(
    ctx: testing.Context, bookie: testing.Container, kubernetes: FakeKubernetes
) -> None:
    kubernetes.steady(replicas=3, partition=0)
    state = ctx.run(ctx.on.update_status(), three_bookies(bookie))
    kubernetes.steady(replicas=3, partition=0)

    ctx.run(ctx.on.action("pre-upgrade-check"), state)

    assert kubernetes.partitions_set[-1] == 2
    assert (ctx.action_results or {})["first-unit"] == "bookie-k8s/2"


def test_pre_upgrade_check_fails_on_a_non_leader(ctx: testing.Context, bookie: testing.Container) -> None:
    with pytest.raises(testing.ActionFailed, match="run it on the leader unit"):
        ctx.run(ctx.on.action("pre-upgrade-check"), three_bookies(bookie, leader=False))


def test_pre_upgrade_check_refuses_while_a_bookie_is_not_ready(
    ctx: testing.Context, bookie: testing.Container, kubernetes: FakeKubernetes
) -> None:
    kubernetes.steady(replicas=3, partition=2)
    state = ctx.run(ctx.on.update_status(), three_bookies(bookie, {1: peer(), 2: peer(ready=False)}))
    with pytest.raises(testing.ActionFailed, match=r"not every unit serves \(bookie-k8s/2\)"):
        ctx.run(ctx.on.action("pre-upgrade-check"), state)
