"""The Juju-side state of a sandbox model: what a Juju controller would keep."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ops
from ops import testing

from sandbox.charmspec import CharmSpec
from sandbox.pods import Pod


@dataclass
class UnitState:
    """One unit: its pod, its agent's view of the charm, and its queue of pending events."""

    name: str
    app: str
    number: int
    pod: Pod
    workload_status: ops.StatusBase = field(default_factory=lambda: testing.WaitingStatus("agent initialising"))
    agent_status: str = "allocating"
    agent_message: str = ""
    workload_version: str = ""
    stored_states: frozenset[testing.StoredState] = frozenset()
    deferred: list[testing.DeferredEvent] = field(default_factory=list)
    opened_ports: frozenset[Any] = frozenset()
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    error: dict[str, Any] | None = None  # the failed event, its message and when to retry it
    tracked_revisions: dict[str, int] = field(default_factory=dict)  # secret id -> revision seen
    secret_labels: dict[str, str] = field(default_factory=dict)  # observer's labels
    check_status: dict[tuple[str, str], str] = field(default_factory=dict)
    notices_seen: dict[str, str] = field(default_factory=dict)  # container -> last notice id
    last_update_status: float = 0.0
    idle_since: float = 0.0
    log: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return self.agent_status == "executing"


@dataclass
class AppState:
    name: str
    charm: CharmSpec
    config: dict[str, Any]  # values set by the user, over the charm's defaults
    trusted: bool
    units: list[str] = field(default_factory=list)
    leader: str | None = None
    next_number: int = 0
    status: ops.StatusBase = field(default_factory=lambda: testing.UnknownStatus())

    @property
    def charm_dir(self) -> Path:
        return self.charm.root


@dataclass
class RelationState:
    id: int
    interface: str
    endpoints: list[tuple[str, str]]  # (app, endpoint); one entry for a peer relation
    app_data: dict[str, dict[str, str]] = field(default_factory=dict)
    unit_data: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def is_peer(self) -> bool:
        return len(self.endpoints) == 1

    def endpoint_of(self, app: str) -> str:
        return next(endpoint for owner, endpoint in self.endpoints if owner == app)

    def other_app(self, app: str) -> str:
        if self.is_peer:
            return app
        return next(owner for owner, _ in self.endpoints if owner != app)

    def label(self) -> str:
        return " ".join(f"{app}:{endpoint}" for app, endpoint in self.endpoints)


@dataclass
class SecretState:
    id: str
    owner: str  # an application name, or a unit name for a unit-owned secret
    owner_is_unit: bool
    revisions: dict[int, dict[str, str]]
    latest: int = 1
    label: str | None = None  # the owner's label
    description: str | None = None
    expire: Any = None
    rotate: Any = None
    grants: dict[int, frozenset[str]] = field(default_factory=dict)  # relation id -> apps/units

    def granted_to(self, unit: str, app: str) -> bool:
        return any(unit in names or app in names for names in self.grants.values())
