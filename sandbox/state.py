"""The Juju-side state of a sandbox model: what a Juju controller (and Kubernetes) would keep.

Plain data, pickled whole between CLI calls. Nothing here runs anything.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ops
from ops import testing

from sandbox.charmspec import CharmSpec
from sandbox.pods import Pod
from sandbox.wire import EventSpec


@dataclass(frozen=True)
class PodAction:
    """A step Kubernetes takes in a unit's life, queued between the unit's hooks.

    `replace`: the pod is deleted and created again from the application's template
    (after its stop hook): restart-pod, refresh. `delete`: the pod of a removed unit goes
    (after its last teardown hook).
    """

    kind: Literal["replace", "delete"]
    move_leader: bool = False  # replace: leadership moves to another unit while the pod is down


QueueItem = EventSpec | PodAction


@dataclass
class HookError:
    """A failed hook: the unit is in error and the event is retried later, as Juju does."""

    event: EventSpec
    line: str
    trace: str
    attempts: int
    retry_at: float  # time.monotonic()


@dataclass
class UnitState:
    """One unit: its pod, its agent's view of the charm, and its queue of pending events."""

    name: str
    app: str
    number: int  # the pod's ordinal in its StatefulSet
    pod: Pod
    charm: CharmSpec  # the charm code this unit's agent runs (the old one until a refresh reaches it)
    workload_status: ops.StatusBase = field(default_factory=lambda: testing.WaitingStatus("agent initialising"))
    agent_status: str = "allocating"
    agent_message: str = ""
    workload_version: str = ""
    stored_states: frozenset[testing.StoredState] = frozenset()
    deferred: list[testing.DeferredEvent] = field(default_factory=list)
    opened_ports: frozenset[Any] = frozenset()
    queue: deque[QueueItem] = field(default_factory=deque)
    error: HookError | None = None
    dying: bool = False  # removal started: teardown hooks queued, the pod goes when they end
    # relation id -> remote units this unit's agent has seen join and not yet depart: what
    # `relation-list` answers in its hooks (Juju keeps one such view per unit).
    members: dict[int, set[str]] = field(default_factory=dict)
    tracked_revisions: dict[str, int] = field(default_factory=dict)  # secret id -> revision seen
    secret_labels: dict[str, str] = field(default_factory=dict)  # observer's labels
    check_status: dict[tuple[str, str], str] = field(default_factory=dict)  # (container, check) -> up/down
    notices_seen: dict[str, str] = field(default_factory=dict)  # container:notice id -> last occurrence
    liveness_failures: dict[str, int] = field(default_factory=dict)  # container -> failed probes in a row
    last_probe: float = 0.0
    restarts: int = 0  # container restarts after failed liveness probes (kubectl's RESTARTS)
    pod_started: float = 0.0  # time.monotonic() when the current pod's containers started
    last_update_status: float = 0.0
    idle_since: float = 0.0

    @property
    def busy(self) -> bool:
        return self.agent_status == "executing"


@dataclass(frozen=True)
class ResourceRevision:
    """One uploaded revision of an application's file resource: the controller's own copy."""

    name: str
    revision: int
    path: Path  # the stored copy, named as the charm declares the file
    fingerprint: str  # sha384 of the content, as Juju fingerprints resources
    size: int


@dataclass
class AppState:
    name: str
    charm: CharmSpec  # the charm the application runs (the pod template's)
    config: dict[str, Any]  # values set by the user, over the charm's defaults
    trusted: bool
    units: list[str] = field(default_factory=list)  # by ordinal, dying units included until they are gone
    leader: str | None = None
    status: ops.StatusBase = field(default_factory=lambda: testing.UnknownStatus())
    rollout: list[str] = field(default_factory=list)  # refresh: units still to replace, highest first
    replacing: str | None = None  # refresh: the unit whose pod was replaced last, until it is ready
    resources: dict[str, ResourceRevision] = field(default_factory=dict)  # file resource -> current revision

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A model saved before file resources existed loads with none attached.
        self.__dict__.update({"resources": {}, **state})

    @property
    def charm_dir(self) -> Path:
        return self.charm.root


