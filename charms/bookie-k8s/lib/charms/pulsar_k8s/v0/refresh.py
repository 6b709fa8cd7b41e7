"""A guarded `juju refresh`: one pod of the StatefulSet replaced at a time, each once the last serves.

On Kubernetes, `juju refresh` changes the pod template of the application's StatefulSet, and
the StatefulSet controller replaces the pods from the highest ordinal down, each as soon as
the previous new pod is Ready. A new pod is Ready before its charm has started anything (an
empty Pebble plan is healthy), so without a guard ZooKeeper servers and bookies restart back
to back. The guard is the StatefulSet's `spec.updateStrategy.rollingUpdate.partition`: only
pods whose ordinal is at least the partition are moved to the new revision.

- In steady state (the StatefulSet's current and update revisions agree), the leader keeps
  the partition at the highest ordinal: a refresh then replaces that one pod and waits.
- During a roll, the leader lowers the partition by one once the unit at the partition says,
  from its new pod, that it runs the update revision and serves, every other unit serves too,
  and nobody holds or waits for the restart lock. It never raises the partition during a roll:
  a pod below the partition is put back on the current revision, which would undo a step.
- Each unit publishes the revision its own pod runs (the pod's `controller-revision-hash`
  label) in its peer databag, in the same hook as its serving flag (`RefreshUnitData`). A new
  pod's first hook writes both, so the old pod's `serving` never counts for the new revision.

The leader needs the application trusted (`juju trust <app> --scope=cluster`) to read and
patch its StatefulSet; without it the cluster works as before, unguarded, and the charm says so.

`Kubernetes` is the thin client (lightkube), `plan_partition` the decision (no ops, no
Kubernetes), `RefreshGuard` the leader's use of both (each reconcile, and the
`pre-upgrade-check` action), `RefreshUnitData` the peer databag key.

Owned by pulsar-k8s; the other charms carry identical copies.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import httpx2
import lightkube
import ops
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

LIBID = "5c1e0a7d9b3f4e62a8d4f0c2b6e91a37"
LIBAPI = 0
LIBPATCH = 1

logger = logging.getLogger(__name__)

T = TypeVar("T")
REVISION_LABEL = "controller-revision-hash"
# A hook waits for the API at most this long (seconds): the guard must not stall the charm.
API_TIMEOUT = 5.0


@dataclass
class RefreshUnitData:
    """The guard's key in a peer unit databag: `pod-revision`, the revision this unit's pod runs.

    Empty while the unit cannot read it (the application is not trusted, or the API is out of
    reach): the leader then counts the unit as not refreshed.
    """

    pod_revision: str = field(default="", metadata={"alias": "pod-revision"})


# ---------------------------------------------------------------- Kubernetes


class KubernetesError(Exception):
    """The API cannot be used now; the message says why, for a status or an action's failure."""


class NotTrustedError(KubernetesError):
    """The API refused (403): the application lacks `juju trust <app> --scope=cluster`."""


@dataclass(frozen=True)
class StatefulSetRevisions:
    """What the guard reads of the application's StatefulSet."""

    partition: int
    replicas: int
    current_revision: str
    update_revision: str


class Kubernetes:
    """The application's StatefulSet (named after the application) and its pods, in the model's namespace.

    The client is made on first use with the default configuration (the pod's service account).
    """

    def __init__(self, app: str, namespace: str) -> None:
        self.app = app
        self.namespace = namespace
        self._client: lightkube.Client | None = None

    def statefulset(self) -> StatefulSetRevisions:
        found = self._call(lambda client: client.get(StatefulSet, self.app, namespace=self.namespace))
        strategy = found.spec.updateStrategy
        rolling = strategy.rollingUpdate if strategy else None
        status = found.status
        return StatefulSetRevisions(
            partition=(rolling.partition if rolling else None) or 0,
            replicas=found.spec.replicas if found.spec.replicas is not None else 1,
            current_revision=(status.currentRevision if status else None) or "",
            update_revision=(status.updateRevision if status else None) or "",
        )

    def set_partition(self, partition: int) -> None:
        patch = {"spec": {"updateStrategy": {"rollingUpdate": {"partition": partition}}}}
        self._call(
            lambda client: client.patch(
                StatefulSet, self.app, patch, namespace=self.namespace, patch_type=PatchType.MERGE
            )
        )

    def pod_revision(self, unit_name: str) -> str:
        """The StatefulSet revision unit `app/n`'s pod (`app-n`) was made from."""
        pod_name = unit_name.replace("/", "-")
        found = self._call(lambda client: client.get(Pod, pod_name, namespace=self.namespace))
        labels = (found.metadata.labels if found.metadata else None) or {}
        return labels.get(REVISION_LABEL, "")

    def own_revision(self, unit_name: str) -> str:
        """The revision this unit's own pod runs, for its peer data; empty when the API cannot tell."""
        try:
            return self.pod_revision(unit_name)
        except KubernetesError as error:
            logger.debug("cannot read this pod's revision: %s", error)
            return ""

    def _call(self, request: Callable[[lightkube.Client], T]) -> T:
        try:
            if self._client is None:
                self._client = lightkube.Client(namespace=self.namespace, timeout=httpx2.Timeout(API_TIMEOUT))
            return request(self._client)
        except lightkube.ApiError as error:
            code = error.status.code if error.status else None
            if code == 403:
                raise NotTrustedError(f"not trusted: juju trust {self.app} --scope=cluster") from error
            raise KubernetesError(f"Kubernetes API error {code}: {error.status.message}") from error
        except lightkube.ConfigError as error:
            raise KubernetesError(f"no Kubernetes API credentials: {error}") from error
        except (httpx2.HTTPError, OSError) as error:
            raise KubernetesError(f"Kubernetes API unreachable: {error}") from error


