"""A sandbox model: Juju's verbs over pods with real Pebble, events in Juju's order.

The model plays the Juju controller: it keeps the Juju-side state, decides which events
each unit gets and in which order, and hands them to the unit agents. Events of one unit
run one at a time, in order; different units run in parallel, as on Juju. Events flow while
a verb or `wait_for_idle` is running (there is no always-on controller process).
"""

from __future__ import annotations

import fcntl
import os
import pickle
import re
import shutil
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ops
from ops import testing

from sandbox import pods, wire
from sandbox.charmspec import CharmSpec
from sandbox.errors import HookFailedError, SandboxError, WaitTimeoutError
from sandbox.paths import REPO_ROOT, Artifacts, state_dir
from sandbox.projection import World, absorb, juju_unit_defaults, unit_view
from sandbox.state import AppState, RelationState, SecretState, UnitState

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
_APP_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*$")
HOOK_RETRY_DELAYS = (5.0, 10.0, 20.0, 40.0, 60.0)
POLL_INTERVAL = 0.2  # seconds between looks at Pebble checks and notices, as the Juju agent watches them
PEBBLE_IMAGES = ("apachepulsar/pulsar",)


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
    """What one hook cost: the sandbox's benchmark reads these."""

    unit: str
    kind: str
    total_seconds: float
    charm_seconds: float
    started: float = 0.0  # time.perf_counter() when the event was sent to the agent
    status: str = ""  # the unit's workload status after the event


