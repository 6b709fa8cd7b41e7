"""The project's four charms install and start cleanly in pods running the real Pulsar tree."""

from __future__ import annotations

from pathlib import Path

from sandbox import Model

CHARMS = Path(__file__).resolve().parents[2] / "charms"


def test_the_four_charms_deploy_and_integrate(model: Model) -> None:
    # When each charm is deployed and the client charms are integrated with pulsar-k8s
    for name in ("pulsar-k8s", "bookie-k8s", "loadgen-k8s", "cdc-k8s"):
        model.deploy(CHARMS / name)
    model.integrate("bookie-k8s", "pulsar-k8s")
    model.integrate("loadgen-k8s", "pulsar-k8s")
    model.wait_for_idle(status=None, timeout=120)

    # Then no hook failed, every unit read Pulsar's version from the image in its pod
    for unit in model.units.values():
        assert unit.error is None
        assert unit.workload_version == "4.0.8", unit.name
    # And each says where it stands
    messages = {u.app: u.workload_status.message for u in model.units.values()}
    assert messages == {
        "pulsar-k8s": "ZooKeeper and broker bring-up arrive in the next revision",
        "bookie-k8s": "bookie bring-up arrives in the next revision",
        "loadgen-k8s": "load generation arrives in a later revision",
        "cdc-k8s": "integrate with pulsar-k8s and postgresql-k8s",
    }
