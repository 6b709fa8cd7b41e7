"""Pods: a network namespace per unit, one Pebble per workload container, storage that survives.

Layout of one model's network: a "cluster" namespace holds a bridge; every pod namespace
is wired to it by a veth pair and gets its own address. Nothing touches the host's own
network namespace, so every address lives only inside this machine.

A container is `ip netns exec <pod> unshare --mount --uts --pid --fork` around Pebble:
Pebble is pid 1 of its own pid namespace (killing it ends every workload process, as a
container runtime does), the image tree is an overlay whose upper layer is thrown away
on restart, /tmp is a private tmpfs, the host's /var, /opt, /srv and /home are seen through
overlays of the container's own (what a workload writes there is its container's alone and
goes with the pod, as on a container's root file system), and each Juju storage is a volume
of its own (`volumes.py`) that outlives the pod (and the unit: a StatefulSet keeps a removed
pod's volume claims, and a pod of the same ordinal gets them back).

Faults a user causes with kubectl or on the node: a pod cut off from the network (its end of
the veth pair into the bridge goes down, so nothing passes either way while its loopback
works), and its volumes filled (`volumes.py`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import volumes
from sandbox.errors import SandboxError
from sandbox.procs import ProcessRef, run, spawn

# Host directories each container sees through an overlay of its own (see the module docstring).
PRIVATE_ROOT_DIRS = ("/home", "/opt", "/srv", "/var")

SUBNET = ipaddress.ip_network("10.97.0.0/16")
NETWORK_SETTLE = 5.0  # seconds for a restored link to carry traffic again
NETNS_DIR = Path("/etc/netns")
SOCKETS_ROOT = Path("/run/pulsar-sandbox")
TERMINATION_GRACE = 30.0
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONTAINER_PEBBLE = "/charm/bin/pebble"  # where Juju mounts its Pebble binary in a workload container


# Locally administered, the bridge's IPv4 address in its last four bytes: fixed, so that it does
# not follow the lowest MAC among the bridge's ports (pods' ARP entries for it would go stale).
BRIDGE_MAC = ":".join(f"{byte:02x}" for byte in (0x02, 0x00, *SUBNET[1].packed))


def bridge_address() -> str:
    """The cluster bridge's address: every pod reaches the model's API server there."""
    return str(SUBNET[1])


def cluster_ns(model: str) -> str:
    return f"psb-{model}"


def pod_ns(model: str, unit: str) -> str:
    return f"psb-{model}-{unit.replace('/', '-')}"


DEFAULT_CLUSTER_DOMAIN = "cluster.local"


def fqdn(model: str, unit: str, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> str:
    """The pod's name in the application's headless service, as Kubernetes resolves it."""
    app, number = unit.split("/")
    return f"{app}-{number}.{app}-endpoints.{model}.svc.{cluster_domain}"


def resolv_conf(model: str, cluster_domain: str) -> str:
    """The search list Kubernetes writes into every pod of namespace `model`.

    No nameserver: every name a pod needs is in its hosts file, and a lookup of anything
    else fails at once instead of leaving the machine.
    """
    search = f"{model}.svc.{cluster_domain} svc.{cluster_domain} {cluster_domain}"
    return f"search {search}\noptions ndots:5 timeout:1 attempts:1\n"


def create_cluster_network(model: str) -> None:
    ns = cluster_ns(model)
    run(["ip", "netns", "add", ns], "creating the cluster network")
    # A bridge whose address is not set takes the lowest of its ports' MACs, so a pod joining
    # or leaving could change it under every pod's ARP entry for the API server (seconds
    # of lost packets to it). Set once, it stays.
    run(["ip", "-n", ns, "link", "add", "br0", "address", BRIDGE_MAC, "type", "bridge"], "creating the bridge")
    run(
        ["ip", "-n", ns, "addr", "add", f"{SUBNET[1]}/{SUBNET.prefixlen}", "dev", "br0"],
        "addressing the bridge",
    )
    run(["ip", "-n", ns, "link", "set", "br0", "up"], "starting the bridge")
    run(["ip", "-n", ns, "link", "set", "lo", "up"], "starting loopback")


def delete_netns(name: str) -> None:
    if (Path("/run/netns") / name).exists():
        run(["ip", "netns", "del", name], f"deleting network namespace {name}")
    shutil.rmtree(NETNS_DIR / name, ignore_errors=True)


def kill_netns_processes(name: str) -> None:
    """Kill what still runs inside one of our namespaces after a crash: its pids, not names."""
    listing = run(["ip", "netns", "pids", name], f"listing processes of {name}")
    for pid in (int(p) for p in listing.split()):
        with contextlib.suppress(SandboxError):  # already gone
            ProcessRef.of(pid).signal(signal.SIGKILL)


@dataclass
class ImageTree:
    """What a container image puts in the container: trees under paths, and environment."""

    trees: dict[str, Path] = field(default_factory=dict)  # container path -> read-only source
    env: dict[str, str] = field(default_factory=dict)


def socket_dir(model: str) -> Path:
    """Unix sockets need short paths (108 bytes), so they live apart from the model's files."""
    return SOCKETS_ROOT / model


