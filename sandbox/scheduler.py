"""The event loop: each unit's queue, run through its agent, units in parallel.

Events of one unit run one at a time, in order; different units run in parallel, as on
Juju. Between two hooks of a unit, its queue may hold a pod step (replace, delete) that the
loop runs itself. Events flow only while a verb, `settle`, `wait_for_idle` or `drive_until`
drives the loop: there is no always-on controller process.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ops import testing

from sandbox import sequences, statefulset, wire
from sandbox.agent import SecretsEventReply
from sandbox.errors import SandboxError
from sandbox.kubeapi import ApiServer
from sandbox.lifecycle import PodLifecycle
from sandbox.projection import (
    ContainerSnapshot,
    absorb,
    app_data_changed,
    hidden_secrets,
    unit_view,
    visible_secret,
)
from sandbox.state import HookError, ModelState, PodAction, UnitState
from sandbox.watcher import POLL_INTERVAL, ContainerRestart, Watcher, snapshot
from sandbox.wire import EventReply, EventRequest, EventSpec

HOOK_RETRY_DELAYS = (5.0, 10.0, 20.0, 40.0, 60.0)


@dataclass
class ActionResult:
    unit: str
    action: str
    status: str  # "completed" or "failed"
    results: dict[str, Any]
    message: str = ""
    logs: list[str] = field(default_factory=list)


@dataclass
class EventRecord:
    """What one hook cost, and when it ran (the benchmarks and tests read these)."""

    unit: str
    kind: str
    total_seconds: float
    charm_seconds: float
    started: float = 0.0  # time.perf_counter() when the event was sent to the agent
    status: str = ""  # the unit's workload status after the event
    event: EventSpec | None = None

    @property
    def finished(self) -> float:
        return self.started + self.total_seconds


class Scheduler:
    def __init__(
        self, model: ModelState, lock: threading.RLock, lifecycle: PodLifecycle, watcher: Watcher, api: ApiServer
    ) -> None:
        self.model = model
        self.api = api
        self.lock = lock
        self.lifecycle = lifecycle
        self.watcher = watcher
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"model-{model.name}")
        self.running: dict[str, Future[None]] = {}  # unit -> its hook or pod step in progress
        self.restarting: dict[tuple[str, str], Future[None]] = {}  # (unit, container) -> kubelet restart
        self.action_results: dict[int, ActionResult] = {}
        self.records: list[EventRecord] = []
        self._last_poll = 0.0

    # ------------------------------------------------------------------ driving

    def step(self, only: set[str] | None = None) -> bool:
        """Look at the workloads if due, start what can start, wait a little for something to end.

        Returns whether anything (of `only`) is still running or waiting to run.
        """
        self._poll_if_due()
        self.dispatch(only)
        self._wait_a_little(sleep_if_idle=False)
        return self.active(only)

    def active(self, only: set[str] | None = None) -> bool:
        with self.lock:
            if any(only is None or unit in only for unit in self.running):
                return True
            if only is None and self.restarting:
                return True
            return any(self._ready_to_run(u) for u in self.model.units.values() if only is None or u.name in only)

    def settle(self, only: Iterable[str] | None = None, deadline: float | None = None) -> None:
        """Run queued events until none is left (or the deadline passes)."""
        names = set(only) if only is not None else None
        while self.step(names):
            if deadline is not None and time.monotonic() > deadline:
                break

    def drive_until(self, predicate: Callable[[], bool], deadline: float) -> bool:
        """Run events and watch workloads until `predicate` holds; start nothing after that."""
        while True:
            with self.lock:
                if predicate():
                    return True
            if time.monotonic() > deadline:
                return False
            if self._poll_if_due():
                with self.lock:
                    if predicate():
                        return True
            self.dispatch(None)
            self._wait_a_little(sleep_if_idle=True)

    def _poll_if_due(self) -> bool:
        if time.monotonic() - self._last_poll < POLL_INTERVAL:
            return False
        # Juju watches Pebble checks while hooks run, not only between them.
        self.poll()
        return True

    def _wait_a_little(self, sleep_if_idle: bool) -> None:
        """Until something running ends (or a poll interval passes), then collect what ended."""
        pending = list(self.running.values()) + list(self.restarting.values())
        if pending:
            wait(pending, timeout=POLL_INTERVAL, return_when=FIRST_COMPLETED)
        elif sleep_if_idle:
            time.sleep(POLL_INTERVAL)
        self.reap()

    def dispatch(self, only: set[str] | None) -> None:
        with self.lock:
            for unit in list(self.model.units.values()):
                if (only is not None and unit.name not in only) or not self._ready_to_run(unit):
                    continue
                head = unit.queue[0]
                if isinstance(head, PodAction):
                    self.running[unit.name] = self.pool.submit(self._run_pod_action, unit, head)
                else:
                    unit.agent_status = "executing"
                    self.running[unit.name] = self.pool.submit(self._run_event, unit)

    def _ready_to_run(self, unit: UnitState) -> bool:
        if unit.name in self.running or not unit.queue:
            return False
        if any(key[0] == unit.name for key in self.restarting):
            return False  # hooks wait while the kubelet restarts one of the unit's containers
        if isinstance(unit.queue[0], PodAction):
            return True
        return not (unit.error and time.monotonic() < unit.error.retry_at)

    def reap(self) -> None:
        for key, future in [(k, f) for k, f in self.running.items() if f.done()]:
            del self.running[key]
            future.result()  # a sandbox bug surfaces here, with its traceback
        for key, future in [(k, f) for k, f in self.restarting.items() if f.done()]:
            del self.restarting[key]
            future.result()
        with self.lock:
            self._forget_removed_relations()

    def poll(self) -> None:
        """What Juju's agents and the kubelet see in the workloads, turned into events and restarts."""
        self._last_poll = time.monotonic()
        with self.lock:
            # Pods being replaced, deleted or restarted are Kubernetes' business until they are back.
            units = [
                u
                for u in self.model.units.values()
                if not (u.queue and isinstance(u.queue[0], PodAction) and u.name in self.running)
                and not any(key[0] == u.name for key in self.restarting)
            ]
            containers = {u.name: dict(u.pod.containers) for u in units}
        found = self.watcher.observe(units, containers)
        with self.lock:
            for item in found:
                if isinstance(item, ContainerRestart):
                    unit = self.model.units.get(item.unit)
                    if unit is not None and (item.unit, item.container) not in self.restarting:
                        self.restarting[(item.unit, item.container)] = self.pool.submit(
                            self.lifecycle.restart_container, unit, item.container
                        )
                elif item[0] in self.model.units:
                    sequences.queue(self.model, self.model.units[item[0]], item[1])
            alive = [u for u in units if not u.dying]
            for name, event in self.watcher.due_update_status(alive) + self.watcher.due_secret_events(alive):
                sequences.queue(self.model, self.model.units[name], event)
            self._advance_rollouts()

    def _advance_rollouts(self) -> None:
        """A StatefulSet's rolling update, one pod at a time (`statefulset.py`).

        The next pod (the highest ordinal at or above the partition not on the update
        revision) is replaced once the previous replaced pod is back and ready. Lowering the
        partition lets the update go on from where it stopped.
        """
        for app in self.model.apps.values():
            if app.replacing is not None:
                unit = self.model.units.get(app.replacing)
                if unit is not None:
                    if unit.name in self.running or any(isinstance(i, PodAction) for i in unit.queue):
                        continue
                    if not self.watcher.pod_ready(unit):
                        continue
                app.replacing = None
            units = self.model.app_units(app.name)
            following = statefulset.next_to_update(app, units)
            if following is None:
                statefulset.complete_if_done(app, units)
            elif not any(isinstance(i, PodAction) for i in following.queue):  # not already being replaced
                app.replacing = following.name
                sequences.pod_replacement(self.model, following)

    def _forget_removed_relations(self) -> None:
        """A removed relation goes once every unit ran its departed and broken hooks for it."""
        for relation in [r for r in self.model.relations.values() if r.removing]:
            pending = any(
                isinstance(item, EventSpec) and item.relation_id == relation.id
                for unit in self.model.units.values()
                for item in unit.queue
            )
            if pending:
                continue
            del self.model.relations[relation.id]
            for secret in self.model.secrets.values():
                secret.grants.pop(relation.id, None)
            for unit in self.model.units.values():
                unit.members.pop(relation.id, None)

    # ------------------------------------------------------------------ one queue item

    def _run_pod_action(self, unit: UnitState, action: PodAction) -> None:
        if action.kind == "delete":
            self.lifecycle.delete_unit(unit)
            return
        with self.lock:
            unit.queue.popleft()
        self.lifecycle.replace_pod(unit, action.move_leader)

    def _run_event(self, unit: UnitState) -> None:
        with self.lock:
            spec = unit.queue[0]
            assert isinstance(spec, EventSpec)
            containers = dict(unit.pod.containers)
        snapshots = {name: snapshot(containers.get(name)) for name in unit.charm.containers}
        with self.lock:
            if self._stale(unit, spec, snapshots):
                unit.queue.popleft()
                unit.agent_status = "idle"
                self._log(unit, spec, EventReply(), note="skipped: its subject is gone")
                return
            sequences.apply_membership(self.model, unit, spec)
            rotating = self.model.secrets.get(spec.secret_id or "") if spec.kind == "secret_rotate" else None
            revision_before_rotation = rotating.latest if rotating is not None else 0
            before = unit_view(self.model, unit, snapshots)
            request = EventRequest(
                event=spec,
                state=before,
                pebble_sockets={name: str(c.socket) for name, c in containers.items()},
                app=unit.app,
                unit_id=unit.number,
                trusted=self.model.apps[unit.app].trusted,
                hidden_secrets=hidden_secrets(self.model, unit),
                # The charm container's files, lost with the pod, as the unit agent's are on
                # Juju ("charm" is the container name Juju reserves, so no workload has it).
                resource_dir=str(unit.pod.ephemeral_dir / "charm" / "resources"),
            )
        try:
            self.api.write_kubeconfig(unit)
        except SandboxError as error:  # the hook still runs: charm code then finds no API server, as in an outage
            with self.lock:
                self._log(unit, spec, EventReply(), note=f"no Kubernetes API for this hook: {error}")
        started = time.perf_counter()
        reply = self._call_agent(unit, request)
        elapsed = time.perf_counter() - started
        with self.lock:
            if reply.error is None and reply.state is not None:
                reply = self._check_leadership(unit, before, reply)
            self._log(unit, spec, reply)
            if reply.error is not None and spec.kind != "action":
                self._fail(unit, spec, reply)
                return
            unit.queue.popleft()
            unit.error = None
            if spec.kind == "action" and spec.action_id is not None:
                # An action that raised fails as a task; the unit is not in error (Juju's way).
                failure = reply.action_failure if reply.error is None else reply.error_line
                self.action_results[spec.action_id] = ActionResult(
                    unit.name,
                    spec.action or "",
                    "failed" if failure is not None else "completed",
                    dict(reply.action_results),
                    failure or "",
                    [str(line) for line in reply.action_logs],
                )
            if reply.state is not None and reply.error is None:
                removed = reply.revisions_removed if isinstance(reply, SecretsEventReply) else ()
                for target, event in absorb(self.model, unit, before, reply.state, reply.secrets_read, removed):
                    if target in self.model.units:
                        sequences.queue(self.model, self.model.units[target], event)
                if rotating is not None and spec.secret_id in self.model.secrets:
                    # The unit agent reports the rotation once the hook is committed.
                    retry = timedelta(seconds=self.model.secret_retry_delay)
                    rotating.rotated(revision_before_rotation, datetime.now(UTC), retry)
            unit.agent_status = "idle"
            unit.agent_message = ""
            unit.idle_since = time.monotonic()
            self.records.append(
                EventRecord(
                    unit.name,
                    spec.kind,
                    elapsed,
                    reply.charm_seconds,
                    started,
                    f"{unit.workload_status.name}: {unit.workload_status.message}",
                    spec,
                )
            )

    def _stale(self, unit: UnitState, spec: EventSpec, containers: dict[str, ContainerSnapshot]) -> bool:
        """Events whose subject is gone by the time they run (Juju would not deliver them)."""
        if spec.relation_id is not None and spec.relation_id not in self.model.relations:
            return True
        if spec.secret_id is not None and not visible_secret(self.model, unit, spec.secret_id):
            return True
        if spec.storage is not None and spec.storage not in unit.charm.storage:
            return True
        container = containers.get(spec.container or "")
        if spec.container is not None and container is None:
            return True
        if spec.check is not None and container is not None and not container.has_check(spec.check):
            return True  # removed from the plan, or the container restarted
        return spec.notice_id is not None and container is not None and not container.has_notice(spec.notice_id)

    def _check_leadership(self, unit: UnitState, before: testing.State, reply: EventReply) -> EventReply:
        """Juju commits a hook's application data only if the unit still leads at the end."""
        assert reply.state is not None
        still_leader = self.model.apps[unit.app].leader == unit.name
        if before.leader and not still_leader and app_data_changed(before, reply.state):
            line = "cannot write application data: the unit is no longer the leader"
            return EventReply.failure(line, line)
        return reply

    def _fail(self, unit: UnitState, spec: EventSpec, reply: EventReply) -> None:
        attempts = unit.error.attempts + 1 if unit.error else 1
        delay = HOOK_RETRY_DELAYS[min(attempts, len(HOOK_RETRY_DELAYS)) - 1]
        unit.error = HookError(spec, reply.error_line or "error", reply.error or "", attempts, time.monotonic() + delay)
        unit.agent_status = "error"
        unit.agent_message = f'hook failed: "{spec.kind}"'

    def _call_agent(self, unit: UnitState, request: EventRequest) -> EventReply:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(str(unit.pod.agent_socket))
                wire.send(conn, request)
                reply = wire.receive(conn)
        except (OSError, ConnectionError) as error:
            return EventReply.failure(f"unit agent unreachable: {error}", f"unit agent unreachable: {error}")
        if not isinstance(reply, EventReply):
            return EventReply.failure(f"unexpected agent reply {reply!r}", "unexpected agent reply")
        return reply

    def _log(self, unit: UnitState, spec: EventSpec, reply: EventReply, note: str = "") -> None:
        """The unit's charm log, hook by hook (what `juju debug-log` shows)."""
        lines = [f"{unit.name} {spec.kind}" + (f" ({note})" if note else "")]
        lines += [f"  {level} {message}" for level, message in reply.juju_log]
        if reply.error:
            lines.append(reply.error)
        unit.pod.log_dir.mkdir(parents=True, exist_ok=True)
        with open(unit.pod.log_dir / "charm.log", "a") as log:
            log.write("\n".join(lines) + "\n")

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.api.stop()
