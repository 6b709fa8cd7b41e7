"""Rolling restarts: one unit of an application restarts at a time.

Each unit compares what its running services were started with (a fingerprint of their
config files and Pebble definition) against what they should run now. A running service
whose fingerprint changed is stale; the unit asks for the application-wide restart lock in
its peer unit data, and the leader hands the lock to one unit at a time. The holder keeps
it until its restarted services serve again, so a restart never begins before the previous
one has completed: a ZooKeeper quorum of three survives one member down, not two, and
ledgers written with a quorum of two survive one bookie down, not two.

No timeout moves the lock on. A holder whose services do not serve again stops the roll
(its status says what it waits for); a new config reaches the holder first, so fixing the
config is how the roll resumes.

A unit's request is `waiting:<services>` until it holds the lock, then
`restarted:<services>` until they serve. Owned by pulsar-k8s; the other charms carry
identical copies.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

import ops

LIBID = "0f31847f27ad46a88d369845417f569d"
LIBAPI = 0
LIBPATCH = 1

logger = logging.getLogger(__name__)

WAITING = "waiting:"
RESTARTED = "restarted:"
_REQUEST = "restart-request"
_APPLIED = "applied"
_HOLDER = "restart-holder"


def fingerprint(*parts: object) -> str:
    """A short digest of everything a service is started with."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stale_services(desired: dict[str, str], applied: dict[str, str], running: set[str]) -> list[str]:
    """Running services started with something other than what they should run now."""
    return sorted(name for name, digest in desired.items() if name in running and applied.get(name) != digest)


def _unit_number(unit: str) -> int:
    return int(unit.rsplit("/", 1)[1])


def next_holder(requests: dict[str, str], holder: str | None) -> str | None:
    """Leader: the unit that may restart now.

    `requests` maps unit name -> its request ("" for none). The holder keeps the lock while
    its request stands (waiting, or restarted but not serving yet); then the lowest unit
    waiting gets it. A unit that restarted without the lock (it cannot, but a leader change
    could make it look so) also keeps the others waiting until it serves.
    """
    if holder and requests.get(holder):
        return holder
    if any(request.startswith(RESTARTED) for request in requests.values()):
        return None
    waiting = sorted((unit for unit, request in requests.items() if request.startswith(WAITING)), key=_unit_number)
    return waiting[0] if waiting else None


class RollingRestart:
    """The restart lock of one application, kept in its peer relation."""

    def __init__(self, charm: ops.CharmBase, peer_relation: str) -> None:
        self._charm = charm
        self._peer_relation = peer_relation

    @property
    def _relation(self) -> ops.Relation:
        relation = self._charm.model.get_relation(self._peer_relation)
        if relation is None:
            raise RuntimeError(f"the {self._peer_relation} peer relation does not exist yet")
        return relation

    @property
    def holder(self) -> str | None:
        return self._relation.data[self._charm.app].get(_HOLDER) or None

    def stale(self, desired: dict[str, str], running: set[str]) -> list[str]:
        """The running services of this unit that need a restart; asks for the lock when any do."""
        data = self._relation.data[self._charm.unit]
        applied = json.loads(data.get(_APPLIED) or "{}")
        stale = stale_services(desired, applied, running)
        request = data.get(_REQUEST, "")
        if stale and not request.startswith(RESTARTED):
            data[_REQUEST] = WAITING + ",".join(stale)
        elif not stale and request.startswith(WAITING):
            data.pop(_REQUEST)  # the change was undone before its turn came
        self.lead()
        return stale

    def may_restart(self) -> bool:
        return self.holder == self._charm.unit.name

    def applied(self, desired: dict[str, str], restarted: list[str], serving: Callable[[list[str]], bool]) -> None:
        """Record what the services now run with; keep the lock until `restarted` serve."""
        data = self._relation.data[self._charm.unit]
        data[_APPLIED] = json.dumps(desired, sort_keys=True)
        if restarted:
            data[_REQUEST] = RESTARTED + ",".join(restarted)
        self.check_restarted(serving)

    def check_restarted(self, serving: Callable[[list[str]], bool]) -> None:
        """Release this unit's request once the services it restarted serve again."""
        data = self._relation.data[self._charm.unit]
        request = data.get(_REQUEST, "")
        if request.startswith(RESTARTED) and serving(request.removeprefix(RESTARTED).split(",")):
            data.pop(_REQUEST)
            self.lead()

    def lead(self) -> None:
        """Leader: hand the lock to the next unit; everyone else: nothing."""
        if not self._charm.unit.is_leader():
            return
        relation = self._relation
        units = [self._charm.unit, *relation.units]
        requests = {unit.name: relation.data[unit].get(_REQUEST, "") for unit in units}
        holder = next_holder(requests, self.holder)
        if holder != self.holder:
            logger.info("restart lock: %s", holder or "free")
            relation.data[self._charm.app][_HOLDER] = holder or ""
