"""ZooKeeper ensemble membership: who is in it, and how it may change.

Membership is decided by the leader and published in peer application data, so every
unit renders the same server list. It changes one server at a time:

- The first ensemble waits for every planned unit (Juju's goal state) and starts them
  together: a fresh cluster has no data to lose, and members started in order deadlock.
- Afterwards a server is added only while the current ensemble is fully healthy, and one
  at a time. With N members of which at most one is new and empty, any majority of the
  new ensemble contains a member holding the data, so empty servers can never elect a
  leader among themselves (the failure dynamic reconfiguration also protects against).
- Departed servers (their units removed) are dropped as soon as the leader's view of the
  peers is complete, without waiting for health: they are gone, so waiting cannot bring a
  quorum back, and dropping adds no empty server. Removing one unit at a time keeps the
  survivors a quorum throughout; removing several at once costs availability until the
  survivors restart with the smaller ensemble (and data, if the removed ones held the only
  copies of recent writes), as with any ZooKeeper.

Why a one-at-a-time rolling change rather than ZooKeeper's dynamic reconfiguration: it
needs no superuser session to ZooKeeper from the charm and no extra client library, the
whole configuration stays a rendered file, and each step is the same rolling restart the
charm needs for any config change anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Member:
    id: int
    host: str


def server_id(unit_name: str) -> int:
    """ZooKeeper's myid: the unit number + 1 (stable for the life of the unit)."""
    return int(unit_name.rsplit("/", 1)[1]) + 1


def encode(members: list[Member]) -> str:
    return json.dumps([{"id": m.id, "host": m.host} for m in sorted(members)])


def decode(text: str | None) -> list[Member]:
    if not text:
        return []
    return sorted(Member(int(m["id"]), str(m["host"])) for m in json.loads(text))


def next_ensemble(current: list[Member], candidates: list[Member], planned_units: int, healthy: bool) -> list[Member]:
    """The ensemble the leader should publish next, given the units that can serve.

    `current` is the published ensemble (empty before the first one), `candidates` every
    unit that has announced itself (the leader included), `healthy` whether every current
    member answers with a quorum, `planned_units` Juju's goal for the application (removed
    units are not counted).
    """
    candidates = sorted(candidates)
    if not current:
        return candidates if len(candidates) >= planned_units else []
    current_ids = {m.id for m in current}
    candidate_ids = {m.id for m in candidates}
    if any(m.id not in candidate_ids for m in current):
        # A member missing from the view is departed only once the view holds every planned
        # unit: a newly elected leader may not have seen each peer join yet.
        if len(candidates) < planned_units:
            return current
        return [m for m in current if m.id in candidate_ids]
    if not healthy:
        return current
    joining = [m for m in candidates if m.id not in current_ids]
    if joining:
        return sorted([*current, joining[0]])
    return current
