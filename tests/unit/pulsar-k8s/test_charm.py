"""pulsar-k8s: what this revision does on a healthy container."""

from __future__ import annotations

from pathlib import Path

from ops import testing

from pulsar_k8s.charm import PulsarCharm
from pulsar_k8s.literals import Status


def test_says_bring_up_is_not_managed_yet(pulsar_image: Path) -> None:
    # Given a leader unit with a reachable Pulsar container
    ctx = testing.Context(PulsarCharm)
    workload = testing.Container(
        "pulsar", can_connect=True, mounts={"image": testing.Mount(location="/pulsar", source=pulsar_image)}
    )
    state = testing.State(leader=True, containers={workload})

    # When config changes
    out = ctx.run(ctx.on.config_changed(), state)

    # Then it says plainly that bring-up is not managed by this revision, and starts nothing
    assert out.unit_status == Status.NOT_MANAGED_YET.value
    assert out.get_container("pulsar").plan.services == {}
