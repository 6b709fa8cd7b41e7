"""Behaviour every charm of the project shares: Pebble first, then the Pulsar image."""

from __future__ import annotations

from pathlib import Path

import pytest
from ops import testing

from bookie_k8s.charm import BookieCharm
from cdc_k8s.charm import CdcCharm
from loadgen_k8s.charm import LoadgenCharm
from pulsar_k8s.charm import PulsarCharm

CHARMS = [
    pytest.param(PulsarCharm, "pulsar", id="pulsar-k8s"),
    pytest.param(BookieCharm, "bookie", id="bookie-k8s"),
    pytest.param(LoadgenCharm, "loadgen", id="loadgen-k8s"),
    pytest.param(CdcCharm, "cdc", id="cdc-k8s"),
]


@pytest.mark.parametrize(("charm_type", "container"), CHARMS)
def test_waits_for_pebble(charm_type: type, container: str) -> None:
    # Given a unit whose workload container is not reachable yet
    ctx = testing.Context(charm_type)
    state = testing.State(containers={testing.Container(container, can_connect=False)})

    # When Juju installs the charm
    out = ctx.run(ctx.on.install(), state)

    # Then it waits for Pebble and names the container
    assert out.unit_status == testing.WaitingStatus(f"waiting for Pebble in the {container} container")


@pytest.mark.parametrize(("charm_type", "container"), CHARMS)
def test_blocks_on_an_image_without_pulsar(charm_type: type, container: str, tmp_path: Path) -> None:
    # Given a reachable container whose image has no /pulsar tree
    ctx = testing.Context(charm_type)
    empty = testing.Mount(location="/pulsar", source=tmp_path)
    workload = testing.Container(container, can_connect=True, mounts={"image": empty})

    # When Pebble becomes ready
    out = ctx.run(ctx.on.pebble_ready(workload), testing.State(containers={workload}))

    # Then the unit is blocked with the reason, and no version is claimed
    assert out.unit_status == testing.BlockedStatus(f"the {container} container has no Pulsar distribution at /pulsar")
    assert out.workload_version == ""


@pytest.mark.parametrize(("charm_type", "container"), CHARMS)
def test_reports_the_image_pulsar_version(charm_type: type, container: str, pulsar_image: Path) -> None:
    # Given a container running the Pulsar 4.0.8 image
    ctx = testing.Context(charm_type)
    image = testing.Mount(location="/pulsar", source=pulsar_image)
    workload = testing.Container(container, can_connect=True, mounts={"image": image})

    # When Pebble becomes ready
    out = ctx.run(ctx.on.pebble_ready(workload), testing.State(containers={workload}))

    # Then the workload version is read from the image's jars
    assert out.workload_version == "4.0.8"