class Model:
    """One sandbox model. Use `Model.create` for a new one, `Model.load` for an existing one."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.uuid = str(uuid.uuid4())
        self.root = root
        self.apps: dict[str, AppState] = {}
        self.units: dict[str, UnitState] = {}
        self.relations: dict[int, RelationState] = {}
        self.secrets: dict[str, SecretState] = {}
        self.next_relation_id = 0
        self.next_pod_index = 2  # .1 is the bridge
        self.next_action_id = 1
        self.update_status_interval = 300.0
        self.created_mountpoints: list[str] = []
        self.event_records: list[EventRecord] = []
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"model-{self.name}")
        self._action_results: dict[int, ActionResult] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for runtime in ("_lock", "_pool", "_action_results"):
            state.pop(runtime, None)
        state["event_records"] = []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, name: str, update_status_interval: float = 300.0) -> Model:
        """A new, empty model; leftovers of an earlier model of that name are removed first."""
        if not _NAME.match(name):
            raise SandboxError(f'invalid model name "{name}": lower-case letters, digits and dashes, max 24')
        if os.geteuid() != 0:
            raise SandboxError("the sandbox creates network namespaces: run it as root")
        root = state_dir() / name
        if root.exists() or Path(f"/run/netns/{pods.cluster_ns(name)}").exists():
            cleanup_model(name)
        Artifacts.load()  # fail early when workloads are not provisioned
        root.mkdir(parents=True)
        model = cls(name, root)
        model.update_status_interval = update_status_interval
        pods.create_cluster_network(name)
        model.save()
        return model

    @classmethod
    def load(cls, name: str) -> Model:
        path = state_dir() / name / "model.pickle"
        if not path.is_file():
            raise SandboxError(f'model "{name}" not found (deploy into it to create it)')
        with open(path, "rb") as f:
            model = pickle.load(f)  # noqa: S301 - written by this sandbox
        if not isinstance(model, Model):
            raise SandboxError(f"{path} is not a sandbox model")
        return model

    def save(self) -> None:
        with self._lock:
            tmp = self.root / "model.pickle.tmp"
            with open(tmp, "wb") as f:
                pickle.dump(self, f)
            tmp.rename(self.root / "model.pickle")

    def locked(self) -> _ModelLock:
        """Serialise verbs from several CLI processes on one model."""
        return _ModelLock(self.root / "lock")

    def destroy(self) -> None:
        """Remove every pod, namespace, process and file of the model (`juju destroy-model --force`)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for unit in list(self.units.values()):
            unit.pod.delete()
        pods.delete_netns(pods.cluster_ns(self.name))
        shutil.rmtree(pods.socket_dir(self.name), ignore_errors=True)
        mountpoints = self.created_mountpoints + [p for u in self.units.values() for p in u.pod.created_mountpoints]
        self.units.clear()
        shutil.rmtree(self.root, ignore_errors=True)
        if not any(state_dir().glob("*/model.pickle")):
            pods.remove_mountpoints(mountpoints)

    # ------------------------------------------------------------------ verbs

    def deploy(
        self,
        charm_dir: Path | str,
        app: str | None = None,
        num_units: int = 1,
        config: dict[str, Any] | None = None,
        trust: bool = False,
        settle: bool = True,
    ) -> AppState:
        """Deploy a charm and run its units' hooks.

        With `settle=False`, return once the pods run, as `juju deploy` returns before any
        hook ran; the next verb or wait_for_idle runs them.
        """
        charm = CharmSpec.load(Path(charm_dir).resolve())
        name = app or charm.name
        if not _APP_NAME.match(name):
            raise SandboxError(f'invalid application name "{name}"')
        if name in self.apps:
            raise SandboxError(f'application "{name}" already exists')
        if num_units < 1:
            raise SandboxError("deploy needs at least one unit (-n 1)")
        config = dict(config or {})
        charm.validate_config(config)
        with self._lock:
            state = AppState(name=name, charm=charm, config=config, trusted=trust)
            self.apps[name] = state
            for peer in charm.peers:
                self._new_relation(peer.interface, [(name, peer.name)])
        self.add_unit(name, num_units, settle=settle)
        return state

    def add_unit(self, app: str, num_units: int = 1, settle: bool = True) -> list[str]:
        state = self._app(app)
        if num_units < 1:
            raise SandboxError("add-unit needs at least one unit")
        added = []
        for _ in range(num_units):
            added.append(self._create_unit(state))
        self._refresh_hosts()
        bring_up: list[Future[None]] = [self._pool.submit(self._start_pod, self.units[u]) for u in added]
        for future in bring_up:
            future.result()
        with self._lock:
            for unit_name in added:
                self._queue_unit_arrival(self.units[unit_name])
        if settle:
            self.settle()
        return added

    def remove_unit(self, unit_name: str) -> None:
        unit = self._unit(unit_name)
        app = self.apps[unit.app]
        with self._lock:
            for relation in self._relations_of(unit.app):
                if unit.name not in relation.unit_data:
                    continue
                remote_app = relation.other_app(unit.app)
                for other in self._joined(relation, remote_app):
                    if other.name == unit.name:
                        continue
                    self._queue(
                        other,
                        "relation_departed",
                        relation_id=relation.id,
                        remote_unit=unit.number,
                        departing_unit=unit.name,
                    )
                    self._queue(
                        unit,
                        "relation_departed",
                        relation_id=relation.id,
                        remote_unit=other.number,
                        departing_unit=unit.name,
                    )
                self._queue(unit, "relation_broken", relation_id=relation.id)
            for storage in app.charm.storage:
                self._queue(unit, "storage_detaching", storage=storage, index=0)
            self._queue(unit, "stop")
            self._queue(unit, "remove")
        self.settle(units=[unit.name])
        with self._lock:
            for relation in self.relations.values():
                relation.unit_data.pop(unit.name, None)
            app.units.remove(unit.name)
            del self.units[unit.name]
            if app.leader == unit.name:
                app.leader = app.units[0] if app.units else None
                if app.leader:
                    self._queue(self.units[app.leader], "leader_elected")
        unit.pod.delete()
        self.created_mountpoints += unit.pod.created_mountpoints
        self._refresh_hosts()
        self.settle()

    def integrate(self, first: str, second: str, settle: bool = True) -> RelationState:
        (app_a, ep_a), (app_b, ep_b) = self._match_endpoints(first, second)
        with self._lock:
            relation = self._new_relation(
                self.apps[app_a].charm.endpoints[ep_a].interface, [(app_a, ep_a), (app_b, ep_b)]
            )
            units = [self.units[u] for a in (app_a, app_b) for u in self.apps[a].units]
            for unit in units:
                self._queue(unit, "relation_created", relation_id=relation.id)
            for unit in units:
                self._enter_scope(unit, relation)
        if settle:
            self.settle()
        return relation

    def remove_relation(self, first: str, second: str) -> None:
        (app_a, ep_a), (app_b, ep_b) = self._match_endpoints(first, second, existing=True)
        relation = next(
            r for r in self.relations.values() if sorted(r.endpoints) == sorted([(app_a, ep_a), (app_b, ep_b)])
        )
        with self._lock:
            for app, remote in ((app_a, app_b), (app_b, app_a)):
                for unit in self._joined(relation, app):
                    for other in self._joined(relation, remote):
                        self._queue(
                            unit,
                            "relation_departed",
                            relation_id=relation.id,
                            remote_unit=other.number,
                            departing_unit=other.name,
                        )
                    self._queue(unit, "relation_broken", relation_id=relation.id)
        self.settle()
        with self._lock:
            del self.relations[relation.id]
            for secret in self.secrets.values():
                secret.grants.pop(relation.id, None)

    def config(self, app: str, values: dict[str, Any] | None = None, reset: list[str] | None = None) -> dict[str, Any]:
        state = self._app(app)
        if values is None and not reset:
            return {**state.charm.config_defaults(), **state.config}
        values = dict(values or {})
        state.charm.validate_config(values)
        for key in reset or []:
            state.charm.validate_config({})
            if key not in state.charm.config_options:
                raise SandboxError(f'unknown option "{key}" for charm "{state.charm.name}"')
        with self._lock:
            before = {**state.charm.config_defaults(), **state.config}
            state.config.update(values)
            for key in reset or []:
                state.config.pop(key, None)
            after = {**state.charm.config_defaults(), **state.config}
            if after != before:
                for unit_name in state.units:
                    self._queue(self.units[unit_name], "config_changed")
        self.settle()
        return after

    def run(
        self, unit_name: str, action: str, params: dict[str, Any] | None = None, timeout: float = 600.0
    ) -> ActionResult:
        unit = self._unit(unit_name)
        typed = self.apps[unit.app].charm.validate_action(action, dict(params or {}))
        with self._lock:
            action_id = self.next_action_id
            self.next_action_id += 1
            self._queue(unit, "action", name=action, params=typed, action_id=action_id)
        deadline = time.monotonic() + timeout
        while action_id not in self._action_results:
            self.settle(units=[unit.name], deadline=deadline)
            if unit.error and action_id not in self._action_results:
                raise HookFailedError(self._error_line(unit))
            if time.monotonic() > deadline:
                raise WaitTimeoutError(f"action {action} on {unit.name} did not finish in {timeout:.0f}s")
        return self._action_results.pop(action_id)

    def restart_pod(self, unit_name: str) -> None:
        """Delete the pod as Kubernetes would: stop hook, processes killed, non-storage files lost."""
        unit = self._unit(unit_name)
        with self._lock:
            self._queue(unit, "stop")
        self.settle(units=[unit.name])
        unit.pod.stop()
        unit.pod.wipe_ephemeral()
        unit.agent_status = "allocating"
        unit.check_status.clear()
        unit.notices_seen.clear()
        self._start_pod(unit)
        with self._lock:
            # A new pod runs a new unit agent: Juju replays this sequence on pod churn.
            for storage in self.apps[unit.app].charm.storage:
                self._queue(unit, "storage_attached", storage=storage, index=0)
            for kind in ("upgrade_charm", "config_changed", "start"):
                self._queue(unit, kind)
            self._queue_pebble_ready(unit)
        self.settle()

    def status(self) -> str:
        from sandbox.status import render

        with self._lock:
            return render(self)

    def pebble(self, unit_name: str, container: str) -> ops.pebble.Client:
        """A Pebble client for a unit's container, for tests that look inside the workload."""
        unit = self._unit(unit_name)
        if container not in unit.pod.containers:
            raise SandboxError(f'unit {unit_name} has no running container "{container}"')
        return ops.pebble.Client(socket_path=str(unit.pod.containers[container].socket))

    def address(self, unit_name: str) -> str:
        return self._unit(unit_name).pod.address

    def fqdn(self, unit_name: str) -> str:
        return self._unit(unit_name).pod.fqdn

    def netns(self, unit_name: str) -> str:
        return self._unit(unit_name).pod.netns

    def leader(self, app: str) -> str | None:
        return self._app(app).leader

    def relation_data(self, relation_id: int) -> RelationState:
        if relation_id not in self.relations:
            raise SandboxError(f"no relation {relation_id}")
        return self.relations[relation_id]

    # ------------------------------------------------------------------ waiting

    def wait_for_idle(
        self,
        apps: list[str] | None = None,
        status: str | None = "active",
        timeout: float = 300.0,
        idle_period: float = 2.0,
        raise_on_error: bool = True,
    ) -> None:
        """Drive the model until every unit of `apps` is idle (and in `status`).

        Fails at once on a hook error, and on timeout names each unit still not settled and why.
        """
        names = apps or list(self.apps)
        for app in names:
            self._app(app)
        deadline = time.monotonic() + timeout
        while True:
            self.settle(deadline=deadline)
            self._poll_workloads()
            self._due_update_status()
            now = time.monotonic()
            units = [self.units[u] for app in names for u in self.apps[app].units]
            errored = [u for u in units if u.error]
            if errored and raise_on_error:
                raise HookFailedError("; ".join(self._error_line(u) for u in errored))
            pending = [u for u in units if not self._settled(u, status, now, idle_period)]
            if not pending:
                self.save()
                return
            if now > deadline:
                self.save()
                raise WaitTimeoutError(
                    f"not idle after {timeout:.0f}s: " + "; ".join(self._describe(u) for u in pending)
                )
            time.sleep(POLL_INTERVAL)

    def _settled(self, unit: UnitState, status: str | None, now: float, idle_period: float) -> bool:
        if unit.queue or unit.busy or unit.error:
            return False
        if now - unit.idle_since < idle_period:
            return False
        return status is None or unit.workload_status.name == status

    def _describe(self, unit: UnitState) -> str:
        message = f": {unit.workload_status.message}" if unit.workload_status.message else ""
        agent = unit.agent_status + (f" ({len(unit.queue)} queued)" if unit.queue else "")
        return f"{unit.name} is {unit.workload_status.name}{message} [agent {agent}]"

    def _error_line(self, unit: UnitState) -> str:
        assert unit.error is not None
        return f'{unit.name}: hook failed: "{unit.error["event"]["kind"]}": {unit.error["line"]}'

    # ------------------------------------------------------------------ the event loop

    def settle(self, units: list[str] | None = None, deadline: float | None = None) -> None:
        """Run queued events until none is left (or the deadline passes); units run in parallel."""
        running: dict[Future[None], str] = {}
        last_poll = time.monotonic()
        while True:
            if time.monotonic() - last_poll >= POLL_INTERVAL:
                # Juju watches Pebble checks while hooks run, not only between them.
                self._poll_workloads()
                last_poll = time.monotonic()
            with self._lock:
                for unit in list(self.units.values()):
                    if units is not None and unit.name not in units:
                        continue
                    if unit.name in running.values() or not unit.queue:
                        continue
                    if unit.error and time.monotonic() < unit.error["retry_at"]:
                        continue
                    unit.agent_status = "executing"
                    running[self._pool.submit(self._run_next, unit)] = unit.name
            if not running:
                break
            done, _ = wait(list(running), timeout=POLL_INTERVAL, return_when=FIRST_COMPLETED)
            for future in done:
                running.pop(future)
                future.result()
            if deadline is not None and time.monotonic() > deadline and not running:
                break
        self.save()

    def _run_next(self, unit: UnitState) -> None:
        with self._lock:
            spec = unit.queue[0]
            before = self._view(unit)
            sockets = {name: str(c.socket) for name, c in unit.pod.containers.items()}
            request = {
                "kind": "event",
                "event": spec,
                "state": before,
                "pebble_sockets": sockets,
                "app": unit.app,
                "unit_id": unit.number,
                "trusted": self.apps[unit.app].trusted,
            }
        started = time.perf_counter()
        reply = self._call_agent(unit, request)
        elapsed = time.perf_counter() - started
        with self._lock:
            self._log(unit, spec, reply)
            if reply.get("error"):
                attempts = unit.error["attempts"] + 1 if unit.error else 1
                delay = HOOK_RETRY_DELAYS[min(attempts, len(HOOK_RETRY_DELAYS)) - 1]
                unit.error = {
                    "event": spec,
                    "line": reply.get("error_line", "error"),
                    "trace": reply["error"],
                    "attempts": attempts,
                    "retry_at": time.monotonic() + delay,
                }
                unit.agent_status = "error"
                unit.agent_message = f'hook failed: "{spec["kind"].replace("_", "-")}"'
                return
            unit.queue.popleft()
            unit.error = None
            if spec["kind"] == "action":
                status = "failed" if reply.get("action_failure") is not None else "completed"
                self._action_results[spec["action_id"]] = ActionResult(
                    unit.name,
                    spec["name"],
                    status,
                    dict(reply.get("action_results") or {}),
                    reply.get("action_failure") or "",
                    [str(line) for line in reply.get("action_logs", [])],
                )
            if reply.get("state") is not None:
                for target, event in absorb(self._world(), unit, before, reply["state"]):
                    if target in self.units:
                        self._queue(self.units[target], event.pop("kind"), **event)
            unit.agent_status = "idle"
            unit.agent_message = ""
            unit.idle_since = time.monotonic()
            self.event_records.append(
                EventRecord(
                    unit.name,
                    spec["kind"],
                    elapsed,
                    reply.get("charm_seconds", 0.0),
                    started,
                    f"{unit.workload_status.name}: {unit.workload_status.message}",
                )
            )

    def _call_agent(self, unit: UnitState, request: dict[str, Any]) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(str(unit.pod.agent_socket))
                wire.send(conn, request)
                return wire.receive(conn)
        except (OSError, ConnectionError) as error:
            return {
                "error": f"unit agent unreachable: {error}",
                "error_line": f"unit agent unreachable: {error}",
            }

    def _log(self, unit: UnitState, spec: dict[str, Any], reply: dict[str, Any]) -> None:
        lines = [f"{unit.name} {spec['kind']}"] + [f"  {level} {msg}" for level, msg in reply.get("juju_log", [])]
        if reply.get("error"):
            lines.append(reply["error"])
        with open(unit.pod.log_dir / "charm.log", "a") as log:
            log.write("\n".join(lines) + "\n")

    def _view(self, unit: UnitState) -> testing.State:
        can_connect = {name: c.socket.exists() and c.process.alive() for name, c in unit.pod.containers.items()}
        check_infos: dict[str, frozenset[testing.CheckInfo]] = {}
        notices: dict[str, list[testing.Notice]] = {}
        for name, ok in can_connect.items():
            if not ok:
                continue
            client = ops.pebble.Client(socket_path=str(unit.pod.containers[name].socket))
            try:
                check_infos[name] = frozenset(
                    testing.CheckInfo(
                        c.name,
                        level=c.level,
                        status=ops.pebble.CheckStatus(c.status),
                        failures=c.failures,
                        threshold=c.threshold,
                    )
                    for c in client.get_checks()
                )
                notices[name] = [
                    testing.Notice(n.key, id=n.id, type=n.type)
                    for n in client.get_notices(types=[ops.pebble.NoticeType.CUSTOM])
                ]
            except (ops.pebble.ConnectionError, ops.pebble.APIError):
                can_connect[name] = False
        return unit_view(self._world(), unit, can_connect, check_infos, notices)

    def _world(self) -> World:
        return World(self.name, self.uuid, self.apps, self.units, self.relations, self.secrets)

    def _queue(self, unit: UnitState, kind: str, **fields: Any) -> None:
        event = {"kind": kind, **fields}
        # Juju coalesces a relation-changed that is already pending for the same remote.
        if kind == "relation_changed" and event in list(unit.queue)[1:]:
            return
        unit.queue.append(event)

    # ------------------------------------------------------------------ watching the workloads

    def _poll_workloads(self) -> None:
        """Turn Pebble check changes and custom notices into events, as Juju does."""
        with self._lock:
            for unit in self.units.values():
                for name, container in unit.pod.containers.items():
                    if not container.socket.exists():
                        continue
                    client = ops.pebble.Client(socket_path=str(container.socket))
                    try:
                        checks = client.get_checks()
                        notices = client.get_notices(types=[ops.pebble.NoticeType.CUSTOM])
                    except (ops.pebble.ConnectionError, ops.pebble.APIError):
                        continue
                    for check in checks:
                        key = (name, check.name)
                        # Statuses are kept as their string values: "up", "down" (or "inactive").
                        old = unit.check_status.get(key, _UP)
                        new = _status_value(check.status)
                        unit.check_status[key] = new
                        if old == _UP and new == _DOWN:
                            self._queue(unit, "pebble_check_failed", container=name, check=check.name)
                        elif old == _DOWN and new == _UP:
                            self._queue(unit, "pebble_check_recovered", container=name, check=check.name)
                    for notice in notices:
                        stamp = f"{notice.last_repeated.timestamp():.6f}:{notice.id}"
                        if stamp > unit.notices_seen.get(f"{name}:{notice.id}", ""):
                            unit.notices_seen[f"{name}:{notice.id}"] = stamp
                            self._queue(unit, "pebble_custom_notice", container=name, notice_id=notice.id)

    def _due_update_status(self) -> None:
        now = time.monotonic()
        with self._lock:
            for unit in self.units.values():
                if now - unit.last_update_status >= self.update_status_interval and not unit.queue:
                    unit.last_update_status = now
                    self._queue(unit, "update_status")

    # ------------------------------------------------------------------ units and pods

    def _create_unit(self, app: AppState) -> str:
        with self._lock:
            number = app.next_number
            app.next_number += 1
            name = f"{app.name}/{number}"
            pod = pods.Pod(self.name, name, self.next_pod_index, self.root / "pods" / name.replace("/", "-"))
            self.next_pod_index += 1
            unit = UnitState(name=name, app=app.name, number=number, pod=pod)
            unit.last_update_status = time.monotonic()
            self.units[name] = unit
            app.units.append(name)
            if app.leader is None:
                app.leader = name
        pod.create_network()
        return name

    def _refresh_hosts(self) -> None:
        entries = [(u.pod.address, u.pod.fqdn, u.pod.hostname) for u in self.units.values()]
        for unit in self.units.values():
            unit.pod.write_hosts(entries)

    def _start_pod(self, unit: UnitState) -> None:
        artifacts = Artifacts.load()
        charm = self.apps[unit.app].charm
        for name, spec in charm.containers.items():
            image = _image_tree(spec.upstream_source, artifacts)
            container = unit.pod.start_container(name, artifacts.pebble, image, spec.mounts)
            unit.pod.wait_pebble(container)
        env = {
            "PATH": pods.HOST_PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        unit.pod.start_agent(charm.root, env)
        unit.agent_status = "idle"

    def _queue_unit_arrival(self, unit: UnitState) -> None:
        """Juju's sequence for a new unit, then its entry into every relation of its app."""
        app = self.apps[unit.app]
        for storage in app.charm.storage:
            self._queue(unit, "storage_attached", storage=storage, index=0)
        self._queue(unit, "install")
        relations = self._relations_of(unit.app)
        for relation in relations:
            self._queue(unit, "relation_created", relation_id=relation.id)
        if app.leader == unit.name:
            self._queue(unit, "leader_elected")
        self._queue(unit, "config_changed")
        self._queue(unit, "start")
        self._queue_pebble_ready(unit)
        for relation in relations:
            self._enter_scope(unit, relation)

    def _queue_pebble_ready(self, unit: UnitState) -> None:
        for name in unit.pod.containers:
            self._queue(unit, "pebble_ready", container=name)

    def _enter_scope(self, unit: UnitState, relation: RelationState) -> None:
        """The unit joins the relation: each side sees the other's units join, then change."""
        relation.unit_data.setdefault(unit.name, juju_unit_defaults(unit))
        for other in self._joined(relation, relation.other_app(unit.app)):
            if other.name == unit.name:
                continue
            for kind in ("relation_joined", "relation_changed"):
                self._queue(other, kind, relation_id=relation.id, remote_unit=unit.number)
                self._queue(unit, kind, relation_id=relation.id, remote_unit=other.number)

    def _new_relation(self, interface: str, endpoints: list[tuple[str, str]]) -> RelationState:
        relation = RelationState(self.next_relation_id, interface, endpoints)
        self.next_relation_id += 1
        self.relations[relation.id] = relation
        return relation

    def _relations_of(self, app: str) -> list[RelationState]:
        return [r for r in self.relations.values() if any(owner == app for owner, _ in r.endpoints)]

    def _joined(self, relation: RelationState, app: str) -> list[UnitState]:
        return [self.units[u] for u in self.apps[app].units if u in relation.unit_data and u in self.units]

    def _match_endpoints(
        self, first: str, second: str, existing: bool = False
    ) -> tuple[tuple[str, str], tuple[str, str]]:
        app_a, _, want_a = first.partition(":")
        app_b, _, want_b = second.partition(":")
        charm_a, charm_b = self._app(app_a).charm, self._app(app_b).charm
        if app_a == app_b:
            raise SandboxError("an application cannot be integrated with itself (peer relations are automatic)")
        matches = []
        for ep_a in charm_a.endpoints.values():
            for ep_b in charm_b.endpoints.values():
                if (want_a and ep_a.name != want_a) or (want_b and ep_b.name != want_b):
                    continue
                roles = {ep_a.role, ep_b.role}
                if ep_a.interface == ep_b.interface and roles == {"provides", "requires"}:
                    matches.append(((app_a, ep_a.name), (app_b, ep_b.name)))
        if not matches:
            raise SandboxError(f"no compatible endpoints between {first} and {second}")
        if len(matches) > 1:
            options = ", ".join(f"{a[0]}:{a[1]} {b[0]}:{b[1]}" for a, b in matches)
            raise SandboxError(f"ambiguous integration {first} {second}; specify endpoints: {options}")
        match = matches[0]
        exists = any(sorted(r.endpoints) == sorted(match) for r in self.relations.values())
        if existing and not exists:
            raise SandboxError(f'relation "{first} {second}" not found')
        if not existing and exists:
            raise SandboxError(f'relation "{match[0][0]}:{match[0][1]} {match[1][0]}:{match[1][1]}" already exists')
        if not existing:
            for app, endpoint in match:
                limit = self.apps[app].charm.endpoints[endpoint].limit
                used = sum(1 for r in self.relations.values() if (app, endpoint) in r.endpoints)
                if limit is not None and used >= limit:
                    raise SandboxError(f'endpoint "{app}:{endpoint}" is limited to {limit} relation(s)')
        return match

    def _app(self, name: str) -> AppState:
        if name not in self.apps:
            raise SandboxError(f'application "{name}" not found')
        return self.apps[name]

    def _unit(self, name: str) -> UnitState:
        if name not in self.units:
            raise SandboxError(f'unit "{name}" not found')
        return self.units[name]


_UP = ops.pebble.CheckStatus.UP.value
_DOWN = ops.pebble.CheckStatus.DOWN.value


def _status_value(status: ops.pebble.CheckStatus | str) -> str:
    return status.value if isinstance(status, ops.pebble.CheckStatus) else status


class _ModelLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: Any = None

    def __enter__(self) -> None:
        self.file = open(self.path, "a")
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def _image_tree(upstream_source: str | None, artifacts: Artifacts) -> pods.ImageTree:
    """The local stand-in for a container image: the Pulsar tree at /pulsar for Pulsar images."""
    env = {
        "JAVA_HOME": str(artifacts.java_home),
        "PATH": f"{artifacts.workload_python.parent}:{artifacts.java_home}/bin:{pods.HOST_PATH}",
    }
    if upstream_source and upstream_source.startswith(PEBBLE_IMAGES):
        return pods.ImageTree(trees={"/pulsar": artifacts.pulsar_home}, env=env)
    return pods.ImageTree(env=env)


def cleanup_model(name: str) -> None:
    """Remove whatever an earlier run of model `name` left, even if it crashed mid-way."""
    root = state_dir() / name
    path = root / "model.pickle"
    if path.is_file():
        try:
            Model.load(name).destroy()
        except Exception as error:  # noqa: BLE001 - a broken leftover still has to go
            print(
                f"warning: leftover model {name} could not be loaded ({error}); removing its namespaces",
                file=sys.stderr,
            )
    prefix = pods.cluster_ns(name)
    for ns in Path("/run/netns").glob(f"{prefix}*") if Path("/run/netns").exists() else []:
        if ns.name == prefix or ns.name.startswith(prefix + "-"):
            pods.kill_netns_processes(ns.name)
            pods.delete_netns(ns.name)
    shutil.rmtree(pods.socket_dir(name), ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


def list_models() -> list[str]:
    return sorted(p.parent.name for p in state_dir().glob("*/model.pickle"))