# ---------------------------------------------------------------- the decision


@dataclass(frozen=True)
class UnitRefresh:
    """One unit as the leader sees it in peer data.

    `revision`: what its own pod published ("" when unknown); `serving`: its workload serves;
    `restarting`: it waits for or holds the restart lock.
    """

    ordinal: int
    revision: str
    serving: bool
    restarting: bool = False


@dataclass(frozen=True)
class RefreshPlan:
    """The partition the leader should set, and what the roll waits for."""

    partition: int
    rolling: bool
    updated: int
    total: int
    # During a roll: a unit at or above the partition that has not said it serves on the new
    # revision, i.e. a pod being replaced now (the restart lock waits for it too).
    in_flight: bool = False
    waits_for: str = ""


def unit_ordinal(unit_name: str) -> int:
    return int(unit_name.rsplit("/", 1)[1])


def plan_partition(
    units: Iterable[UnitRefresh], statefulset: StatefulSetRevisions, lock_held: bool = False
) -> RefreshPlan:
    """The partition the leader should set now; see the module docstring for the rules.

    `lock_held`: the restart lock has a holder.
    """
    units = sorted(units, key=lambda u: u.ordinal)
    top = max([statefulset.replicas - 1, *(u.ordinal for u in units), 0])
    update = statefulset.update_revision
    updated = sum(1 for u in units if update and u.revision == update)
    rolling = bool(update) and statefulset.current_revision != update
    if not rolling:
        return RefreshPlan(top, False, updated, len(units))

    partition = statefulset.partition
    done = {u.ordinal for u in units if u.revision == update and u.serving}
    in_flight = any(u.ordinal >= partition and u.ordinal not in done for u in units)
    plan = RefreshPlan(partition, True, updated, len(units), in_flight)
    if partition == 0:
        return plan  # every pod may be replaced: the StatefulSet finishes the roll
    if partition <= top:
        above = [u for u in units if u.ordinal >= partition]
        if partition not in {u.ordinal for u in above}:
            return _held(plan, f"unit {partition} is not in the peer relation")
        if any(u.revision != update for u in above):
            return _held(plan, f"unit {partition} has not said it runs the new revision")
    if not_serving := [u.ordinal for u in units if not u.serving]:
        return _held(plan, f"units {not_serving} do not serve")
    if lock_held or any(u.restarting for u in units):
        return _held(plan, "a restart is under way or asked for")
    return RefreshPlan(min(partition - 1, top), True, updated, len(units), in_flight)


def _held(plan: RefreshPlan, reason: str) -> RefreshPlan:
    return RefreshPlan(plan.partition, plan.rolling, plan.updated, plan.total, plan.in_flight, reason)


def refusal(units: Mapping[str, UnitRefresh], statefulset: StatefulSetRevisions, lock_holder: str) -> str | None:
    """Why a refresh should not start now (`pre-upgrade-check`), or None when it may."""
    plan = plan_partition(units.values(), statefulset, bool(lock_holder))
    if plan.rolling:
        return f"a refresh is under way ({plan.updated}/{plan.total} units on the new revision): let it finish"
    if not_serving := sorted((name for name, unit in units.items() if not unit.serving), key=unit_ordinal):
        return f"not every unit serves ({', '.join(not_serving)}): refresh once they do"
    restarting = sorted((name for name, unit in units.items() if unit.restarting), key=unit_ordinal)
    if lock_holder or restarting:
        involved: set[str] = {*restarting, *([lock_holder] if lock_holder else [])}
        names = ", ".join(sorted(involved, key=unit_ordinal))
        return f"a restart is under way or asked for ({names}): refresh once it is done"
    return None


