"""The Juju-side state of a sandbox model: what a Juju controller (and Kubernetes) would keep.

Plain data, pickled whole between CLI calls. Nothing here runs anything.
"""

from __future__ import annotations

import calendar
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import ops
from ops import testing

from sandbox.charmspec import CharmSpec
from sandbox.pods import Pod
from sandbox.procs import ProcessRef
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

# Juju's RotateRetryDelay and ExpireRetryDelay (core/secrets): an owner that leaves a rotated
# secret without a new revision, or an expired revision in place, hears of it again this late.
SECRET_RETRY_DELAY = 300.0


def juju_time(moment: datetime) -> datetime:
    """A time as Juju stores a secret's expiry or next rotation: UTC, to the second.

    A time without a zone is UTC, as `secret-set --expire` parses it.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return (moment + timedelta(microseconds=500_000)).replace(microsecond=0)


def _add_months(moment: datetime, months: int) -> datetime:
    """Go's AddDate(0, months, 0): a day past the month's end rolls into the next month."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    overflow = max(moment.day - calendar.monthrange(year, month)[1], 0)
    return moment.replace(year=year, month=month, day=moment.day - overflow) + timedelta(days=overflow)


def next_rotation(policy: ops.SecretRotate | None, last: datetime, now: datetime) -> datetime | None:
    """When a secret rotated (or created) at `last` is next due, by Juju's RotatePolicy.NextRotateTime.

    Never earlier than `now`; None for a secret that does not rotate.
    """
    steps: dict[ops.SecretRotate, datetime] = {
        ops.SecretRotate.HOURLY: last + timedelta(hours=1),
        ops.SecretRotate.DAILY: last + timedelta(days=1),
        ops.SecretRotate.WEEKLY: last + timedelta(days=7),
        ops.SecretRotate.MONTHLY: _add_months(last, 1),
        ops.SecretRotate.QUARTERLY: _add_months(last, 3),
        ops.SecretRotate.YEARLY: _add_months(last, 12),
    }
    due = steps.get(policy) if policy is not None else None
    return None if due is None else max(due, now)


@dataclass
class HookError:
    """A failed hook: the unit is in error and the event is retried later, as Juju does."""

    event: EventSpec
    line: str
    trace: str
    attempts: int
    retry_at: float  # time.monotonic()


@dataclass
class ExpiryTrigger:
    """One secret revision's expiry, as the unit agent's secret-expiry worker holds it."""

    expire: datetime  # the revision's expire time
    due: datetime  # when the worker fires next: the expire time, then every retry delay after


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
    # The agent's secret-expiry worker: (secret id, revision) -> its expiry. A new agent (a new
    # pod) starts the worker afresh: `secret_workers_agent` is the agent process it belongs to.
    expiry_triggers: dict[tuple[str, int], ExpiryTrigger] = field(default_factory=dict)
    secret_workers_agent: ProcessRef | None = None
    revision: str = ""  # the StatefulSet revision the current pod was created from (controller-revision-hash)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A model saved before the secret workers (or revisions) existed loads with them not started.
        self.__dict__.update({"expiry_triggers": {}, "secret_workers_agent": None, "revision": "", **state})

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


@dataclass(frozen=True)
class ImageRevision:
    """One attached revision of an application's oci-image resource: the image its containers run."""

    name: str
    revision: int
    reference: str  # as `juju attach-resource APP NAME=REPOSITORY:TAG` gives it


