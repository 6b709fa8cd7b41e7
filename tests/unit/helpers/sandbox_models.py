"""Sandbox models described only: applications and units with pods that are never started.

The sandbox's unit tests build their models with it: the state a deploy would record,
without namespaces, Pebble or agents.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.charmspec import CharmSpec
from sandbox.pods import Pod
from sandbox.state import AppState, ModelState, UnitState

GREETER = Path(__file__).resolve().parents[2] / "sandbox" / "charms" / "greeter-k8s"


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
