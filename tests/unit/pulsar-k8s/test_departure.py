"""pulsar-k8s: a removed unit keeps its ZooKeeper serving until the survivors no longer count it."""

from __future__ import annotations

import pytest
from helpers.pulsar_k8s_builders import Probes, Unit, fqdn
from ops import testing

from pulsar_k8s.charm import PulsarCharm
from pulsar_k8s.literals import Status
from pulsar_k8s.managers import departure
from pulsar_k8s.managers.ensemble import should_hand_over, still_counting
from pulsar_k8s.workload import PulsarWorkload

SURVIVORS = [fqdn(n) for n in range(3)]


@pytest.fixture
def dying_ctx(probes: Probes) -> testing.Context:
    """Unit 3 of four, the one a scale-down to three removes."""
    probes.own_fqdn = fqdn(3)
    return testing.Context(PulsarCharm, app_name="pulsar-k8s", unit_id=3)


class Clock:
    """The departure's clock: each sleep is recorded and moves it on, at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    clock = Clock()
    monkeypatch.setattr(departure, "time", clock)
    return clock.sleeps


def _dying(unit: Unit, leader: bool = False) -> testing.State:
    """Unit 3, past its relations' teardown: only its storage is left, three units are planned."""
    state = unit.state(leader=leader, planned_units=3, credentials=False)
    return testing.State(
        leader=leader,
        containers=state.containers,
        storages={testing.Storage("zookeeper")},
        planned_units=3,
        model=state.model,
    )


def _detaching(ctx: testing.Context, state: testing.State) -> testing.State:
    return ctx.run(ctx.on.storage_detaching(next(iter(state.storages))), state)


def test_a_removed_unit_waits_until_every_survivor_serves_without_it(
    dying_ctx: testing.Context, unit: Unit, probes: Probes, waits: list[float]
) -> None:
    # Given survivors that still run the ensemble of four, then, one by one, the ensemble of three
    old, new = {1, 2, 3, 4}, {1, 2, 3}
    probes.memberships = {SURVIVORS[0]: [old, new], SURVIVORS[1]: [old, old, new], SURVIVORS[2]: [old, old, old, new]}
    probes.zookeeper_modes = dict.fromkeys(SURVIVORS, "follower")
    state = _dying(unit)

    # When its ZooKeeper storage is about to detach
    out = _detaching(dying_ctx, state)

    # Then it waited, saying for which servers, until all three counted it no more
    assert len(waits) == 3
    assert dying_ctx.unit_status_history[-3:] == [
        Status.LEAVING_ENSEMBLE(pending="1, 2, 3"),
        Status.LEAVING_ENSEMBLE(pending="2, 3"),
        Status.LEAVING_ENSEMBLE(pending="3"),
    ]
    assert out.unit_status == Status.LEFT_ENSEMBLE()
    assert {host for kind, host in probes.asked if kind == "conf"} == set(SURVIVORS)


def test_a_survivor_that_does_not_serve_yet_is_waited_for(
    dying_ctx: testing.Context, unit: Unit, probes: Probes, waits: list[float]
) -> None:
    # Given survivors on the new ensemble, one of which restarts: it answers without serving
    probes.memberships = {host: [{1, 2, 3}] for host in SURVIVORS}
    probes.zookeeper_modes = {SURVIVORS[0]: "leader", SURVIVORS[1]: "", SURVIVORS[2]: "follower"}

    # When it never serves, and the dying unit's storage is about to detach
    out = _detaching(dying_ctx, _dying(unit))

    # Then it waited for that server until its bound passed, then left, saying so
    assert sum(waits) > departure.LEAVE_TIMEOUT
    assert dying_ctx.unit_status_history[-1] == Status.LEAVING_ENSEMBLE(pending="2")
    assert out.unit_status == Status.LEFT_UNWAITED(reason="servers 2 still counted it")


def test_a_removed_unit_whose_server_leads_zookeeper_restarts_it_so_that_a_survivor_leads(
    dying_ctx: testing.Context, unit: Unit, probes: Probes, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given its server leads ZooKeeper, and the first survivor restarted into the ensemble without
    # it: that one ignores it, and cannot follow anyone (it answers without serving)
    old, new = {1, 2, 3, 4}, {1, 2, 3}
    probes.zookeeper_mode = "leader"
    probes.memberships = {SURVIVORS[0]: [new], SURVIVORS[1]: [old], SURVIVORS[2]: [old]}
    probes.zookeeper_modes = {SURVIVORS[0]: "", SURVIVORS[1]: "follower", SURVIVORS[2]: "follower"}
    restarted: list[tuple[str, ...]] = []

    def restart(self: PulsarWorkload, *services: str) -> None:
        # Another server leads after the restart; the survivors then restart into the new ensemble
        restarted.append(services)
        probes.zookeeper_mode = "follower"
        probes.zookeeper_modes[SURVIVORS[0]] = "follower"
        probes.memberships = {host: [new] for host in SURVIVORS}

    monkeypatch.setattr(PulsarWorkload, "restart", restart)

    # When its storage is about to detach
    out = _detaching(dying_ctx, _dying(unit))

    # Then it restarted its ZooKeeper once, saying so, and left once the survivors served without it
    assert restarted == [("zookeeper",)]
    assert Status.HANDING_OVER() in dying_ctx.unit_status_history
    assert out.unit_status == Status.LEFT_ENSEMBLE()


def test_a_removed_leader_does_not_wait(
    dying_ctx: testing.Context, unit: Unit, probes: Probes, waits: list[float]
) -> None:
    # Given the dying unit leads: only a leader hands out the survivors' restart lock
    probes.memberships = {host: [{1, 2, 3, 4}] for host in SURVIVORS}

    # When its storage is about to detach
    out = _detaching(dying_ctx, _dying(unit, leader=True))

    # Then it leaves at once, saying why
    assert waits == []
    assert out.unit_status == Status.LEFT_UNWAITED(reason="it was the leader")


@pytest.mark.parametrize(
    ("survivors", "pending"),
    [
        ({1: ({1, 2, 3}, "leader"), 2: ({1, 2, 3}, "follower")}, []),
        ({1: ({1, 2, 3, 4}, "leader"), 2: ({1, 2, 3}, "follower")}, [1]),
        ({1: (None, None), 2: ({1, 2, 3}, "")}, [1, 2]),
        ({1: (set(), "standalone")}, []),
    ],
)
def test_still_counting_names_each_survivor_not_done(
    survivors: dict[int, tuple[set[int] | None, str | None]], pending: list[int]
) -> None:
    assert still_counting(4, survivors) == pending


@pytest.mark.parametrize(
    ("own_mode", "survivors", "hand_over"),
    [
        ("leader", {1: ({1, 2, 3}, ""), 2: ({1, 2, 3, 4}, "follower")}, True),
        ("follower", {1: ({1, 2, 3}, ""), 2: ({1, 2, 3, 4}, "follower")}, False),
        ("leader", {1: ({1, 2, 3, 4}, "follower"), 2: ({1, 2, 3, 4}, "follower")}, False),
        ("leader", {1: ({1, 2, 3}, ""), 2: (None, None)}, False),
    ],
)
def test_should_hand_over_only_while_leading_survivors_that_left_it_out_and_all_answer(
    own_mode: str, survivors: dict[int, tuple[set[int] | None, str | None]], hand_over: bool
) -> None:
    assert should_hand_over(4, own_mode, survivors) is hand_over