@dataclass
class AppState:
    name: str
    charm: CharmSpec  # the charm the application runs (the pod template's)
    config: dict[str, Any]  # values set by the user, over the charm's defaults
    trusted: bool
    units: list[str] = field(default_factory=list)  # by ordinal, dying units included until they are gone
    leader: str | None = None
    status: ops.StatusBase = field(default_factory=lambda: testing.UnknownStatus())
    replacing: str | None = None  # rolling update: the unit whose pod was replaced last, until it is ready
    resources: dict[str, ResourceRevision] = field(default_factory=dict)  # file resource -> current revision
    images: dict[str, ImageRevision] = field(default_factory=dict)  # oci-image resource -> attached, if any
    # The StatefulSet (statefulset.py): its controller revisions (name -> the template's charm),
    # the one every pod ran before the last template change, the newest, and the partition.
    revisions: dict[str, CharmSpec] = field(default_factory=dict)
    current_revision: str = ""
    update_revision: str = ""
    partition: int = 0
    template_generation: int = 0  # template changes so far; names each new revision
    generation: int = 0  # the StatefulSet's metadata.generation: spec changes so far
    api_token: str = ""  # the bearer token of the application's service account (kubeapi.py)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A model saved before file resources, or before revisions, loads without them
        # (Model adopts such an application's revisions as it loads).
        state.pop("rollout", None)
        defaults: dict[str, Any] = {
            "resources": {},
            "images": {},
            "revisions": {},
            "current_revision": "",
            "update_revision": "",
            "partition": 0,
            "template_generation": 0,
            "generation": 0,
            "api_token": "",
        }
        self.__dict__.update({**defaults, **state})

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
    revisions: dict[int, dict[str, str]]  # the revisions not removed yet
    latest: int = 1
    label: str | None = None  # the owner's label
    description: str | None = None
    # Revision -> when it expires. Juju keeps the expire time on each revision: a new revision
    # has only the one set with its content, and an older one keeps its own until it is removed.
    expiry: dict[int, datetime] = field(default_factory=dict)
    rotate: ops.SecretRotate | None = None
    next_rotation: datetime | None = None  # when secret-rotate is due (Juju's NextRotateTime)
    obsolete: set[int] = field(default_factory=set)  # revisions the owner got secret-remove for
    grants: dict[int, frozenset[str]] = field(default_factory=dict)  # relation id -> apps/units
    name: str | None = None  # a user secret's name (`juju add-secret NAME`)
    app_grants: frozenset[str] = frozenset()  # a user secret: the applications granted access

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A model saved with one expire time per secret: it was the latest revision's.
        expire = state.pop("expire", None)
        defaults: dict[str, Any] = {"expiry": {}, "next_rotation": None, "obsolete": set()}
        self.__dict__.update({**defaults, **state})
        if expire is not None and not self.expiry:
            self.expiry = {self.latest: juju_time(expire)}

    @property
    def user_owned(self) -> bool:
        return self.name is not None

    @property
    def latest_expiry(self) -> datetime | None:
        """The latest revision's expire time: what `secret-info-get` shows as the secret's expiry."""
        return self.expiry.get(self.latest)

    def set_rotation(self, policy: ops.SecretRotate | None, now: datetime) -> None:
        """A new rotation policy, as Juju's secrets facade records it.

        A secret that starts rotating is next due one interval from now; one that stops is due
        never; one that changes from one rotating policy to another keeps its due time.
        """
        was_rotating = self.rotate not in (None, ops.SecretRotate.NEVER)
        self.rotate = policy
        if policy in (None, ops.SecretRotate.NEVER):
            self.next_rotation = None
        elif not was_rotating or self.next_rotation is None:
            due = next_rotation(policy, now, now)
            self.next_rotation = juju_time(due) if due is not None else None

    def rotated(self, original_revision: int, now: datetime, retry: timedelta) -> None:
        """The owner's secret-rotate hook ended: when the secret is next due (Juju's SecretsRotated).

        The next interval after the rotation that was due, if the owner made a new revision;
        otherwise the retry delay after it. A rotation that would come after the latest
        revision expires comes after the retry delay instead, while that is still before it.
        """
        if self.rotate in (None, ops.SecretRotate.NEVER):
            return
        last = self.next_rotation or now
        due = next_rotation(self.rotate, last, now) or now
        retry_at = last + retry
        expires = self.latest_expiry
        if (expires is not None and expires < due and retry_at < expires) or self.latest == original_revision:
            due = retry_at
        self.next_rotation = juju_time(due)

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
    secret_retry_delay: float = SECRET_RETRY_DELAY  # seconds; tests shorten it
    created_mountpoints: list[str] = field(default_factory=list)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A model saved before secret triggers existed loads with Juju's retry delay.
        self.__dict__.update({"secret_retry_delay": SECRET_RETRY_DELAY, **state})

    def app_units(self, app: str) -> list[UnitState]:
        """The application's units, the dying ones included until they are gone, by ordinal."""
        return [self.units[u] for u in self.apps[app].units if u in self.units]

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

    def manager(self, secret: SecretState) -> UnitState | None:
        """The unit Juju tells of a charm secret's lifecycle (expired, rotate, remove).

        The owner unit of a unit-owned secret; the owner application's leader of an
        application-owned one. None for a user secret, or while there is no such unit.
        """
        if secret.user_owned:
            return None
        if secret.owner_is_unit:
            return self.units.get(secret.owner)
        app = self.apps.get(secret.owner)
        return self.units.get(app.leader) if app is not None and app.leader is not None else None

    def in_scope(self, relation: RelationState, app: str) -> list[UnitState]:
        """Units of `app` that entered the relation's scope (and are not gone)."""
        return [self.units[u] for u in self.apps[app].units if u in relation.unit_data and u in self.units]
