"""Rolling restarts: one unit of an application restarts at a time, the same way in every charm.

Each unit compares what its running services were started with (a fingerprint of their
Pebble definition and of the files they read) against what they should run now. A running
service whose fingerprint changed is stale; the unit asks for the application-wide restart
lock in its peer unit data, and the leader hands the lock to one unit at a time. The holder
keeps it until its restarted services serve again, so a restart never begins before the
previous one has completed: a ZooKeeper quorum of three survives one member down, not two,
and ledgers written with a quorum of two survive one bookie down, not two.

A charm may hold a waiting unit back (`may_restart`, asked by the leader): pulsar-k8s lets no
ZooKeeper server restart while another member of the ensemble does not serve.

No timeout moves the lock on. A holder whose services do not serve again stops the roll
(its status says what it waits for); a new config reaches the holder first, so fixing the
config is how the roll resumes.

The sequence, `RollingRestart.roll`, run by the unit's reconcile on every event:

1. release the lock if the services this unit restarted serve again;
2. fingerprint each service of the desired layer with the files it reads;
3. stale = running services whose fingerprint differs from the recorded one; when there
   are any, ask for the lock and, unless this unit holds it, stop here (the services keep
   serving as they are, and no file is touched);
4. write the files, apply the layer (Pebble's replan restarts the running services whose
   definition changed), and restart the other stale services: each restarts once;
5. record the fingerprints, merged with the earlier record: a service left out of the
   desired layer (e.g. held back by a start gate) keeps its record, so it is not seen as
   changed when it comes back; then hold the lock until the restarted services serve.

Databags (values JSON-encoded, an empty value erases its key):

- peer unit data (`LockUnitData`): `restart-request`, `{"phase": "waiting" | "restarted",
  "services": [...]}` while the unit waits for or uses the lock; `applied`, `{service:
  fingerprint}` of what its services were last started with;
- peer application data (`LockAppData`, leader): `restart-holder`, the unit holding the lock.

A charm's own peer databag classes extend these two, so that each databag has one class;
the charm hands its instances to `RollingRestart`, which saves them whole.

Why not `charmlibs-rollingops` (1.1.5): its lock runs a callback in a hook of its own,
dispatched by a background process that the leader spawns from the charm container and that
calls `juju-exec` after sleeping ten seconds; holding the lock past the callback means
returning RETRY_HOLD, which runs the callback (the restart) again on the next dispatch rather
than waiting for the restarted service to serve. Holding the lock until ZooKeeper or a bookie
serves again, heard at once through the Pebble check-recovered event, and restarting only
the services whose inputs changed, inside the same reconcile that writes the files, is what
this library does in about two hundred lines and no dependency (rollingops brings pydantic,
tenacity, shortuuid and TLS libraries into every charm).

Owned by pulsar-k8s; the other charms carry identical copies.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import ops

from charms.pulsar_k8s.v0.pulsar_workload import (
    InvalidDatabagError,
    PebbleWorkload,
    read_databag,
    write_databag,
)

LIBID = "0f31847f27ad46a88d369845417f569d"
LIBAPI = 0
LIBPATCH = 3

logger = logging.getLogger(__name__)

WAITING = "waiting"
RESTARTED = "restarted"


@dataclass
class RestartRequest:
    """A unit's use of the lock: waiting for it, or restarted and not serving yet."""

    phase: str
    services: list[str]


@dataclass
class LockUnitData:
    """The restart lock's keys in a peer unit databag."""

    restart_request: RestartRequest | None = field(default=None, metadata={"alias": "restart-request"})
    applied: dict[str, str] = field(default_factory=dict)


@dataclass
class LockAppData:
    """The restart lock's key in the peer application databag (written by the leader)."""

    restart_holder: str = field(default="", metadata={"alias": "restart-holder"})


@dataclass(frozen=True)
class WorkloadFile:
    """A file a service reads, rendered whole."""

    path: str
    content: str
    permissions: int = 0o644


@dataclass(frozen=True)
class DesiredWorkload:
    """What a unit's container should run: a layer, its files, and which service reads which."""

    layer_name: str
    layer: ops.pebble.LayerDict
    files: tuple[WorkloadFile, ...] = ()
    reads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def fingerprints(self) -> dict[str, str]:
        """Service name -> digest of its definition and of the files it reads."""
        contents = {file.path: file.content for file in self.files}
        services = self.layer.get("services", {})
        return {
            name: fingerprint(definition, [contents[path] for path in self.reads.get(name, ())])
            for name, definition in services.items()
        }


@dataclass(frozen=True)
class RestartWait:
    """Stale services of this unit, waiting for the lock (held by `holder`, if anyone)."""

    services: list[str]
    holder: str | None