class RefreshRefusedError(Exception):
    """The refresh should not start now; the message says why."""


class RefreshGuard:
    """The leader's side: read the StatefulSet once per event, and move its partition.

    `units()` gives each unit's `UnitRefresh` by unit name, read when needed (a reconcile
    updates the leader's own entry as it goes); `lock_holder` is the restart lock's holder.
    """

    def __init__(
        self, kubernetes: Kubernetes, units: Callable[[], Mapping[str, UnitRefresh]], lock_holder: Callable[[], str]
    ) -> None:
        self.kubernetes = kubernetes
        self._units = units
        self._lock_holder = lock_holder

    @functools.cached_property
    def statefulset(self) -> StatefulSetRevisions | KubernetesError:
        try:
            return self.kubernetes.statefulset()
        except KubernetesError as error:
            return error

    def plan(self) -> RefreshPlan | KubernetesError:
        statefulset = self.statefulset
        if isinstance(statefulset, KubernetesError):
            return statefulset
        return plan_partition(self._units().values(), statefulset, bool(self._lock_holder()))

    def in_flight(self) -> bool:
        """Whether a pod is being replaced now (the restart lock waits for it): never without the API."""
        plan = self.plan()
        return isinstance(plan, RefreshPlan) and plan.in_flight

    def apply(self) -> RefreshPlan | KubernetesError:
        """Set the partition the plan asks for, when it differs; the plan, or why the API is unusable."""
        statefulset = self.statefulset
        if isinstance(statefulset, KubernetesError):
            return statefulset
        plan = plan_partition(self._units().values(), statefulset, bool(self._lock_holder()))
        if plan.partition == statefulset.partition:
            if plan.rolling and plan.waits_for:
                logger.debug("refresh: partition stays at %d: %s", plan.partition, plan.waits_for)
            return plan
        try:
            self.kubernetes.set_partition(plan.partition)
        except KubernetesError as error:
            return error
        why = "the next unit may refresh" if plan.rolling else "armed at the highest ordinal"
        logger.info("refresh: StatefulSet partition %d -> %d (%s)", statefulset.partition, plan.partition, why)
        self.__dict__["statefulset"] = StatefulSetRevisions(
            plan.partition, statefulset.replicas, statefulset.current_revision, statefulset.update_revision
        )
        return plan

    def arm(self) -> int:
        """`pre-upgrade-check`: set the partition at the highest ordinal; the ordinal that refreshes first.

        Raises RefreshRefusedError (or KubernetesError) saying why the refresh should wait.
        """
        statefulset = self.statefulset
        if isinstance(statefulset, KubernetesError):
            raise statefulset
        if reason := refusal(self._units(), statefulset, self._lock_holder()):
            raise RefreshRefusedError(reason)
        plan = self.apply()
        if isinstance(plan, KubernetesError):
            raise plan
        return plan.partition


# ---------------------------------------------------------------- the charms' use


def guard_statuses(
    refresh: RefreshPlan | KubernetesError | None,
    summary: ops.StatusBase,
    app: str,
    refreshing: Callable[..., ops.StatusBase],
    unguarded: Callable[..., ops.StatusBase],
    guard_down: Callable[..., ops.StatusBase],
) -> list[ops.StatusBase]:
    """The application's statuses: its `summary`, with a roll under way or why the guard is off.

    The three status makers are the charm's catalog entries, with the fields `updated` and
    `total`; `summary` and `app`; `summary` and `error`.
    """
    if isinstance(refresh, RefreshPlan) and refresh.rolling:
        return [summary, refreshing(updated=refresh.updated, total=refresh.total)]
    if isinstance(refresh, KubernetesError) and isinstance(summary, ops.ActiveStatus):
        if isinstance(refresh, NotTrustedError):
            return [unguarded(summary=summary.message, app=app)]
        return [guard_down(summary=summary.message, error=str(refresh))]
    return [summary]


def arm_for_refresh(event: ops.ActionEvent, guard: RefreshGuard, app: str) -> None:
    """`pre-upgrade-check`, once the charm's own checks passed: arm the guard, or fail saying why."""
    try:
        first = guard.arm()
    except (KubernetesError, RefreshRefusedError) as error:
        event.fail(f"{error}; the refresh guard needs it" if isinstance(error, NotTrustedError) else str(error))
        return
    first_unit = f"{app}/{first}"
    event.set_results(
        {
            "first-unit": first_unit,
            "partition": first,
            "message": (
                f"ready: run juju refresh; {first_unit} refreshes first, and the charm lets each next unit"
                " refresh once the previous one serves again (the application status shows the progress)"
            ),
        }
    )