@dataclass
class RelationState:
    id: int
    interface: str
    endpoints: list[tuple[str, str]]  # (app, endpoint); one entry for a peer relation
    app_data: dict[str, dict[str, str]] = field(default_factory=dict)
    unit_data: dict[str, dict[str, str]] = field(default_factory=dict)  # units in scope
    removing: bool = False  # remove-relation: departed and broken hooks queued, gone when they end

    @property
    def is_peer(self) -> bool:
        return len(self.endpoints) == 1

    def endpoint_of(self, app: str) -> str:
        return next(endpoint for owner, endpoint in self.endpoints if owner == app)

    def other_app(self, app: str) -> str:
        if self.is_peer:
            return app
        return next(owner for owner, _ in self.endpoints if owner != app)

    def involves(self, app: str) -> bool:
        return any(owner == app for owner, _ in self.endpoints)

    def label(self) -> str:
        return " ".join(f"{app}:{endpoint}" for app, endpoint in self.endpoints)


@dataclass
class SecretState:
    """A charm secret (owned by an application or a unit), or a user secret (owned by the model).

    A charm secret is granted over relations; a user secret to applications by the user
    (`grant-secret`), whatever their relations.
    """

    id: str
    owner: str  # an application name, a unit name for a unit-owned secret, "" for a user secret
    owner_is_unit: bool
    revisions: dict[int, dict[str, str]]
    latest: int = 1
    label: str | None = None  # the owner's label
    description: str | None = None
    expire: Any = None
    rotate: Any = None
    grants: dict[int, frozenset[str]] = field(default_factory=dict)  # relation id -> apps/units
    name: str | None = None  # a user secret's name (`juju add-secret NAME`)
    app_grants: frozenset[str] = frozenset()  # a user secret: the applications granted access

    @property
    def user_owned(self) -> bool:
        return self.name is not None

    def granted_to(self, unit: str, app: str) -> bool:
        return app in self.app_grants or any(unit in names or app in names for names in self.grants.values())


@dataclass
class ModelState:
    """Everything a sandbox model keeps between two verbs."""

    name: str
    uuid: str
    root: Path
    cluster_domain: str = "cluster.local"
    apps: dict[str, AppState] = field(default_factory=dict)
    units: dict[str, UnitState] = field(default_factory=dict)
    relations: dict[int, RelationState] = field(default_factory=dict)
    secrets: dict[str, SecretState] = field(default_factory=dict)
    next_relation_id: int = 0
    next_pod_index: int = 2  # host part of the next pod address; .1 is the bridge
    next_action_id: int = 1
    update_status_interval: float = 300.0
    probe_period: float = 5.0  # Kubernetes probes of each workload container, as Juju sets them
    created_mountpoints: list[str] = field(default_factory=list)

    def alive_units(self, app: str) -> list[UnitState]:
        """The application's units that are not being removed, by ordinal."""
        return [self.units[u] for u in self.apps[app].units if not self.units[u].dying]

    def relations_of(self, app: str, include_removing: bool = False) -> list[RelationState]:
        """The application's relations (with `include_removing`, also those being removed)."""
        return [r for r in self.relations.values() if r.involves(app) and (include_removing or not r.removing)]

    def tracking(self, secret: SecretState) -> list[UnitState]:
        """Units that track a revision of the secret (they read it) and may still read it.

        Juju sends these, and only these, secret-changed when a new revision is published.
        """
        return [
            unit
            for unit in self.units.values()
            if secret.id in unit.tracked_revisions
            and secret.owner not in (unit.app, unit.name)
            and secret.granted_to(unit.name, unit.app)
        ]

    def in_scope(self, relation: RelationState, app: str) -> list[UnitState]:
        """Units of `app` that entered the relation's scope (and are not gone)."""
        return [self.units[u] for u in self.apps[app].units if u in relation.unit_data and u in self.units]