def fingerprint(*parts: object) -> str:
    """A short digest of everything a service is started with."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stale_services(desired: dict[str, str], applied: dict[str, str], running: set[str]) -> list[str]:
    """Running services started with something other than what they should run now."""
    return sorted(name for name, digest in desired.items() if name in running and applied.get(name) != digest)


def _unit_number(unit: str) -> int:
    return int(unit.rsplit("/", 1)[1])


def next_holder(
    requests: dict[str, RestartRequest | None],
    holder: str | None,
    may_restart: Callable[[str, RestartRequest], bool] | None = None,
) -> str | None:
    """Leader: the unit that may restart now.

    `requests` maps each unit of the relation to its request. The holder keeps the lock
    while its request stands (waiting, or restarted but not serving yet); then the lowest
    unit waiting that `may_restart(unit, request)` lets go gets it. A unit that restarted
    without the lock (it cannot, but a leader change could make it look so) also keeps the
    others waiting until it serves.
    """
    if holder and requests.get(holder):
        return holder
    if any(request and request.phase == RESTARTED for request in requests.values()):
        return None
    waiting = [
        unit
        for unit, request in requests.items()
        if request and request.phase == WAITING and (may_restart is None or may_restart(unit, request))
    ]
    return min(waiting, key=_unit_number) if waiting else None


class RollingRestart:
    """The restart lock of one application, kept in its peer relation, and the restart sequence.

    `unit_data` and `app_data` are the charm's instances of this unit's and the
    application's peer databags (read once per event); `leads` says whether this unit hands
    the lock out (the leader, unless it is being removed); `may_restart(unit, request)`, if
    given, says whether a waiting unit may have the lock now.
    """

    def __init__(
        self,
        relation: ops.Relation,
        unit: ops.Unit,
        app: ops.Application,
        unit_data: LockUnitData,
        app_data: LockAppData,
        leads: bool,
        may_restart: Callable[[str, RestartRequest], bool] | None = None,
    ) -> None:
        self.relation = relation
        self.unit = unit
        self.app = app
        self.unit_data = unit_data
        self.app_data = app_data
        self.leads = leads
        self.may_restart = may_restart

    @property
    def holder(self) -> str | None:
        return self.app_data.restart_holder or None

    def roll(
        self,
        workload: PebbleWorkload,
        desired: DesiredWorkload,
        serving: Callable[[list[str]], bool],
        settle: Callable[[list[str]], object] | None = None,
    ) -> RestartWait | None:
        """Bring the container to `desired`, restarting under the lock; see the module docstring.

        `serving(services)` says whether the named services of this unit serve again;
        `settle(services)`, if given, runs right after a restart (e.g. a short wait for a
        service that serves within seconds, so the lock is released in the same event).
        Returns what this unit waits for, or None once the container runs `desired`.
        """
        self.release_if_serving(serving)
        wanted = desired.fingerprints()
        stale = stale_services(wanted, self.unit_data.applied, workload.running(wanted))
        self._request(stale)
        self.lead()
        if stale and self.holder != self.unit.name:
            return RestartWait(stale, self.holder)

        for file in desired.files:
            workload.write(file.path, file.content, permissions=file.permissions)
        before = workload.planned_services()
        workload.apply_layer(desired.layer_name, desired.layer)
        after = workload.planned_services()
        replanned = {name for name in stale if before.get(name) != after.get(name)}
        if rest := [name for name in stale if name not in replanned]:
            workload.restart(*rest)
        if stale:
            logger.info("restarted %s", ", ".join(stale))
        applied = {**self.unit_data.applied, **wanted}
        request = RestartRequest(RESTARTED, stale) if stale else self.unit_data.restart_request
        if applied != self.unit_data.applied or request != self.unit_data.restart_request:
            self.unit_data.applied = applied
            self.unit_data.restart_request = request
            self._save_unit()
        if stale and settle is not None:
            settle(stale)
        self.release_if_serving(serving)
        return None

    def release_if_serving(self, serving: Callable[[list[str]], bool]) -> None:
        """Release this unit's request once the services it restarted serve again."""
        request = self.unit_data.restart_request
        if request and request.phase == RESTARTED and serving(request.services):
            self.unit_data.restart_request = None
            self._save_unit()
            self.lead()

    def lead(self) -> None:
        """Leader: hand the lock to the next unit; everyone else: nothing."""
        if not self.leads:
            return
        requests: dict[str, RestartRequest | None] = {self.unit.name: self.unit_data.restart_request}
        for unit in self.relation.units:
            try:
                data = read_databag(self.relation, LockUnitData, unit)
            except InvalidDatabagError as error:
                logger.warning("ignoring the restart request of %s: %s", unit.name, error)
                data = None
            requests[unit.name] = data.restart_request if data else None
        holder = next_holder(requests, self.holder, self.may_restart)
        if holder != self.holder:
            logger.info("restart lock: %s", holder or "free")
            self.app_data.restart_holder = holder or ""
            write_databag(self.relation, self.app_data, self.app)

    def _request(self, stale: list[str]) -> None:
        request = self.unit_data.restart_request
        if stale and not (request and request.phase == RESTARTED):
            wanted: RestartRequest | None = RestartRequest(WAITING, stale)
        elif not stale and request and request.phase == WAITING:
            wanted = None  # the change was undone before its turn came
        else:
            return
        if wanted != request:
            self.unit_data.restart_request = wanted
            self._save_unit()

    def _save_unit(self) -> None:
        write_databag(self.relation, self.unit_data, self.unit)
