"""Leadership moves, as it can at any time on Juju, at the moment a test chooses.

`elect_leader` hands leadership to another unit (on Juju, the leader's lease lapses);
`restart_pod(..., move_leader=True)` moves it while the leader's pod is down. `drive_until`
runs events until a condition holds and stops there, and `settle=False` queues a verb's
events without running them, so a test can move leadership in the middle of a sequence.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from sandbox import Model

GREETER = Path(__file__).resolve().parent / "charms" / "greeter-k8s"
_SAW = re.compile(r"^\s+INFO saw (\S+) planned=\d+ leader=(\w+) ")


def seen(model: Model, unit: str) -> list[tuple[str, bool]]:
    """(event, is_leader) for each hook the unit's charm logged."""
    return [
        (match.group(1), match.group(2) == "True")
        for line in model.debug_log(unit).splitlines()
        if (match := _SAW.match(line))
    ]


def hooks_done(model: Model, unit: str, kind: str) -> int:
    return sum(1 for record in model.event_records if record.unit == unit and record.kind == kind)


def test_elect_leader_hands_leadership_to_another_unit(model: Model) -> None:
    # Given three units, lead/0 leading
    model.deploy(GREETER, "lead", num_units=3)
    model.wait_for_idle(["lead"], timeout=120)
    assert model.leader("lead") == "lead/0"

    # When leadership is handed to lead/1, and a config change follows
    model.elect_leader("lead/1")
    model.config("lead", {"message": "new leader"})
    model.wait_for_idle(["lead"], timeout=60)

    # Then lead/1 was elected, and in its next hook lead/0 no longer leads
    assert model.leader("lead") == "lead/1"
    assert seen(model, "lead/1")[-2:] == [("leader_elected", True), ("config_changed", True)]
    assert seen(model, "lead/0")[-1] == ("config_changed", False)
    assert "lead/1*" in model.status()


def test_leadership_moves_at_the_moment_a_test_chooses(model: Model) -> None:
    # Given three config changes queued on every unit, not run yet
    for message in ("one", "two", "three"):
        model.config("lead", {"message": message}, settle=False)
    assert [len(model.units[u].queue) for u in ("lead/0", "lead/1", "lead/2")] == [3, 3, 3]
    model.event_records.clear()

    # When events run until the leader lead/1 has handled the first change, and stop there
    model.drive_until(lambda m: hooks_done(m, "lead/1", "config_changed") == 1, timeout=60)

    # Then lead/1's other two changes are still queued
    assert len(model.units["lead/1"].queue) == 2

    # When leadership moves to lead/2 right then, and the model settles
    model.elect_leader("lead/2", settle=False)
    model.wait_for_idle(["lead"], timeout=60)

    # Then lead/1 handled its first change as leader and the other two as follower, and
    # lead/2 was elected and led from then on
    assert seen(model, "lead/1")[-3:] == [
        ("config_changed", True),
        ("config_changed", False),
        ("config_changed", False),
    ]
    lead2 = seen(model, "lead/2")
    elected = lead2.index(("leader_elected", True))
    assert all(leader for _, leader in lead2[elected:])
    assert model.leader("lead") == "lead/2"


def test_a_leaders_pod_restart_can_move_leadership(model: Model) -> None:
    # When the leader's pod restarts and its leadership lapses meanwhile
    model.restart_pod("lead/2", move_leader=True)
    model.wait_for_idle(["lead"], timeout=120)

    # Then another unit was elected, and the new pod's agent no longer leads
    new_leader = model.leader("lead")
    assert new_leader in ("lead/0", "lead/1")
    assert ("leader_elected", True) in seen(model, new_leader)[-3:]
    churn = seen(model, "lead/2")[-5:]
    assert [kind for kind, _ in churn] == ["stop", "upgrade_charm", "config_changed", "start", "web_pebble_ready"]
    assert churn[0][1] is True  # its stop hook still ran as leader
    assert not any(leader for _, leader in churn[1:])

    # When a pod restarts without moving leadership
    model.restart_pod(new_leader)
    model.wait_for_idle(["lead"], timeout=120)

    # Then its unit still leads after the restart
    assert model.leader("lead") == new_leader
    assert seen(model, new_leader)[-1][1] is True


def test_a_leader_that_loses_leadership_during_a_hook_cannot_commit_application_data(model: Model) -> None:
    # Given lead greeting a fan, and its leader running an action that writes application data slowly
    model.deploy(GREETER, "fan")
    relation = model.integrate("lead:greeting", "fan:upstream")
    model.wait_for_idle(["lead", "fan"], timeout=120)
    leader = model.leader("lead")
    other = next(u for u in ("lead/0", "lead/1", "lead/2") if u != leader)
    mover = threading.Timer(1.0, model.elect_leader, args=(other,), kwargs={"settle": False, "mid_hook": True})

    # When leadership moves while the action runs (the old leader's agent lost the controller)
    mover.start()
    result = model.run(leader or "", "write-app-data", {"value": "too late", "delay": 3})
    mover.join()

    # Then the write is refused at commit, as Juju checks leadership then, and nothing is written
    assert result.status == "failed"
    assert result.message == "cannot write application data: the unit is no longer the leader"
    assert "note" not in model.relation_data(relation.id).app_data.get("lead", {})
    assert model.leader("lead") == other
    assert model.units[leader or ""].error is None
