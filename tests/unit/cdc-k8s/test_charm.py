"""cdc-k8s: both relations are needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from ops import testing

from cdc_k8s.charm import CdcCharm
from cdc_k8s.literals import Status


@pytest.mark.parametrize("present", [(), ("pulsar",), ("database",)])
def test_blocks_until_both_relations_exist(present: tuple[str, ...], pulsar_image: Path) -> None:
    # Given a cdc unit with only some of its relations
    ctx = testing.Context(CdcCharm)
    workload = testing.Container(
        "cdc", can_connect=True, mounts={"image": testing.Mount(location="/pulsar", source=pulsar_image)}
    )
    relations = {testing.Relation(name) for name in present}

    # When config changes
    out = ctx.run(ctx.on.config_changed(), testing.State(containers={workload}, relations=relations))

    # Then it is blocked and says what to integrate with
    assert out.unit_status == Status.MISSING_RELATIONS()
