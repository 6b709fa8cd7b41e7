"""Rolling restarts: one unit of the application restarts at a time.

Each unit compares what its running services were started with (a fingerprint of their
config files and Pebble definition) against what they should run now. A running service
whose fingerprint changed needs a restart; the unit asks for the application-wide restart
lock in its peer unit data, and the leader hands the lock to one unit at a time. The holder
keeps it until its restarted services serve again, so a restart never starts before the
previous one has completed (a ZooKeeper quorum of three survives one member down, not two).

A unit's request is either `waiting:<services>` or, once it has restarted them,
`restarted:<services>` until they serve.
"""

from __future__ import annotations

import hashlib
import json


def fingerprint(*parts: object) -> str:
    """A short digest of everything a service is started with."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stale_services(desired: dict[str, str], applied: dict[str, str], running: set[str]) -> list[str]:
    """Running services started with something other than what they should run now."""
    return sorted(name for name, digest in desired.items() if name in running and applied.get(name) != digest)


def _unit_number(unit: str) -> int:
    return int(unit.rsplit("/", 1)[1])


WAITING = "waiting:"
RESTARTED = "restarted:"


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
