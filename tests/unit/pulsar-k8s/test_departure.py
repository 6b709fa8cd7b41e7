"""pulsar-k8s: a removed unit keeps its ZooKeeper serving until the survivors no longer count it."""

from __future__ import annotations

import pytest
from helpers.pulsar_k8s_builders import Probes, Unit, fqdn
from ops import testing

from pulsar_k8s.charm import PulsarCharm
from pulsar_k8s.literals import Status
from pulsar_k8s.managers import departure
from pulsar_k8s.managers.ensemble import still_counting

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
