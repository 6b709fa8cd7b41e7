"""Pods of units, as a StatefulSet keeps them: ordinals, creation, replacement, deletion.

A unit's number is its pod's ordinal. New units take the lowest free ordinal, so a unit
added after a scale-down gets the removed unit's name, FQDN and volumes back. Slow work
(processes starting and stopping) runs without the model lock; only state changes take it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sandbox import pods, sequences, statefulset, volumes
from sandbox.errors import SandboxError
from sandbox.paths import REPO_ROOT, Artifacts
from sandbox.state import AppState, ModelState, UnitState

PULSAR_IMAGE = "apachepulsar/pulsar"
PULSAR_ALL_IMAGE = "apachepulsar/pulsar-all"  # the pulsar image plus /pulsar/connectors/*.nar
WORKLOAD_PYTHON_IN_IMAGE = "/opt/workload-python"  # the python3 (and packages) of the Pulsar images
POSTGRES_IMAGE = "postgres"  # Docker's official image: Debian's PostgreSQL packages
POSTGRES_ROOT = Path("/usr/lib/postgresql")  # Debian's layout, in the image as on this machine


def image_reference(upstream_source: str) -> tuple[str, str]:
    """Repository and tag of an image reference: `docker.io/library/postgres:15` is ("postgres", "15")."""
    reference = upstream_source.split("@", 1)[0]
    repository, tag = reference, "latest"
    if ":" in reference.rsplit("/", 1)[-1]:
        repository, tag = reference.rsplit(":", 1)
    return repository.removeprefix("docker.io/").removeprefix("library/"), tag


def image_tree(upstream_source: str | None, artifacts: Artifacts) -> pods.ImageTree:
    """The local stand-in for a container image: its files and the environment it sets.

    Pulsar images get the Pulsar tree of their tag at /pulsar (pulsar-all's has connectors/
    too); a tag not provisioned is refused, as a registry refuses to pull it. The postgres
    image gets the PATH and PGDATA it sets, for Debian's PostgreSQL of its major version.
    """
    env = {
        "JAVA_HOME": str(artifacts.java_home),
        "PATH": f"{artifacts.workload_python.parent}:{artifacts.java_home}/bin:{pods.HOST_PATH}",
    }
    # The image's python3, mounted where any user of the container can run it.
    python = {WORKLOAD_PYTHON_IN_IMAGE: artifacts.workload_python.parent.parent}
    pulsar_env = {**env, "PATH": f"{WORKLOAD_PYTHON_IN_IMAGE}/bin:{artifacts.java_home}/bin:{pods.HOST_PATH}"}
    repository, tag = image_reference(upstream_source) if upstream_source else ("", "")
    if repository == PULSAR_ALL_IMAGE:
        if artifacts.pulsar_all_home is None:
            raise SandboxError(f"{upstream_source} needs the pulsar-all tree: run `tox -e provision`")
        if tag != artifacts.pulsar_version:
            raise SandboxError(f"image {PULSAR_ALL_IMAGE}:{tag} is not provisioned (tags: {artifacts.pulsar_version})")
        return pods.ImageTree(trees={"/pulsar": artifacts.pulsar_all_home, **python}, env=pulsar_env)
    if repository == PULSAR_IMAGE:
        tree = artifacts.pulsar_tree(tag)
        if tree is None:
            tags = ", ".join(artifacts.pulsar_versions)
            raise SandboxError(f"image {PULSAR_IMAGE}:{tag} is not provisioned (tags: {tags})")
        return pods.ImageTree(trees={"/pulsar": tree, **python}, env=pulsar_env)
    if repository == POSTGRES_IMAGE:
        return _postgres_image(tag)
    return pods.ImageTree(env=env)


def _postgres_image(tag: str) -> pods.ImageTree:
    major = tag.split("-", 1)[0].split(".", 1)[0]
    bin_dir = POSTGRES_ROOT / major / "bin"
    if not (bin_dir / "postgres").is_file():
        have = ", ".join(sorted(p.parent.parent.name for p in POSTGRES_ROOT.glob("*/bin/postgres"))) or "none"
        raise SandboxError(f"image postgres:{tag} needs Debian's postgresql-{major} (installed: {have})")
    env = {
        "PATH": f"{pods.HOST_PATH}:{bin_dir}",  # the image's order: Debian's client wrappers come first
        "PG_MAJOR": major,
        "PGDATA": "/var/lib/postgresql/data",
        "LANG": "C.UTF-8",  # the image generates en_US.UTF-8; this machine need not have it
    }
    return pods.ImageTree(env=env)


class PodLifecycle:
    def __init__(self, model: ModelState, lock: threading.RLock) -> None:
        self.model = model
        self.lock = lock

    def create_unit(self, app: AppState) -> UnitState:
        """A new unit at the lowest free ordinal, with its pod's network (not started yet)."""
        with self.lock:
            used = {self.model.units[u].number for u in app.units}
            number = next(n for n in range(len(used) + 1) if n not in used)
            name = f"{app.name}/{number}"
            pod = self._new_pod(name)
            unit = UnitState(name=name, app=app.name, number=number, pod=pod, charm=app.charm)
            unit.last_update_status = time.monotonic()
            self.model.units[name] = unit
            app.units = sorted([*app.units, name], key=lambda u: self.model.units[u].number)
            if app.leader is None:
                app.leader = name
        pod.create_network()
        return unit

    def _new_pod(self, unit: str) -> pods.Pod:
        pod = pods.Pod(
            self.model.name,
            unit,
            self.model.next_pod_index,
            self.model.root / "pods" / unit.replace("/", "-"),
            cluster_domain=self.model.cluster_domain,
        )
        self.model.next_pod_index += 1
        return pod

    def start_pod(self, unit: UnitState) -> None:
        """Attach the unit's volumes, start its workload containers (each a Pebble), then the unit agent.

        The pod is created from the StatefulSet revision its ordinal gets (the update revision
        at or above the partition, the current one below it): volumes are sized as that
        template's charm declares them, and the agent runs that charm.
        """
        artifacts = Artifacts.load()
        app = self.model.apps[unit.app]
        with self.lock:
            revision = statefulset.revision_for_ordinal(app, unit.number)
            charm = app.revisions.get(revision, app.charm)
        unit.pod.attach_storage({name: volumes.declared_size(spec) for name, spec in charm.storage.items()})
        for name, spec in charm.containers.items():
            image = image_tree(spec.upstream_source, artifacts)
            container = unit.pod.start_container(name, artifacts.pebble, image, spec.mounts)
            unit.pod.wait_pebble(container)
        env = {
            "PATH": pods.HOST_PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
            # lightkube's Client() (KubeConfig.from_env) reads it: the model's API server (kubeapi.py).
            "KUBECONFIG": str(unit.pod.kubeconfig),
        }
        unit.pod.start_agent(charm.root, env)
        with self.lock:
            unit.charm = charm
            unit.revision = revision
            unit.pod_started = time.monotonic()
            unit.agent_status = "idle"

    def replace_pod(self, unit: UnitState, move_leader: bool) -> None:
        """Kubernetes deletes the pod and creates it again.

        Processes are killed and everything but the volumes is lost; the new unit agent runs
        the template's charm. (The pod keeps its address here: on Kubernetes it would get a
        new one, and Juju would publish it.) A new pod is not cut off from the network.
        """
        unit.pod.stop()
        unit.pod.wipe_ephemeral()
        if unit.pod.network_cut:
            unit.pod.restore_network()
        with self.lock:
            if move_leader and self.model.apps[unit.app].leader == unit.name:
                self._hand_over_leadership(unit)
            unit.agent_status = "allocating"
            unit.check_status.clear()
            unit.notices_seen.clear()
            unit.liveness_failures.clear()
        self.start_pod(unit)
        with self.lock:
            sequences.after_new_pod(self.model, unit)

    def delete_unit(self, unit: UnitState) -> None:
        """The dying unit's hooks are over: its pod and the unit go.

        Its volumes stay for the ordinal; the unit leaves every relation, and another unit is
        elected leader if it led.
        """
        unit.pod.delete(keep_storage=True)
        with self.lock:
            app = self.model.apps[unit.app]
            self.model.created_mountpoints += unit.pod.created_mountpoints
            for relation in self.model.relations.values():
                relation.unit_data.pop(unit.name, None)
            for other in self.model.units.values():
                for members in other.members.values():
                    members.discard(unit.name)
            app.units.remove(unit.name)
            del self.model.units[unit.name]
            if app.leader == unit.name:
                app.leader = None
                self._hand_over_leadership(unit)
        self.refresh_hosts()

    def _hand_over_leadership(self, unit: UnitState) -> None:
        """Juju elects another unit once the leader's lease lapses (its agent is gone)."""
        candidates = [u for u in self.model.alive_units(unit.app) if u.name != unit.name]
        app = self.model.apps[unit.app]
        if not candidates:
            app.leader = None if unit.name not in self.model.units else unit.name
            return
        sequences.leader_elected(self.model, candidates[0])

    def restart_container(self, unit: UnitState, name: str) -> None:
        """The kubelet restarts a container that failed its liveness probe.

        Juju then tells the charm that Pebble is ready again.
        """
        spec = unit.charm.containers[name]
        artifacts = Artifacts.load()
        image = image_tree(spec.upstream_source, artifacts)
        with self.lock:
            for key in [k for k in unit.check_status if k[0] == name]:
                del unit.check_status[key]
            unit.liveness_failures[name] = 0
        unit.pod.restart_container(name, artifacts.pebble, image, spec.mounts)
        with self.lock:
            unit.restarts += 1
            unit.pod_started = time.monotonic()
            sequences.queue(self.model, unit, sequences.EventSpec("pebble_ready", container=name))

    def refresh_hosts(self) -> None:
        """Every pod's /etc/hosts lists every pod of the model, as the cluster's DNS would."""
        with self.lock:
            entries = [(u.pod.address, u.pod.fqdn, u.pod.hostname) for u in self.model.units.values()]
            units = list(self.model.units.values())
        for unit in units:
            unit.pod.write_hosts(entries)
