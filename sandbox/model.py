"""A sandbox model: Juju's verbs over pods with real Pebble, events in Juju's order.

`Model` plays the Juju controller and the Kubernetes control plane for one model. Its verbs
change the Juju-side state (`state.py`) and queue the events Juju would send (`sequences.py`);
the event loop (`scheduler.py`) runs them through each unit's agent, while the workloads are
watched as Juju's agents and the kubelet watch them (`watcher.py`) and pods come and go as a
StatefulSet's do (`lifecycle.py`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ops

from sandbox import faults, persistence, pods, procs, sequences, statefulset, volumes
from sandbox.charmspec import CharmSpec, check_requirements
from sandbox.errors import HookFailedError, SandboxError, WaitTimeoutError
from sandbox.kubeapi import ApiServer, new_token
from sandbox.lifecycle import PodLifecycle, image_tree
from sandbox.paths import Artifacts, state_dir
from sandbox.projection import juju_unit_defaults
from sandbox.scenario_compat import secret_key
from sandbox.scheduler import ActionResult, EventRecord, Scheduler
from sandbox.state import (
    AppState,
    ImageRevision,
    ModelState,
    RelationState,
    ResourceRevision,
    SecretState,
    UnitState,
)
from sandbox.statefulset import StatefulSetView
from sandbox.status import render
from sandbox.watcher import POLL_INTERVAL, Watcher
from sandbox.wire import EventSpec

__all__ = ["ActionResult", "EventRecord", "Model", "StatefulSetView"]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
_APP_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
NAMED_UNIT_REMOVAL = "k8s models do not support removing named units.\nInstead specify an application with --num-units."
# Juju's rules: a user secret's name, and the keys of any secret's content.
_SECRET_NAME = re.compile(r"^[a-z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$")
_SECRET_KEY = re.compile(r"^([a-z](?:-?[a-z0-9]){2,})$")


class Model:
    """One sandbox model. Use `Model.create` for a new one, `Model.load` for an existing one."""

    def __init__(self, state: ModelState) -> None:
        self.state = state
        self._lock = threading.RLock()
        self._lifecycle = PodLifecycle(state, self._lock)
        self._watcher = Watcher(state)
        self._api = ApiServer(state, self._lock, self._watcher.pod_ready)
        self._scheduler = Scheduler(state, self._lock, self._lifecycle, self._watcher, self._api)
        self._adopt_revisions()

    # ------------------------------------------------------------------ the model's state

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def uuid(self) -> str:
        return self.state.uuid

    @property
    def root(self) -> Path:
        return self.state.root

    @property
    def apps(self) -> dict[str, AppState]:
        return self.state.apps

    @property
    def units(self) -> dict[str, UnitState]:
        return self.state.units

    @property
    def relations(self) -> dict[int, RelationState]:
        return self.state.relations

    @property
    def secrets(self) -> dict[str, SecretState]:
        return self.state.secrets

    @property
    def update_status_interval(self) -> float:
        return self.state.update_status_interval

    @update_status_interval.setter
    def update_status_interval(self, seconds: float) -> None:
        self.state.update_status_interval = seconds

    @property
    def probe_period(self) -> float:
        """Seconds between the kubelet's probes of each workload container (Juju sets 5)."""
        return self.state.probe_period

    @probe_period.setter
    def probe_period(self, seconds: float) -> None:
        self.state.probe_period = seconds

    @property
    def secret_retry_delay(self) -> float:
        """Seconds before Juju sends secret-expired or secret-rotate again to an owner that did nothing (300)."""
        return self.state.secret_retry_delay

    @secret_retry_delay.setter
    def secret_retry_delay(self, seconds: float) -> None:
        self.state.secret_retry_delay = seconds

    @property
    def event_records(self) -> list[EventRecord]:
        """Every hook this `Model` object ran, in order of completion (not saved)."""
        return self._scheduler.records

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls, name: str, update_status_interval: float = 300.0, cluster_domain: str = pods.DEFAULT_CLUSTER_DOMAIN
    ) -> Model:
        """A new, empty model; leftovers of an earlier model of that name are removed first.

        `cluster_domain` is the Kubernetes cluster's DNS domain: every pod's FQDN, hosts file
        and resolv.conf search list use it.
        """
        if not _NAME.match(name):
            raise SandboxError(f'invalid model name "{name}": lower-case letters, digits and dashes, max 24')
        if not _DOMAIN.match(cluster_domain):
            raise SandboxError(f'invalid cluster domain "{cluster_domain}"')
        if os.geteuid() != 0:
            raise SandboxError("the sandbox creates network namespaces: run it as root")
        root = state_dir() / name
        if root.exists() or Path(f"/run/netns/{pods.cluster_ns(name)}").exists():
            persistence.cleanup_model(name)
        Artifacts.load()  # fail early when workloads are not provisioned
        root.mkdir(parents=True)
        state = ModelState(
            name=name,
            uuid=str(uuid.uuid4()),
            root=root,
            cluster_domain=cluster_domain,
            update_status_interval=update_status_interval,
        )
        pods.create_cluster_network(name)
        model = cls(state)
        model.save()
        return model

    @classmethod
    def load(cls, name: str) -> Model:
        return cls(persistence.load(name))

    def save(self) -> None:
        with self._lock:
            persistence.save(self.state)

    def locked(self) -> persistence.ModelLock:
        """Serialise verbs from several CLI processes on one model."""
        return persistence.ModelLock(self.root / "lock")

    def destroy(self) -> None:
        """Remove every pod, namespace, process and file of the model (`juju destroy-model --force`)."""
        self._scheduler.shutdown()
        persistence.destroy(self.state)

    # ------------------------------------------------------------------ verbs

    def deploy(
        self,
        charm_dir: Path | str,
        app: str | None = None,
        num_units: int = 1,
        config: dict[str, Any] | None = None,
        trust: bool = False,
        settle: bool = True,
        resources: dict[str, Path | str] | None = None,
    ) -> AppState:
        """Deploy a charm and run its units' hooks.

        `resources` maps file resources to files to upload (`--resource NAME=PATH`), and
        oci-image resources to image references (`--resource NAME=REPOSITORY:TAG`). As for a
        local charm on Juju, a file resource left out is simply not there (resource-get fails);
        an image left out is the charm's upstream-source.

        With `settle=False`, return once the pods run, as `juju deploy` returns before any
        hook ran; the next verb or wait_for_idle runs them.
        """
        charm = CharmSpec.load(Path(charm_dir).resolve())
        check_requirements(charm)
        name = app or charm.name
        if not _APP_NAME.match(name):
            raise SandboxError(f'invalid application name "{name}"')
        if name in self.apps:
            raise SandboxError(f'application "{name}" already exists')
        if num_units < 1:
            raise SandboxError("deploy needs at least one unit (-n 1)")
        config = dict(config or {})
        charm.validate_config(config)
        uploads = {key: self._resource_source(charm, key, path) for key, path in (resources or {}).items()}
        with self._lock:
            state = AppState(name=name, charm=charm, config=config, trusted=trust, api_token=new_token())
            self.apps[name] = state
            for key, source in uploads.items():
                self._store_resource(state, key, source)
            statefulset.new_template(state, charm)
            for peer in charm.peers:
                self._new_relation(peer.interface, [(name, peer.name)])
        self.add_unit(name, num_units, settle=settle)
        return state

    def add_unit(self, app: str, num_units: int = 1, settle: bool = True) -> list[str]:
        """Scale up: new units take the lowest free ordinals (a removed unit's name, FQDN and storage)."""
        state = self._app(app)
        if num_units < 1:
            raise SandboxError("add-unit needs at least one unit")
        added = [self._lifecycle.create_unit(state) for _ in range(num_units)]
        self._lifecycle.refresh_hosts()
        with ThreadPoolExecutor(max_workers=num_units) as starting:
            for started in [starting.submit(self._lifecycle.start_pod, unit) for unit in added]:
                started.result()
        with self._lock:
            for unit in added:
                sequences.unit_arrival(self.state, unit, juju_unit_defaults(unit.pod.address))
        if settle:
            self.settle()
        return [unit.name for unit in added]

    def remove_unit(self, app: str, num_units: int = 1, settle: bool = True) -> list[str]:
        """Scale down, as `juju remove-unit APP --num-units N` on Kubernetes: the highest ordinals go.

        Each dying unit runs its teardown hooks while the others see it depart; its pod goes
        when its hooks end. Returns the units being removed.
        """
        if "/" in app:
            raise SandboxError(NAMED_UNIT_REMOVAL)
        if num_units < 1:
            raise SandboxError("specify the number of units (> 0) to remove using --num-units")
        self._app(app)
        with self._lock:
            alive = self.state.alive_units(app)
            if num_units > len(alive):
                raise SandboxError(f'cannot remove {num_units} units: application "{app}" has {len(alive)}')
            dying = sorted(alive, key=lambda u: u.number)[-num_units:]
            for unit in dying:
                unit.dying = True  # before any hook runs: planned_units() leaves them all out
            for unit in dying:
                sequences.unit_teardown(self.state, unit)
        if settle:
            self.settle()
        return [unit.name for unit in dying]

    def integrate(self, first: str, second: str, settle: bool = True) -> RelationState:
        (app_a, ep_a), (app_b, ep_b) = self._match_endpoints(first, second)
        with self._lock:
            relation = self._new_relation(
                self.apps[app_a].charm.endpoints[ep_a].interface, [(app_a, ep_a), (app_b, ep_b)]
            )
            defaults = {
                u.name: juju_unit_defaults(u.pod.address) for a in (app_a, app_b) for u in self.state.alive_units(a)
            }
            sequences.integrate(self.state, relation, defaults)
        if settle:
            self.settle()
        return relation

    def remove_relation(self, first: str, second: str, settle: bool = True) -> None:
        with self._lock:
            sequences.remove_relation(self.state, self.relation(first, second))
        if settle:
            self.settle()

    def relation(self, first: str, second: str) -> RelationState:
        """The live relation between two applications (or `app:endpoint`s), as `juju status --relations` lists it."""
        (app_a, ep_a), (app_b, ep_b) = self._match_endpoints(first, second, existing=True)
        return next(
            r
            for r in self.relations.values()
            if sorted(r.endpoints) == sorted([(app_a, ep_a), (app_b, ep_b)]) and not r.removing
        )

    def config(
        self,
        app: str,
        values: dict[str, Any] | None = None,
        reset: list[str] | None = None,
        settle: bool = True,
    ) -> dict[str, Any]:
        """Show or change an application's config; a change queues config-changed on its units."""
        state = self._app(app)
        if values is None and not reset:
            return {**state.charm.config_defaults(), **state.config}
        values = dict(values or {})
        state.charm.validate_config(values)
        for key in reset or []:
            if key not in state.charm.config_options:
                raise SandboxError(f'unknown option "{key}" for charm "{state.charm.name}"')
        with self._lock:
            before = {**state.charm.config_defaults(), **state.config}
            state.config.update(values)
            for key in reset or []:
                state.config.pop(key, None)
            after = {**state.charm.config_defaults(), **state.config}
            if after != before:
                sequences.config_changed(self.state, app)
        if settle:
            self.settle()
        return after

    def run(
        self, unit_name: str, action: str, params: dict[str, Any] | None = None, timeout: float = 600.0
    ) -> ActionResult:
        unit = self._unit(unit_name)
        if unit.dying:
            raise SandboxError(f'unit "{unit_name}" is being removed')
        charm = unit.charm
        typed = charm.validate_action(action, dict(params or {}))
        undeclared = set(typed) - set((charm.actions[action] or {}).get("params") or {})
        if undeclared:
            # Juju passes them on (unless additionalProperties is false); ops.testing's
            # consistency check refuses them, so the sandbox refuses them here, clearly.
            raise SandboxError(f'action "{action}" has no parameter "{sorted(undeclared)[0]}" in its schema')
        with self._lock:
            action_id = self.state.next_action_id
            self.state.next_action_id += 1
            sequences.queue(self.state, unit, EventSpec("action", action=action, params=typed, action_id=action_id))
        deadline = time.monotonic() + timeout
        while action_id not in self._scheduler.action_results:
            self._scheduler.settle([unit.name], deadline=deadline)
            if unit.error and action_id not in self._scheduler.action_results:
                raise HookFailedError(self._error_line(unit))
            if time.monotonic() > deadline:
                raise WaitTimeoutError(f"action {action} on {unit.name} did not finish in {timeout:.0f}s")
        self.save()
        return self._scheduler.action_results.pop(action_id)

    def restart_pod(self, unit_name: str, move_leader: bool = False, settle: bool = True) -> None:
        """Delete the unit's pod as Kubernetes would, and let it come back.

        The stop hook runs, processes are killed, files outside storage are lost; the new
        pod's agent runs upgrade-charm, config-changed, start, pebble-ready.

        With `move_leader`, a leader's leadership goes to another unit while its pod is down
        (as when its lease lapses on Juju).
        """
        unit = self._unit(unit_name)
        if unit.dying:
            raise SandboxError(f'unit "{unit_name}" is being removed')
        with self._lock:
            sequences.pod_replacement(self.state, unit, move_leader=move_leader)
        if settle:
            self.settle()

    def elect_leader(self, unit_name: str, settle: bool = True, mid_hook: bool = False) -> None:
        """Hand the application's leadership to `unit_name`.

        On Juju this happens when the leader's lease lapses and Juju picks another unit. The
        old leader is simply no longer leader in its next hook; the new one gets leader-elected.
        A hook the old leader is running ends first: is-leader's answer holds for 30 s. With
        `mid_hook=True` the lease lapses at once, as when the old leader's agent lost the
        controller mid-hook: that hook's application-data writes are refused at commit.
        """
        unit = self._unit(unit_name)
        if unit.dying:
            raise SandboxError(f'unit "{unit_name}" is being removed: Juju elects no dying unit')
        old = self.apps[unit.app].leader
        # A unit that saw is-leader true keeps leadership for 30 s (Juju's lease): the lease
        # lapses between the old leader's hooks, never in the middle of one.
        hook_ended = lambda: old not in self._scheduler.running  # noqa: E731
        waits = not mid_hook and old not in (None, unit.name)
        if waits and not self._scheduler.drive_until(hook_ended, time.monotonic() + 300):
            raise WaitTimeoutError(f"{old}'s hook did not end in 300s: leadership cannot move")
        with self._lock:
            if self.apps[unit.app].leader != unit.name:
                sequences.leader_elected(self.state, unit)
        if settle:
            self.settle()

    def refresh(
        self,
        app: str,
        charm_dir: Path | str | None = None,
        settle: bool = True,
        timeout: float = 600.0,
        resources: dict[str, Path | str] | None = None,
    ) -> None:
        """`juju refresh APP [--path DIR] [--resource NAME=VALUE ...]` on Kubernetes.

        The pod template gets the new charm (a new StatefulSet revision, the update revision)
        and the StatefulSet replaces the pods one at a time, highest ordinal first, each once
        the previous replaced pod is ready. A replaced pod's agent runs the new charm code;
        the others run the old code until their turn.

        Only pods at or above the StatefulSet's rolling-update partition are replaced (charm
        code sets it through the Kubernetes API, or `set_partition`): with `settle`, this
        returns once those are replaced and ready, and the pods below the partition keep the
        old revision until the partition is lowered, when the update goes on by itself.

        `resources` are new revisions in the same template change, as for `deploy`: a new
        image of the workload (4.0.x -> a newer 4.0.x) rolls out with the charm, in one pass.
        """
        state = self._app(app)
        charm = CharmSpec.load(Path(charm_dir).resolve()) if charm_dir is not None else CharmSpec.load(state.charm.root)
        if charm.name != state.charm.name:
            raise SandboxError(f'cannot refresh "{app}" to charm "{charm.name}": it runs "{state.charm.name}"')
        check_requirements(charm)
        uploads = {key: self._resource_source(charm, key, path) for key, path in (resources or {}).items()}
        with self._lock:
            state.charm = charm
            state.config = {k: v for k, v in state.config.items() if k in charm.config_options}
            for key, source in uploads.items():
                self._store_resource(state, key, source)
            statefulset.new_template(state, charm)
        if settle:
            self._finish_rollout(state, timeout)
        else:
            self.save()

    def _finish_rollout(self, state: AppState, timeout: float) -> None:
        """Drive the StatefulSet's rolling update to its end (or to the partition), then settle."""
        app = state.name
        deadline = time.monotonic() + timeout
        self._scheduler.poll()  # the first replacement starts now, not a poll interval later
        while self._rolling(state):
            if not self._scheduler.step():
                time.sleep(POLL_INTERVAL)
            if time.monotonic() > deadline:
                waiting = state.replacing or self._next_replaced(state)
                raise WaitTimeoutError(f"rolling update of {app} not done after {timeout:.0f}s: {waiting} is not ready")
        self.settle()

    def _rolling(self, state: AppState) -> bool:
        with self._lock:
            return statefulset.rolling(state, self.state.app_units(state.name))

    def _next_replaced(self, state: AppState) -> str:
        with self._lock:
            following = statefulset.next_to_update(state, self.state.app_units(state.name))
        return following.name if following is not None else "-"

    # ------------------------------------------------------------------ the StatefulSet and the Kubernetes API

    def trust(self, app: str, remove: bool = False) -> None:
        """`juju trust APP --scope=cluster` (or `--remove`).

        The application's service account gets cluster-wide rights on the Kubernetes API (or
        loses them). Its charm sees `app.trusted` change in its next hook.
        """
        with self._lock:
            self._app(app).trusted = not remove
        self.save()

    def statefulset(self, app: str) -> StatefulSetView:
        """The application's StatefulSet: replicas, partition, current and update revisions, each pod's revision."""
        state = self._app(app)
        with self._lock:
            return statefulset.view(self.state, state)

    def pod_revision(self, unit_name: str) -> str:
        """The StatefulSet revision the unit's pod was created from (its controller-revision-hash label)."""
        return self._unit(unit_name).revision

    def set_partition(self, app: str, partition: int, settle: bool = True, timeout: float = 600.0) -> None:
        """`kubectl patch statefulset APP` of the rolling-update partition, as charm code does it.

        Pods at or above it that run an older revision are replaced (with `settle`, this
        waits for them); pods below it keep theirs.
        """
        state = self._app(app)
        if partition < 0:
            raise SandboxError(f"partition {partition}: must be greater than or equal to 0")
        with self._lock:
            statefulset.set_partition(state, partition)
        if settle:
            self._finish_rollout(state, timeout)
        else:
            self.save()

    def _adopt_revisions(self) -> None:
        """A model saved before revisions existed: each application's template is its first revision."""
        for app in self.apps.values():
            if not app.update_revision:
                statefulset.new_template(app, app.charm)
            if not app.api_token:
                app.api_token = new_token()
            for name in app.units:
                if name in self.units and not self.units[name].revision:
                    self.units[name].revision = app.current_revision

    # ------------------------------------------------------------------ user secrets

    def add_secret(self, name: str, content: dict[str, str], info: str | None = None) -> str:
        """`juju add-secret NAME key=value... [--info TEXT]`: a secret the model owns; returns its URI.

        No application reads it until the user grants it (`grant_secret`); charms get its URI
        through a `type: secret` config option.
        """
        if not _SECRET_NAME.match(name):
            raise SandboxError(f'secret name "{name}" not valid')
        checked = _secret_content(content)
        with self._lock:
            if any(s.name == name for s in self.secrets.values()):
                raise SandboxError(f'secret with name "{name}" already exists')
            uri = f"secret:{_new_secret_id()}"
            self.secrets[uri] = SecretState(
                id=uri, owner="", owner_is_unit=False, revisions={1: checked}, description=info, name=name
            )
        self.save()
        return uri

    def grant_secret(self, secret: str, apps: str | list[str]) -> None:
        """`juju grant-secret NAME|URI APP[,APP...]`: every unit of each application may read it.

        Juju sends no event for a grant: a charm that found the secret unreadable reads it
        again when it next runs (config-changed, update-status, ...).
        """
        names = self._app_names(apps)
        with self._lock:
            found = self._user_secret(secret)
            found.app_grants = found.app_grants | set(names)
        self.save()

    def revoke_secret(self, secret: str, apps: str | list[str]) -> None:
        """`juju revoke-secret NAME|URI APP[,APP...]`: the applications' units can no longer read it."""
        names = self._app_names(apps)
        with self._lock:
            found = self._user_secret(secret)
            found.app_grants = found.app_grants - set(names)
        self.save()

    def update_secret(
        self,
        secret: str,
        content: dict[str, str] | None = None,
        info: str | None = None,
        name: str | None = None,
        settle: bool = True,
    ) -> int:
        """`juju update-secret NAME|URI key=value... [--info TEXT] [--name NEW]`; returns the latest revision.

        New content is a new revision (the whole content: keys left out are gone); each unit
        that tracks the secret, having read it, gets secret-changed and still sees its
        revision until it refreshes. The same content again makes no revision.
        """
        checked = _secret_content(content) if content is not None else None
        if name is not None and not _SECRET_NAME.match(name):
            raise SandboxError(f'secret name "{name}" not valid')
        with self._lock:
            found = self._user_secret(secret)
            if name is not None and any(s.name == name and s is not found for s in self.secrets.values()):
                raise SandboxError(f'secret with name "{name}" already exists')
            if info is not None:
                found.description = info
            if name is not None:
                found.name = name
            if checked is not None and checked != found.revisions[found.latest]:
                found.latest += 1
                found.revisions[found.latest] = checked
                sequences.secret_changed(self.state, found)
            latest = found.latest
        if settle:
            self.settle()
        else:
            self.save()
        return latest

    def remove_secret(self, secret: str) -> None:
        """`juju remove-secret NAME|URI`: every revision goes; reading it is then "not found"."""
        with self._lock:
            found = self._user_secret(secret)
            del self.secrets[found.id]
            for unit in self.units.values():
                unit.tracked_revisions.pop(found.id, None)
                unit.secret_labels.pop(found.id, None)
        self.save()

    def secret_content(self, secret: str, revision: int | None = None) -> dict[str, str]:
        """`juju show-secret NAME|URI --reveal [--revision N]`: a user secret's content."""
        found = self._user_secret(secret)
        wanted = found.latest if revision is None else revision
        if wanted not in found.revisions:
            raise SandboxError(f'secret "{secret}" has no revision {wanted}')
        return dict(found.revisions[wanted])

    def _user_secret(self, ref: str) -> SecretState:
        for found in self.secrets.values():
            if found.user_owned and (found.name == ref or secret_key(found.id) == secret_key(ref)):
                return found
        if any(secret_key(s.id) == secret_key(ref) for s in self.secrets.values()):
            raise SandboxError(f'secret "{ref}" is owned by a charm: only user secrets are managed by the user')
        raise SandboxError(f'secret "{ref}" not found')

    def _app_names(self, apps: str | list[str]) -> list[str]:
        names = [n for n in (apps.split(",") if isinstance(apps, str) else apps) if n]
        if not names:
            raise SandboxError("name at least one application")
        for name in names:
            self._app(name)
        return names

    # ------------------------------------------------------------------ resources

    def attach_resource(
        self, app: str, resource: str, path: Path | str, settle: bool = True, timeout: float = 600.0
    ) -> int:
        """`juju attach-resource APP NAME=PATH`: a new revision of a resource; returns its number.

        A file resource is uploaded: the model keeps its own copy (later edits of the file do
        not reach the charm). An oci-image resource takes an image reference
        (`NAME=REPOSITORY:TAG`): its containers run that image from then on.

        New content bumps the application's charm-modified-version, which is in its pods'
        template: the StatefulSet replaces the pods one at a time, highest ordinal first (down
        to its partition), and each new pod runs upgrade-charm, config-changed, start,
        pebble-ready (as a refresh). The same content again is a new revision and nothing more.
        """
        state = self._app(app)
        source = self._resource_source(state.charm, resource, path)
        with self._lock:
            revision, changed = self._store_resource(state, resource, source)
            if changed:
                statefulset.new_template(state, state.charm)
        if settle and changed:
            self._finish_rollout(state, timeout)
        else:
            self.save()
        return revision

    def resource_revision(self, app: str, resource: str) -> ResourceRevision | None:
        """The application's current revision of a file resource (`juju resources APP`), or None."""
        return self._app(app).resources.get(resource)

    def image_revision(self, app: str, resource: str) -> ImageRevision | None:
        """The application's attached revision of an oci-image resource, or None (upstream-source)."""
        return self._app(app).images.get(resource)

    def _resource_source(self, charm: CharmSpec, resource: str, path: Path | str) -> Path | str:
        """What an upload names: a file (file resources) or a provisioned image's reference (oci-image)."""
        declared = (charm.raw.get("resources") or {}).get(resource)
        if declared is None:
            raise SandboxError(f'unrecognized resource "{resource}" for charm "{charm.name}"')
        if resource in charm.image_resources:
            reference = str(path)
            if not reference or any(c.isspace() for c in reference):
                raise SandboxError(f'resource "{resource}" needs an image reference, got "{reference}"')
            image_tree(reference, Artifacts.load())  # refuses an image the sandbox cannot run
            return reference
        if resource not in charm.file_resources:
            raise SandboxError(f'resource "{resource}" is an {declared.get("type")} resource, which the sandbox lacks')
        source = Path(path)
        if not source.is_file():
            raise SandboxError(f"open {source}: no such file")
        return source

    def _store_resource(self, state: AppState, resource: str, source: Path | str) -> tuple[int, bool]:
        """Keep an upload as the resource's next revision; return its number and whether its content is new."""
        if isinstance(source, str):
            attached = state.images.get(resource)
            running = attached.reference if attached else state.charm.upstream_image(resource)
            image = ImageRevision(resource, attached.revision + 1 if attached else 1, source)
            state.images[resource] = image
            # The pods' template changes only when the image does, as the StatefulSet's would.
            return image.revision, running != source
        previous = state.resources.get(resource)
        number = previous.revision + 1 if previous else 1
        target = (
            self.root
            / "resources"
            / state.name
            / resource
            / str(number)
            / state.charm.file_resources[resource].filename
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha384()
        with open(source, "rb") as upload, open(target, "wb") as stored:
            while chunk := upload.read(1 << 20):
                digest.update(chunk)
                stored.write(chunk)
        revision = ResourceRevision(resource, number, target, digest.hexdigest(), target.stat().st_size)
        state.resources[resource] = revision
        # Juju bumps the charm-modified-version only when the bytes change.
        return revision.revision, previous is None or previous.fingerprint != revision.fingerprint

    def status(self) -> str:
        ready = {name: self.pod_ready(name) for name in list(self.units)}
        with self._lock:
            return render(self.state, ready)

    # ------------------------------------------------------------------ faults

    def signal_service(self, unit_name: str, container: str, service: str, signal: str | int) -> None:
        """Signal a workload service's processes, as `kubectl exec POD -c CONTAINER -- kill` would.

        SIGKILL, SIGTERM, SIGSTOP or SIGCONT (also as `KILL`, `kill` or 9), sent by the
        container's Pebble to the service's process group. What follows is Pebble's doing, as
        on Kubernetes: a service that exits is restarted after its backoff; a stopped one
        hangs until SIGCONT, failing its checks meanwhile.
        """
        name = faults.signal_name(signal)
        client = self._workload(unit_name, container)
        try:
            found = client.get_services([service])
            if not found:
                planned = ", ".join(sorted(client.get_plan().services)) or "none"
                raise SandboxError(
                    f'container "{container}" of unit {unit_name} has no service "{service}" (services: {planned})'
                )
            if found[0].current != ops.pebble.ServiceStatus.ACTIVE:
                state = getattr(found[0].current, "value", found[0].current)
                raise SandboxError(f'service "{service}" of {unit_name}/{container} is not running ({state})')
            client.send_signal(name, [service])
        except ops.pebble.Error as error:
            raise SandboxError(f"cannot send {name} to {service} of {unit_name}/{container}: {error}") from None

    @contextlib.contextmanager
    def service_stopped(self, unit_name: str, container: str, service: str) -> Iterator[None]:
        """The service is frozen (SIGSTOP) for the `with` block, and continued (SIGCONT) after it, whatever happens.

        A service that is gone by then (its container was restarted) has nothing to continue.
        """
        self.signal_service(unit_name, container, service, "SIGSTOP")
        try:
            yield
        finally:
            if self._service_running(unit_name, container, service):
                self.signal_service(unit_name, container, service, "SIGCONT")

    def cut_network(self, unit_name: str) -> None:
        """Cut the unit's pod off from every other pod, both ways, as a node partition does.

        Its loopback still works (the charm reaches its workload at localhost); connections
        to and from other pods hang rather than fail at once. The cut is saved with the model:
        `restore_network` from another process lifts it, and a new pod for the unit
        (`restart_pod`) starts connected.
        """
        unit = self._unit(unit_name)
        if unit.pod.network_cut:
            raise SandboxError(f'the network of unit "{unit_name}" is already cut')
        unit.pod.cut_network()
        self.save()

    def restore_network(self, unit_name: str) -> None:
        """Lift `cut_network`: the pod is wired again as it was, its address and routes checked."""
        unit = self._unit(unit_name)
        if not unit.pod.network_cut and not unit.pod.network_problems():
            raise SandboxError(f'the network of unit "{unit_name}" is not cut')
        unit.pod.restore_network()
        self.save()

    @contextlib.contextmanager
    def network_cut(self, unit_name: str) -> Iterator[None]:
        """The unit's pod is cut off for the `with` block, and connected again after it, whatever happens."""
        self.cut_network(unit_name)
        try:
            yield
        finally:
            unit = self.units.get(unit_name)
            if unit is not None and unit.pod.network_cut:  # a new pod (restart_pod) starts connected
                self.restore_network(unit_name)

    def fill_storage(self, unit_name: str, storage: str, leave_bytes: int = 0) -> int:
        """Fill one of the unit's volumes until only `leave_bytes` are free (to the block); return the bytes free.

        One filler file at the volume's root takes the space, and a second call grows or
        shrinks it; `free_storage` deletes it. The workload's writes then fail with "No space
        left on device", as on a full volume claim; nothing else of the machine fills.
        """
        if leave_bytes < 0:
            raise SandboxError(f"cannot leave {leave_bytes} bytes free: give 0 or more")
        return volumes.fill(self._storage_device(unit_name, storage), leave_bytes)

    def free_storage(self, unit_name: str, storage: str) -> None:
        """Delete what `fill_storage` wrote on the volume."""
        if not volumes.free(self._storage_device(unit_name, storage)):
            raise SandboxError(f'storage "{storage}" of unit {unit_name} is not filled')

    @contextlib.contextmanager
    def storage_filled(self, unit_name: str, storage: str, leave_bytes: int = 0) -> Iterator[int]:
        """The volume is full for the `with` block (which gets the bytes left free), and freed after it."""
        left = self.fill_storage(unit_name, storage, leave_bytes)
        try:
            yield left
        finally:
            if unit_name in self.units:  # a removed unit's volume is detached, kept as it is
                volumes.free(self._storage_device(unit_name, storage))

    def _workload(self, unit_name: str, container: str) -> ops.pebble.Client:
        """The Pebble of one of the unit's workload containers, which must be running."""
        unit = self._unit(unit_name)
        if container not in unit.charm.containers:
            known = ", ".join(sorted(unit.charm.containers)) or "none"
            raise SandboxError(f'unit {unit_name} has no container "{container}" (containers: {known})')
        if container not in unit.pod.containers:
            raise SandboxError(f'container "{container}" of unit {unit_name} is not running')
        return ops.pebble.Client(socket_path=str(unit.pod.containers[container].socket))

    def _service_running(self, unit_name: str, container: str, service: str) -> bool:
        unit = self.units.get(unit_name)
        if unit is None or container not in unit.pod.containers:
            return False
        client = ops.pebble.Client(socket_path=str(unit.pod.containers[container].socket))
        try:
            found = client.get_services([service])
        except ops.pebble.ConnectionError:  # its Pebble is gone, and every process of the container with it
            return False
        return bool(found) and found[0].current == ops.pebble.ServiceStatus.ACTIVE

    def _storage_device(self, unit_name: str, storage: str) -> str:
        unit = self._unit(unit_name)
        if storage not in unit.charm.storage:
            known = ", ".join(sorted(unit.charm.storage)) or "none"
            raise SandboxError(f'unit {unit_name} has no storage "{storage}" (storage: {known})')
        return unit.pod.storage_device(storage)

    # ------------------------------------------------------------------ looking inside

    def pebble(self, unit_name: str, container: str) -> ops.pebble.Client:
        """A Pebble client for a unit's container, for tests that look inside the workload."""
        unit = self._unit(unit_name)
        if container not in unit.pod.containers:
            raise SandboxError(f'unit {unit_name} has no running container "{container}"')
        return ops.pebble.Client(socket_path=str(unit.pod.containers[container].socket))

    def container_processes(self, unit_name: str, container: str) -> list[procs.ProcessInfo]:
        """What runs in a unit's container under its Pebble (services, their children, execs).

        Pebble itself is left out: it runs as root, as Juju starts it in every container.
        """
        unit = self._unit(unit_name)
        if container not in unit.pod.containers:
            raise SandboxError(f'unit {unit_name} has no running container "{container}"')
        # The recorded process is the container's init; its child is Pebble.
        pebbles = unit.pod.containers[container].process.children()
        found = [procs.process_info(pid) for pebble in pebbles for pid in procs.descendants(pebble)]
        return [info for info in found if info is not None]

    def pod_ready(self, unit_name: str) -> bool:
        """The pod's Ready condition, as Kubernetes reports it.

        The agent runs and every workload container's Pebble answers healthy at
        `/v1/health?level=ready` (a container with no checks is healthy).
        """
        return self._watcher.pod_ready(self._unit(unit_name))

    def debug_log(self, unit_name: str) -> str:
        """The unit's charm log, hook by hook, with what the charm logged (`juju debug-log`).

        It is kept after the unit is removed.
        """
        path = self.root / "pods" / unit_name.replace("/", "-") / "logs" / "charm.log"
        if not path.is_file():
            raise SandboxError(f'no log for unit "{unit_name}"')
        return path.read_text()

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

    # ------------------------------------------------------------------ driving the model

    def settle(self, units: list[str] | None = None, deadline: float | None = None) -> None:
        """Run queued events until none is left (or the deadline passes); units run in parallel."""
        self._scheduler.settle(units, deadline)
        self.save()

    def drive_until(self, predicate: Callable[[Model], bool], timeout: float = 60.0) -> None:
        """Run queued events and watch the workloads until `predicate(model)` holds, then stop.

        Nothing more starts and the rest stays queued (hooks already running finish in the
        background). Tests use it to act at a precise moment, e.g. move leadership mid-way.
        """
        if not self._scheduler.drive_until(lambda: predicate(self), time.monotonic() + timeout):
            busy = "; ".join(self._describe(u) for u in self.units.values() if u.queue or u.busy or u.error)
            raise WaitTimeoutError(f"condition not met after {timeout:.0f}s" + (f": {busy}" if busy else ""))
        self.save()

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
            self._scheduler.settle(deadline=deadline)
            with self._lock:
                now = time.monotonic()
                units = [u for app in names for u in self.state.app_units(app)]
                errored = [u for u in units if u.error]
                if errored and raise_on_error:
                    self.save()
                    raise HookFailedError("; ".join(self._error_line(u) for u in errored))
                pending = [u for u in units if not self._settled(u, status, now, idle_period)]
                rolling = [self.apps[a] for a in names if statefulset.rolling(self.apps[a], self.state.app_units(a))]
            if not pending and not rolling:
                self.save()
                return
            if now > deadline:
                self.save()
                reasons = [self._describe(u) for u in pending]
                reasons += [
                    f"{a.name} is rolling out its new charm ({a.replacing or self._next_replaced(a)} next)"
                    for a in rolling
                ]
                raise WaitTimeoutError(f"not idle after {timeout:.0f}s: " + "; ".join(reasons))
            self._scheduler.step()
            time.sleep(POLL_INTERVAL)

    def _settled(self, unit: UnitState, status: str | None, now: float, idle_period: float) -> bool:
        if unit.queue or unit.busy or unit.error or unit.dying or unit.name in self._scheduler.running:
            return False
        if any(key[0] == unit.name for key in self._scheduler.restarting):
            return False
        if now - unit.idle_since < idle_period:
            return False
        return status is None or unit.workload_status.name == status

    def _describe(self, unit: UnitState) -> str:
        message = f": {unit.workload_status.message}" if unit.workload_status.message else ""
        agent = unit.agent_status + (f" ({len(unit.queue)} queued)" if unit.queue else "")
        dying = ", dying" if unit.dying else ""
        return f"{unit.name} is {unit.workload_status.name}{message} [agent {agent}{dying}]"

    def _error_line(self, unit: UnitState) -> str:
        assert unit.error is not None
        return f'{unit.name}: hook failed: "{unit.error.event.kind}": {unit.error.line}'

    # ------------------------------------------------------------------ helpers

    def _new_relation(self, interface: str, endpoints: list[tuple[str, str]]) -> RelationState:
        relation = RelationState(self.state.next_relation_id, interface, endpoints)
        self.state.next_relation_id += 1
        self.relations[relation.id] = relation
        return relation

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
        current = [r for r in self.relations.values() if not r.removing]
        exists = any(sorted(r.endpoints) == sorted(match) for r in current)
        if existing and not exists:
            raise SandboxError(f'relation "{first} {second}" not found')
        if not existing and exists:
            raise SandboxError(f'relation "{match[0][0]}:{match[0][1]} {match[1][0]}:{match[1][1]}" already exists')
        if not existing:
            for app, endpoint in match:
                limit = self.apps[app].charm.endpoints[endpoint].limit
                used = sum(1 for r in current if (app, endpoint) in r.endpoints)
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


def _new_secret_id() -> str:
    """A secret id as Juju makes them: 20 characters of base32hex (an xid)."""
    return base64.b32hexencode(os.urandom(12)).decode().lower().rstrip("=")


def _secret_content(content: dict[str, str]) -> dict[str, str]:
    """A secret's content, checked as Juju checks it."""
    if not content:
        raise SandboxError("secret content must not be empty")
    for key, value in content.items():
        if not _SECRET_KEY.match(key):
            raise SandboxError(f'secret key "{key}" not valid')
        if not isinstance(value, str):
            raise SandboxError(f'secret value of "{key}" must be a string')
    return dict(content)