@dataclass
class ContainerProcess:
    """The running Pebble of one workload container."""

    name: str
    process: ProcessRef
    pebble_dir: Path
    socket: Path


@dataclass
class Pod:
    """One unit's pod. Everything but `storage_dir` (its volumes) is lost when the pod restarts."""

    model: str
    unit: str
    index: int  # host part of the address
    root: Path  # this pod's directory under the model
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    containers: dict[str, ContainerProcess] = field(default_factory=dict)
    agent: ProcessRef | None = None
    created_mountpoints: list[str] = field(default_factory=list)
    network_cut: bool = False  # cut_network: its link into the cluster is down

    def __setstate__(self, state: dict[str, object]) -> None:
        # A pod saved before network cuts existed loads connected.
        self.__dict__.update({"network_cut": False, **state})

    @property
    def netns(self) -> str:
        return pod_ns(self.model, self.unit)

    @property
    def address(self) -> str:
        return str(SUBNET[self.index])

    @property
    def hostname(self) -> str:
        return self.unit.replace("/", "-")

    @property
    def fqdn(self) -> str:
        return fqdn(self.model, self.unit, self.cluster_domain)

    @property
    def storage_dir(self) -> Path:
        return self.root / "storage"

    def volume_image(self, storage: str) -> Path:
        return self.storage_dir / f"{storage}.ext4"

    @property
    def cluster_link(self) -> str:
        """The pod's end of its veth pair on the cluster's side, a port of the bridge."""
        return f"v{self.index}"

    @property
    def ephemeral_dir(self) -> Path:
        return self.root / "ephemeral"

    @property
    def kubeconfig(self) -> Path:
        """The pod's kubeconfig (its service account's token), gone with the pod as a projected token is."""
        return self.ephemeral_dir / "charm" / "kube" / "config"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def agent_socket(self) -> Path:
        return socket_dir(self.model) / f"{self.index}-agent.sock"

    def pebble_socket(self, container: str) -> Path:
        return socket_dir(self.model) / f"{self.index}-{container}.sock"

    def create_network(self) -> None:
        """Namespace, veth pair into the cluster bridge, address, loopback."""
        ns, cluster, veth = self.netns, cluster_ns(self.model), self.cluster_link
        run(["ip", "netns", "add", ns], f"creating pod {self.unit}")
        run(
            ["ip", "-n", cluster, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
            "wiring the pod",
        )
        run(["ip", "-n", cluster, "link", "set", veth, "master", "br0", "up"], "attaching the pod")
        run(
            ["ip", "-n", ns, "addr", "add", f"{self.address}/{SUBNET.prefixlen}", "dev", "eth0"],
            "addressing the pod",
        )
        run(["ip", "-n", ns, "link", "set", "eth0", "up"], "starting the pod's interface")
        run(["ip", "-n", ns, "link", "set", "lo", "up"], "starting the pod's loopback")
        netns_etc = NETNS_DIR / ns
        netns_etc.mkdir(parents=True, exist_ok=True)
        # `ip netns exec` binds these over /etc/resolv.conf and /etc/hosts for everything the
        # pod runs: its containers and its unit agent (the charm reads the search list).
        (netns_etc / "resolv.conf").write_text(resolv_conf(self.model, self.cluster_domain))
        (netns_etc / "hosts").write_text("")

    def cut_network(self) -> None:
        """Partition the pod: its bridge port goes down, so no packet passes either way.

        Its eth0 keeps its address and routes (and loses its carrier); loopback is untouched.
        """
        run(
            ["ip", "-n", cluster_ns(self.model), "link", "set", self.cluster_link, "down"],
            f"cutting the network of {self.unit}",
        )
        self.network_cut = True

    def restore_network(self, timeout: float = NETWORK_SETTLE) -> None:
        """Bring the bridge port up again; fail unless the pod is wired as create_network left it."""
        run(
            ["ip", "-n", cluster_ns(self.model), "link", "set", self.cluster_link, "up"],
            f"restoring the network of {self.unit}",
        )
        self.network_cut = False
        deadline = time.monotonic() + timeout
        while problems := self.network_problems():  # the carrier comes back asynchronously
            if time.monotonic() > deadline:
                detail = "; ".join(problems)
                raise SandboxError(f"the network of {self.unit} is not back after {timeout:.0f}s: {detail}")
            time.sleep(0.05)

    def network_problems(self) -> list[str]:
        """How the pod's wiring differs from what create_network made; empty when it carries traffic."""
        cluster, ns = cluster_ns(self.model), self.netns
        problems = []
        (port,) = json.loads(
            run(["ip", "-j", "-n", cluster, "link", "show", "dev", self.cluster_link], f"reading {self.unit}'s port")
        )
        if port.get("master") != "br0":
            problems.append(f"{self.cluster_link} is not a port of the bridge")
        if port.get("operstate") != "UP":
            problems.append(f"{self.cluster_link} is {port.get('operstate')}")
        (eth0,) = json.loads(
            run(["ip", "-j", "-n", ns, "addr", "show", "dev", "eth0"], f"reading {self.unit}'s interface")
        )
        if eth0.get("operstate") != "UP":
            problems.append(f"eth0 is {eth0.get('operstate')}")
        addresses = {(a.get("local"), a.get("prefixlen")) for a in eth0.get("addr_info", []) if a["family"] == "inet"}
        if (self.address, SUBNET.prefixlen) not in addresses:
            problems.append(f"eth0 lost {self.address}/{SUBNET.prefixlen}")
        routes = json.loads(
            run(["ip", "-j", "-n", ns, "route", "show", "dev", "eth0"], f"reading {self.unit}'s routes")
        )
        if not any(r.get("dst") == str(SUBNET) and "linkdown" not in r.get("flags", []) for r in routes):
            problems.append(f"no usable route to {SUBNET} on eth0")
        return problems

    def write_hosts(self, entries: list[tuple[str, str, str]]) -> None:
        """The pod's /etc/hosts: every pod of the model by FQDN and short name.

        Written in place (not replaced) because running containers see the file through
        a bind mount of its inode.
        """
        if not (NETNS_DIR / self.netns).is_dir():
            return  # the pod is being deleted
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{address}\t{name}\t{short}" for address, name, short in entries]
        with open(NETNS_DIR / self.netns / "hosts", "w") as hosts:
            hosts.write("\n".join(lines) + "\n")

    def start_container(self, name: str, pebble: Path, image: ImageTree, mounts: dict[str, str]) -> ContainerProcess:
        """Start one workload container: its mounts, then `pebble run --create-dirs --hold`."""
        upper = self.ephemeral_dir / name
        pebble_dir = upper / "pebble"
        pebble_dir.mkdir(parents=True, exist_ok=True)
        script = [
            "set -e",
            f"hostname {shlex.quote(self.hostname)}",
            "mount -t tmpfs -o mode=1777 tmpfs /tmp",
        ]
        # A container's root file system is its own: writes outside the image trees and the
        # storage must not reach the host, another pod, or a later model.
        for index, target in enumerate(PRIVATE_ROOT_DIRS):
            layer, work = upper / f"root{index}", upper / f"root-work{index}"
            layer.mkdir(exist_ok=True)
            work.mkdir(exist_ok=True)
            options = f"lowerdir={target},upperdir={layer},workdir={work}"
            script.append(f"mount -t overlay overlay -o {options} {shlex.quote(target)}")
        for index, (target, source) in enumerate(sorted(image.trees.items())):
            layer, work = upper / f"layer{index}", upper / f"work{index}"
            layer.mkdir(exist_ok=True)
            work.mkdir(exist_ok=True)
            self._mountpoint(target)
            options = f"lowerdir={source},upperdir={layer},workdir={work}"
            script.append(f"mount -t overlay overlay -o {options} {shlex.quote(target)}")
        for storage, location in sorted(mounts.items()):
            device = self.storage_device(storage)
            self._mountpoint(location)
            script.append(f"mount -t ext4 {shlex.quote(device)} {shlex.quote(location)}")
        # Juju mounts its Pebble binary into every workload container, for `pebble notify` and the like.
        self._mountpoint(CONTAINER_PEBBLE, file=True)
        script.append(f"mount --bind {shlex.quote(str(pebble))} {CONTAINER_PEBBLE}")
        script.append(f"exec {shlex.quote(str(pebble))} run --create-dirs --hold")
        argv = [
            "ip", "netns", "exec", self.netns,
            "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child", "--propagation", "private",
            "--", "/bin/sh", "-c", "\n".join(script),
        ]  # fmt: skip
        sock = self.pebble_socket(name)
        sock.parent.mkdir(parents=True, exist_ok=True)
        sock.unlink(missing_ok=True)
        env = {
            "PATH": HOST_PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "PEBBLE": str(pebble_dir),
            "PEBBLE_SOCKET": str(sock),
        }
        env.update(image.env)
        process = spawn(argv, self.log_dir / f"{name}.log", env)
        container = ContainerProcess(name, process, pebble_dir, sock)
        self.containers[name] = container
        return container

    def attach_storage(self, sizes: dict[str, int]) -> None:
        """Attach the unit's volumes (storage name -> size), each made when first needed."""
        for storage, size in sorted(sizes.items()):
            volumes.attach(self.volume_image(storage), size)

    def storage_device(self, storage: str) -> str:
        """The loop device of one of the unit's volumes, which its containers mount."""
        devices = volumes.devices_of(self.volume_image(storage))
        if not devices:
            raise SandboxError(f'storage "{storage}" of {self.unit} is not attached')
        return devices[0]

    def detach_storage(self) -> None:
        """Detach every volume of the unit (their images stay); say which could not be."""
        problems = []
        for image in sorted(self.storage_dir.glob("*.ext4")):
            try:
                volumes.detach(image)
            except SandboxError as error:
                problems.append(str(error))
        if problems:
            raise SandboxError(f"storage of {self.unit} not detached: {'; '.join(problems)}")

    def _mountpoint(self, path: str, file: bool = False) -> None:
        """Mount targets must exist on the shared root file system; remember the ones we made.

        A file is bound over an empty file, a directory over a directory.
        """
        target = Path(path)
        missing = [p for p in [target, *target.parents] if not p.exists()]
        if file:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
        self.created_mountpoints += [str(p) for p in missing if str(p) not in self.created_mountpoints]

    def wait_pebble(self, container: ContainerProcess, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not container.socket.exists():
            if not container.process.alive():
                log = (self.log_dir / f"{container.name}.log").read_text(errors="replace")
                raise SandboxError(f"container {container.name} of {self.unit} died: {log.strip()[-400:]}")
            if time.monotonic() > deadline:
                raise SandboxError(f"pebble of {self.unit}/{container.name} did not come up in {timeout}s")
            time.sleep(0.02)

    def start_agent(self, charm_dir: Path, env: dict[str, str]) -> ProcessRef:
        """The unit agent, inside the pod's network (as the charm container shares it)."""
        sock = self.agent_socket
        sock.parent.mkdir(parents=True, exist_ok=True)  # a charm without containers has made no socket yet
        sock.unlink(missing_ok=True)
        script = (
            f"hostname {shlex.quote(self.hostname)} && exec {shlex.quote(sys.executable)} -m sandbox.agent "
            f"--unit {shlex.quote(self.unit)} --charm-dir {shlex.quote(str(charm_dir))} "
            f"--socket {shlex.quote(str(sock))}"
        )
        argv = ["ip", "netns", "exec", self.netns, "unshare", "--uts", "--", "/bin/sh", "-c", script]
        self.agent = spawn(argv, self.log_dir / "agent.log", env, cwd=Path(__file__).resolve().parent.parent)
        deadline = time.monotonic() + 60
        while not sock.exists():
            if not self.agent.alive():
                log = (self.log_dir / "agent.log").read_text(errors="replace")
                raise SandboxError(f"unit agent of {self.unit} died: {log.strip()[-600:]}")
            if time.monotonic() > deadline:
                raise SandboxError(f"unit agent of {self.unit} did not start in 60s")
            time.sleep(0.02)
        return self.agent

    def stop_container(self, name: str, grace: float = TERMINATION_GRACE) -> None:
        """Stop one container the way the kubelet does: SIGTERM, grace, SIGKILL."""
        container = self.containers.pop(name, None)
        if container is None:
            return
        for pid in container.process.children():
            with contextlib.suppress(SandboxError):
                ProcessRef.of(pid).terminate(grace)
        container.process.terminate(5)
        container.socket.unlink(missing_ok=True)

    def restart_container(
        self, name: str, pebble: Path, image: ImageTree, mounts: dict[str, str], grace: float = TERMINATION_GRACE
    ) -> ContainerProcess:
        """The kubelet restarts a container.

        Its writable layer is lost (so is Pebble's plan, which lives in memory); Pebble's
        state directory, on the pod's emptyDir, and the storage stay.
        """
        self.stop_container(name, grace)
        upper = self.ephemeral_dir / name
        for layer in [*upper.glob("layer*"), *upper.glob("work*")]:
            shutil.rmtree(layer, ignore_errors=True)
        container = self.start_container(name, pebble, image, mounts)
        self.wait_pebble(container)
        return container

    def stop(self, grace: float = TERMINATION_GRACE) -> None:
        """Stop the pod's processes the way Kubernetes does: SIGTERM, grace, SIGKILL."""
        for name in list(self.containers):
            self.stop_container(name, grace)
        if self.agent is not None:
            self.agent.terminate(5)
        self.agent = None

    def wipe_ephemeral(self) -> None:
        shutil.rmtree(self.ephemeral_dir, ignore_errors=True)
        for sock in socket_dir(self.model).glob(f"{self.index}-*.sock"):
            sock.unlink()

    def delete(self, keep_storage: bool = False) -> None:
        """The pod goes.

        With `keep_storage`, its volumes stay (detached) for a later pod of the same ordinal
        (a StatefulSet scaled down), and so do its logs, as `juju debug-log` keeps them. A
        volume that cannot be detached is an error, and then nothing of the pod's files goes.
        """
        self.stop(grace=5)
        delete_netns(self.netns)
        self.wipe_ephemeral()
        self.detach_storage()
        if not keep_storage:
            shutil.rmtree(self.root, ignore_errors=True)


def remove_mountpoints(paths: list[str]) -> None:
    """Remove the empty mount targets a model created, deepest first.

    Only call this when no pod of any model is running: a directory that is a mount
    point inside another mount namespace can still be removed from here.
    """
    for path in sorted(set(paths), key=len, reverse=True):
        with contextlib.suppress(OSError):  # not empty, or already gone
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                os.unlink(path)
            else:
                os.rmdir(path)
