"""The client charms install and start cleanly in pods running the real Pulsar tree."""

from __future__ import annotations

from pathlib import Path

from sandbox import Model

CHARMS = Path(__file__).resolve().parents[2] / "charms"


def test_loadgen_and_cdc_install_and_say_what_they_need(model: Model) -> None:
    # When the two client charms are deployed with nothing to integrate with
    model.deploy(CHARMS / "loadgen-k8s")
    model.deploy(CHARMS / "cdc-k8s")
    model.wait_for_idle(status="blocked", timeout=120)

    # Then no hook failed, each read Pulsar's version from the image in its pod, and says what it needs
    for unit in model.units.values():
        assert unit.error is None
        assert unit.workload_version == "4.0.8", unit.name
    messages = {u.app: u.workload_status.message for u in model.units.values()}
    assert messages == {
        "loadgen-k8s": "integrate with pulsar-k8s: juju integrate loadgen-k8s pulsar-k8s",
        "cdc-k8s": "integrate with pulsar-k8s: juju integrate cdc-k8s pulsar-k8s",
    }
