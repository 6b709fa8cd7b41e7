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
  survivors a quorum throughout: the removed unit keeps its server serving until every
  survivor runs the smaller ensemble (`departure.py`). Removing several at once costs
  availability until the survivors restart with the smaller ensemble (and data, if the
  removed ones held the only copies of recent writes), as with any ZooKeeper.
- A unit still in the peer relation is a candidate whatever its databag says, so a member
  that is still there is never dropped; and no ensemble is published in which no member
  answers (ZooKeeper `srvr` from the leader, serving or not): a view in which nobody is
  alive is a view to distrust, not one to act on.
- Only a leader that is not being removed decides (the charm's job): a dying leader sees
  its peers depart one by one, a view that shrinks to nothing.

Why a one-at-a-time rolling change rather than ZooKeeper's dynamic reconfiguration: it
needs no superuser session to ZooKeeper from the charm and no extra client library, the
whole configuration stays a rendered file, and each step is the same rolling restart the
charm needs for any config change anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from literals import SERVING_MODES


@dataclass(frozen=True, order=True)
class Member:
    """A ZooKeeper server: its myid and the FQDN of its unit."""

    id: int
    host: str


def server_id(unit_name: str) -> int:
    """ZooKeeper's myid: the unit number + 1 (stable for the life of the unit)."""
    return int(unit_name.rsplit("/", 1)[1]) + 1


def next_ensemble(
    current: list[Member], candidates: list[Member], planned_units: int, healthy: bool, live: set[int]
) -> list[Member]:
    """The ensemble the leader should publish next, given the units that can serve.

    `current` is the published ensemble (empty before the first one), `candidates` every
    unit in the peer relation (the leader included), `healthy` whether every current member
    serves (answers `srvr` with a mode), `live` the ids of the members whose ZooKeeper
    answers at all, `planned_units` Juju's goal for the application (removed units are not
    counted).
    """
    current, candidates = sorted(current), sorted(candidates)
    if not current:
        return candidates if len(candidates) >= planned_units else []
    chosen = _following(current, candidates, planned_units, healthy)
    if chosen != current and not any(m.id in live for m in chosen):
        return current
    return chosen


def _following(current: list[Member], candidates: list[Member], planned_units: int, healthy: bool) -> list[Member]:
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


def still_counting(server: int, survivors: dict[int, tuple[set[int] | None, str | None]]) -> list[int]:
    """The surviving servers a leaving `server` must still wait for, by id.

    `survivors` holds what each said: the ids of the ensemble it runs (ZooKeeper `conf`) and
    its mode (`srvr`), each None when it did not answer. A survivor is done once it runs an
    ensemble without `server` and serves in it.
    """
    return sorted(
        sid
        for sid, (membership, mode) in survivors.items()
        if membership is None or server in membership or mode not in SERVING_MODES
    )


def should_hand_over(
    server: int, own_mode: str | None, survivors: dict[int, tuple[set[int] | None, str | None]]
) -> bool:
    """Whether a leaving `server` must give up ZooKeeper's leadership now (restart, so a survivor leads).

    A server restarted into the ensemble without it ignores its votes, so it can never follow
    it: while it leads, such a survivor stays out of the quorum and the roll cannot go on (no
    member restarts while another does not serve). Only once every survivor answers: with one
    of them restarting as well, too few members of the old ensemble would be left to elect.
    """
    if own_mode != "leader" or any(membership is None for membership, _ in survivors.values()):
        return False
    return any(membership is not None and server not in membership for membership, _ in survivors.values())
