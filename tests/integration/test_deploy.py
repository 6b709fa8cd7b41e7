"""Deploy the charms into a real Juju model on Kubernetes (pytest-operator)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pytest_operator.plugin import OpsTest

CHARMS = Path(__file__).resolve().parents[2] / "charms"


def _image(charm: str) -> dict[str, str]:
    resources = yaml.safe_load((CHARMS / charm / "charmcraft.yaml").read_text())["resources"]
    return {name: spec["upstream-source"] for name, spec in resources.items()}


@pytest.mark.abort_on_fail
async def test_pulsar_and_bookies_deploy(ops_test: OpsTest) -> None:
    assert ops_test.model is not None
    for charm, units in (("pulsar-k8s", 1), ("bookie-k8s", 3)):
        built = await ops_test.build_charm(CHARMS / charm)
        await ops_test.model.deploy(built, application_name=charm, num_units=units, resources=_image(charm))
    await ops_test.model.integrate("pulsar-k8s", "bookie-k8s")
    await ops_test.model.wait_for_idle(apps=["pulsar-k8s", "bookie-k8s"], raise_on_error=True, timeout=1200)
