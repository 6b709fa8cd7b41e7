"""Watching the workloads and the clock, as Juju's agent and the kubelet do.

Juju turns Pebble check failures and recoveries and custom notices into events. The kubelet
probes each workload container's Pebble the way Juju configures it on Kubernetes: readiness
is `/v1/health?level=ready` (the pod is ready when every container is), liveness is
`/v1/health?level=alive`, and a container failing its liveness probe three times in a row is
restarted. A container whose plan has no checks is healthy. On the clock: update-status, and
the secret workers of each unit agent (secret-expired, secret-rotate).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ops
from ops import testing

from sandbox.pods import ContainerProcess
from sandbox.projection import ContainerSnapshot
from sandbox.state import ExpiryTrigger, ModelState, SecretState, UnitState
from sandbox.wire import EventSpec

POLL_INTERVAL = 0.2  # seconds between looks at Pebble checks and notices, as the Juju agent watches them
LIVENESS_FAILURE_THRESHOLD = 3  # Juju's liveness probe of a workload container
STARTUP_PROBE_PERIOD = 1.0  # Juju's startup probe: no readiness before the first one passed
_UP = ops.pebble.CheckStatus.UP.value
_DOWN = ops.pebble.CheckStatus.DOWN.value


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


def pebble_healthy(socket_path: Path, level: str, timeout: float = 1.0) -> bool:
    """Pebble's `/v1/health` at `level`, as a Kubernetes HTTP probe reads it (timeout 1 s)."""
    connection = _UnixHTTPConnection(socket_path, timeout)
    try:
        connection.request("GET", f"/v1/health?level={level}")
        response = connection.getresponse()
        body = json.loads(response.read() or b"{}")
    except (OSError, ValueError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return response.status == 200 and bool((body.get("result") or {}).get("healthy"))


def snapshot(container: ContainerProcess | None) -> ContainerSnapshot:
    """What a hook's State says of a container: whether Pebble answers, its plan, checks, notices."""
    if container is None or not container.socket.exists() or not container.process.alive():
        return ContainerSnapshot(can_connect=False)
    client = ops.pebble.Client(socket_path=str(container.socket))
    try:
        plan = client.get_plan()
        checks = client.get_checks()
        notices = client.get_notices(types=[ops.pebble.NoticeType.CUSTOM])
    except (ops.pebble.ConnectionError, ops.pebble.APIError):
        return ContainerSnapshot(can_connect=False)
    infos = frozenset(
        testing.CheckInfo(
            c.name,
            level=c.level,
            startup=c.startup,
            status=ops.pebble.CheckStatus(c.status),
            failures=c.failures,
            threshold=c.threshold,
        )
        for c in checks
        if c.name in plan.checks  # a check removed between the two calls
    )
    return ContainerSnapshot(
        can_connect=True,
        plan=plan,
        check_infos=infos,
        notices=tuple(testing.Notice(n.key, id=n.id, type=n.type) for n in notices),
    )


@dataclass(frozen=True)
class ContainerRestart:
    """The kubelet restarts this container (liveness probe failed)."""

    unit: str
    container: str


class Watcher:
    """Looks at every unit's Pebbles; reports what Juju and the kubelet would act on."""

    def __init__(self, model: ModelState) -> None:
        self.model = model

    def pod_ready(self, unit: UnitState) -> bool:
        """Kubernetes' Ready condition of the unit's pod.

        The unit agent runs and every workload container passes its readiness probe (after
        the startup probe, a second after the container started).
        """
        pod = unit.pod
        if pod.agent is None or not pod.agent.alive():
            return False
        if len(pod.containers) != len(unit.charm.containers):
            return False
        if time.monotonic() - unit.pod_started < STARTUP_PROBE_PERIOD:
            return False
        return all(pebble_healthy(c.socket, "ready") for c in list(pod.containers.values()))

    def observe(
        self, units: list[UnitState], containers: dict[str, dict[str, ContainerProcess]]
    ) -> list[tuple[str, EventSpec] | ContainerRestart]:
        """One look at the given units' Pebbles (without the model lock: this talks to Pebble).

        Returns the events Juju would deliver (check failed or recovered, custom notice) and the
        containers the kubelet would restart. `containers` is each unit's containers as they
        were when the caller took the list.
        """
        now = time.monotonic()
        found: list[tuple[str, EventSpec] | ContainerRestart] = []
        for unit in units:
            probe = now - unit.last_probe >= self.model.probe_period
            if probe:
                unit.last_probe = now
            for name, container in containers.get(unit.name, {}).items():
                if not container.socket.exists():
                    continue
                found += self._checks_and_notices(unit, name, container)
                if probe and self._liveness_failed(unit, name, container):
                    found.append(ContainerRestart(unit.name, name))
        return found

    def _checks_and_notices(
        self, unit: UnitState, name: str, container: ContainerProcess
    ) -> list[tuple[str, EventSpec] | ContainerRestart]:
        client = ops.pebble.Client(socket_path=str(container.socket))
        try:
            checks = client.get_checks()
            notices = client.get_notices(types=[ops.pebble.NoticeType.CUSTOM])
        except (ops.pebble.ConnectionError, ops.pebble.APIError):
            return []
        found: list[tuple[str, EventSpec] | ContainerRestart] = []
        for check in checks:
            key = (name, check.name)
            # Statuses are kept as their string values: "up", "down" (or "inactive").
            old = unit.check_status.get(key, _UP)
            new = check.status.value if isinstance(check.status, ops.pebble.CheckStatus) else check.status
            unit.check_status[key] = new
            if old == _UP and new == _DOWN:
                found.append((unit.name, EventSpec("pebble_check_failed", container=name, check=check.name)))
            elif old == _DOWN and new == _UP:
                found.append((unit.name, EventSpec("pebble_check_recovered", container=name, check=check.name)))
        for notice in notices:
            stamp = f"{notice.last_repeated.timestamp():.6f}:{notice.id}"
            if stamp > unit.notices_seen.get(f"{name}:{notice.id}", ""):
                unit.notices_seen[f"{name}:{notice.id}"] = stamp
                found.append((unit.name, EventSpec("pebble_custom_notice", container=name, notice_id=notice.id)))
        return found

    def _liveness_failed(self, unit: UnitState, name: str, container: ContainerProcess) -> bool:
        if pebble_healthy(container.socket, "alive"):
            unit.liveness_failures[name] = 0
            return False
        unit.liveness_failures[name] = unit.liveness_failures.get(name, 0) + 1
        return unit.liveness_failures[name] >= LIVENESS_FAILURE_THRESHOLD

    def due_update_status(self, units: list[UnitState]) -> list[tuple[str, EventSpec]]:
        now = time.monotonic()
        due = []
        for unit in units:
            if now - unit.last_update_status >= self.model.update_status_interval and not unit.queue:
                unit.last_update_status = now
                due.append((unit.name, EventSpec("update_status")))
        return due

    def due_secret_events(self, units: list[UnitState]) -> list[tuple[str, EventSpec]]:
        """secret-expired and secret-rotate, as each unit agent's secret workers send them.

        A unit's workers watch the secrets it manages: its own, and its application's while it
        leads. Each worker's alarm rings at the soonest due time; it then fires everything due
        within that minute (Juju's one-minute granularity: the due time, truncated to the
        minute, is past). An expired revision fires again every retry delay until the owner
        removes it or sets it another expire time; a secret due for rotation is due again once
        its secret-rotate hook ran (see `SecretState.rotated`). A unit is not sent what it
        still has queued.
        """
        now = datetime.now(UTC)
        retry = timedelta(seconds=self.model.secret_retry_delay)
        found: list[tuple[str, EventSpec]] = []
        for unit in units:
            managed = [s for s in self.model.secrets.values() if self.model.manager(s) is unit]
            found += self._expired(unit, managed, now, retry)
            found += self._due_rotations(unit, managed, now)
        return found

    def _expired(
        self, unit: UnitState, managed: list[SecretState], now: datetime, retry: timedelta
    ) -> list[tuple[str, EventSpec]]:
        if unit.secret_workers_agent != unit.pod.agent:
            unit.expiry_triggers.clear()  # a new agent: its worker starts afresh, overdue revisions fire at once
            unit.secret_workers_agent = unit.pod.agent
        watched = {(s.id, revision): expire for s in managed for revision, expire in s.expiry.items()}
        triggers = unit.expiry_triggers
        for key in [key for key in triggers if key not in watched]:
            del triggers[key]  # the revision is gone, or no longer this unit's to manage
        for key, expire in watched.items():
            if key not in triggers or triggers[key].expire != expire:
                triggers[key] = ExpiryTrigger(expire, due=expire)  # new, or a new expire time
        if not any(trigger.due <= now for trigger in triggers.values()):
            return []
        found = []
        for (secret_id, revision), trigger in sorted(triggers.items()):
            if _to_the_minute(trigger.due) < now:
                trigger.due = max(trigger.due, now) + retry
                event = EventSpec("secret_expired", secret_id=secret_id, secret_revision=revision)
                if event not in unit.queue:
                    found.append((unit.name, event))
        return found

    def _due_rotations(self, unit: UnitState, managed: list[SecretState], now: datetime) -> list[tuple[str, EventSpec]]:
        # A secret whose secret-rotate is queued is out of the worker until the hook has run.
        waiting = {
            s.id: s.next_rotation
            for s in managed
            if s.next_rotation is not None and EventSpec("secret_rotate", secret_id=s.id) not in unit.queue
        }
        if not any(due <= now for due in waiting.values()):
            return []
        return [
            (unit.name, EventSpec("secret_rotate", secret_id=secret_id))
            for secret_id, due in sorted(waiting.items())
            if _to_the_minute(due) < now
        ]


def _to_the_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)
