"""Scaling as Juju does it on Kubernetes: units are StatefulSet ordinals, removal is a teardown.

Scale-down removes the highest ordinals (`juju remove-unit APP --num-units N`); a later
add-unit takes the lowest free ordinal back, with its name, FQDN and storage (Juju 3.6 and a
StatefulSet keep the removed pod's volume claim). A dying unit runs its teardown hooks while
the others see it depart, stays leader until it is gone, and its pod goes after its last hook.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox import Model, SandboxError

GREETER = Path(__file__).resolve().parent / "charms" / "greeter-k8s"
_SAW = re.compile(r"^\s+INFO saw (\S+) planned=(\d+) leader=(\w+) dying=(\w+) departing=(\S+) services=(\S+)$")


@dataclass(frozen=True)
class Saw:
    """One hook as the greeter charm logged it."""

    kind: str
    planned: int
    leader: bool
    dying: bool
    departing: str
    services: str


def seen(model: Model, unit: str) -> list[Saw]:
    """What the unit's charm saw, hook by hook, from its debug log."""
    found = []
    for line in model.debug_log(unit).splitlines():
        if match := _SAW.match(line):
            kind, planned, leader, dying, departing, services = match.groups()
            found.append(Saw(kind, int(planned), leader == "True", dying == "True", departing, services))
    return found


def test_scale_down_removes_the_highest_ordinal_and_scale_up_takes_it_back(model: Model) -> None:
    # Given three units, the highest holding a file on its storage
    model.deploy(GREETER, "web", num_units=3)
    model.wait_for_idle(["web"], timeout=120)
    model.run("web/2", "write-files", {"content": "written by the first web/2"})
    fqdn = model.fqdn("web/2")

    # When the application is scaled down by one unit
    removed = model.remove_unit("web", num_units=1)
    model.wait_for_idle(["web"], timeout=120)

    # Then the highest ordinal went
    assert removed == ["web/2"]
    assert model.apps["web"].units == ["web/0", "web/1"]

    # When it is scaled up again
    added = model.add_unit("web")
    model.wait_for_idle(["web"], timeout=120)

    # Then the new unit has the freed ordinal's name and FQDN, and the removed unit's storage
    # (attached again), while everything outside storage is new
    assert added == ["web/2"]
    assert model.fqdn("web/2") == fqdn
    assert model.run("web/2", "read-files").results == {"kept": "written by the first web/2", "lost": "missing"}
    assert [s.kind for s in seen(model, "web/2")].count("data_storage_attached") == 2


def test_removing_a_named_unit_is_refused_as_on_kubernetes(model: Model) -> None:
    # When a unit is named for removal, from the API and from the command line
    with pytest.raises(SandboxError, match="k8s models do not support removing named units"):
        model.remove_unit("web/1")
    model.save()
    cli = subprocess.run(
        [sys.executable, "-m", "sandbox", "-m", model.name, "remove-unit", "web/1"],
        capture_output=True,
        text=True,
        check=False,
    )

    # Then Juju's own refusal is printed, and nothing was removed
    assert cli.returncode == 1
    assert cli.stderr == (
        "ERROR k8s models do not support removing named units.\nInstead specify an application with --num-units.\n"
    )
    assert model.apps["web"].units == ["web/0", "web/1", "web/2"]


def test_a_removed_unit_runs_its_teardown_while_the_others_see_it_depart(model: Model) -> None:
    # Given web (3 units) greeting a fan application
    model.deploy(GREETER, "fan")
    model.integrate("web:greeting", "fan:upstream")
    model.wait_for_idle(["web", "fan"], timeout=120)
    before = {unit: len(seen(model, unit)) for unit in ("web/0", "web/1", "web/2", "fan/0")}
    model.event_records.clear()

    # When web is scaled down by one unit
    model.remove_unit("web", num_units=1)
    model.wait_for_idle(["web", "fan"], timeout=120)

    # Then the dying unit saw each remote unit of each relation depart (itself departing),
    # each relation break, its storage detach, then stop and remove: all while dying, with
    # planned_units() already leaving it out, and its pod still up to the end
    teardown = seen(model, "web/2")[before["web/2"] :]
    kinds = [s.kind for s in teardown]
    assert sorted(kinds[:-3]) == sorted(
        ["replicas_relation_departed"] * 2
        + ["replicas_relation_broken", "greeting_relation_departed", "greeting_relation_broken"]
    )
    assert kinds.index("greeting_relation_broken") > kinds.index("greeting_relation_departed")
    assert kinds[-3:] == ["data_storage_detaching", "stop", "remove"]
    assert all(s.dying and s.planned == 2 for s in teardown)
    assert {s.departing for s in teardown if s.kind.endswith("_departed")} == {"web/2"}
    assert teardown[-1].services == "web"  # its Pebble still answers in the remove hook
    # And the others saw it depart (planned_units() without it), then it was gone
    for survivor in ("web/0", "web/1"):
        assert [(s.kind, s.departing, s.planned) for s in seen(model, survivor)[before[survivor] :]][:1] == [
            ("replicas_relation_departed", "web/2", 2)
        ]
    fan = seen(model, "fan/0")[before["fan/0"] :]
    assert [(s.kind, s.departing) for s in fan][:1] == [("upstream_relation_departed", "web/2")]
    assert "web/2" not in model.units
    assert model.apps["web"].units == ["web/0", "web/1"]
    # And the survivors' departures ran while the dying unit was still tearing down
    records = model.event_records
    remove = next(r for r in records if r.unit == "web/2" and r.kind == "remove")
    departed = [r for r in records if r.unit != "web/2" and r.kind.endswith("relation_departed")]
    assert departed
    assert min(r.started for r in departed) < remove.started


def test_a_dying_leader_leads_until_it_is_gone(model: Model) -> None:
    # Given web/2 back and leading
    model.add_unit("web")
    model.wait_for_idle(["web"], timeout=120)
    model.elect_leader("web/2")
    model.wait_for_idle(["web"], timeout=60)
    before = len(seen(model, "web/2"))
    model.event_records.clear()

    # When web is scaled down by one unit (the leader goes)
    model.remove_unit("web", num_units=1)
    model.wait_for_idle(["web"], timeout=120)

    # Then it was leader in every teardown hook, and another unit was elected once it was gone
    teardown = seen(model, "web/2")[before:]
    assert teardown
    assert all(s.leader for s in teardown)
    new_leader = model.leader("web")
    assert new_leader in ("web/0", "web/1")
    records = model.event_records
    removed = next(r for r in records if r.unit == "web/2" and r.kind == "remove")
    elected = next(r for r in records if r.unit == new_leader and r.kind == "leader_elected")
    assert elected.started > removed.finished
    assert seen(model, new_leader)[-1].leader
