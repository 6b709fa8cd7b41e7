"""Sandbox models described only: applications and units with pods that are never started.

The sandbox's unit tests build their models with it: the state a deploy would record,
without namespaces, Pebble or agents; and provisioned artifacts made of empty directories.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.charmspec import CharmSpec
from sandbox.paths import Artifacts
from sandbox.pods import Pod
from sandbox.state import AppState, ModelState, UnitState

GREETER = Path(__file__).resolve().parents[2] / "sandbox" / "charms" / "greeter-k8s"


def provisioned_artifacts(cache: Path, with_pulsar_all: bool = True) -> Artifacts:
    """Artifacts under `cache` as provisioning names them: Pulsar 4.0.8 (pulsar-all too) and 4.0.6."""
    for path in ("pebble", "pulsar", "pulsar-4.0.6", "pulsar-all/connectors", "python/bin", "java"):
        (cache / path).mkdir(parents=True, exist_ok=True)
    (cache / "pulsar-all/connectors/pulsar-io-debezium-postgres-4.0.8.nar").write_bytes(b"PK")
    (cache / "python/bin/python3").write_text("")
    return Artifacts(
        pebble=cache / "pebble",
        pulsar_home=cache / "pulsar",
        pulsar_version="4.0.8",
        workload_python=cache / "python/bin/python3",
        java_home=cache / "java",
        pulsar_all_home=cache / "pulsar-all" if with_pulsar_all else None,
        debezium_postgres_nar=cache / "pulsar-all/connectors/pulsar-io-debezium-postgres-4.0.8.nar"
        if with_pulsar_all
        else None,
        earlier_pulsar_homes={"4.0.6": cache / "pulsar-4.0.6"},
    )


def described_state(home: Path, name: str, uuid: str, units: dict[str, int]) -> ModelState:
    """Model `name` under `home` with greeter applications of `units[app]` units each, app/0 leading."""
    state = ModelState(name=name, uuid=uuid, root=home / name)
    state.root.mkdir(parents=True)
    charm = CharmSpec.load(GREETER)
    for app, count in units.items():
        state.apps[app] = AppState(name=app, charm=charm, config={}, trusted=False, leader=f"{app}/0")
        for number in range(count):
            unit = f"{app}/{number}"
            pod = Pod(state.name, unit, state.next_pod_index, state.root / "pods" / unit.replace("/", "-"))
            state.next_pod_index += 1
            state.units[unit] = UnitState(name=unit, app=app, number=number, pod=pod, charm=charm)
            state.apps[app].units.append(unit)
    return state
