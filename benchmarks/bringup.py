"""Benchmark: deploy-to-active of pulsar-k8s + bookie-k8s, against the same JVMs started by hand.

Charms: `deploy pulsar-k8s -n N; deploy bookie-k8s -n 3; integrate`, timed until every unit
is active (the sandbox's wait-for-idle, polling every 0.2 s).

By hand, measured in the same run on the same machine: fresh pods with the same names and
addresses, the config files and Pebble layers the charms wrote (captured from the charm
run), started in the order a person would: ZooKeeper on every pulsar pod, wait until it
serves, initialize-cluster-metadata, the bookies, wait until ready, the brokers, wait
until ready. The ratio is the charms' overhead; close to 1 is the goal.

Prints figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ops

from sandbox import Model, pods
from sandbox.lifecycle import image_tree
from sandbox.paths import Artifacts

ROOT = Path(__file__).resolve().parent.parent
CHARMS = ROOT / "charms"
FILES = {
    "pulsar": [
        "/pulsar/conf/zookeeper.conf",
        "/var/lib/pulsar/zookeeper/data/myid",
        "/pulsar/conf/broker.conf",
        "/pulsar/conf/broker-status",
    ],
    "bookie": ["/pulsar/conf/bookkeeper.conf"],
}
PROBE = {
    "zookeeper": "import socket; s=socket.create_connection(('localhost',2181),2); s.sendall(b'srvr');"
    " assert b'Mode: ' in s.recv(4096)",
    "bookie": "import urllib.request as u; u.urlopen('http://localhost:8000/api/v1/bookie/is_ready', timeout=2)",
    "broker": "import urllib.request as u; u.urlopen('http://localhost:8080/status.html', timeout=2)",
}


def charm_run(pulsar_units: int, timeline: bool = False) -> tuple[float, dict[str, dict[str, object]]]:
    model = Model.create("bench-up", update_status_interval=3600)
    try:
        started = time.perf_counter()
        # As a person types them: each command returns before the hooks run.
        model.deploy(CHARMS / "pulsar-k8s", num_units=pulsar_units, settle=False)
        model.deploy(CHARMS / "bookie-k8s", num_units=3, settle=False)
        model.integrate("pulsar-k8s", "bookie-k8s", settle=False)
        model.wait_for_idle(timeout=900, idle_period=0.0)
        elapsed = time.perf_counter() - started
        if timeline:
            for record in sorted(model.event_records, key=lambda r: r.started):
                print(
                    f"  {record.started - started:6.2f} s +{record.total_seconds:5.2f} s  {record.unit:14} "
                    f"{record.kind:24} -> {record.status}",
                    flush=True,
                )
        captured: dict[str, dict[str, object]] = {}
        for name, unit in model.units.items():
            container = next(iter(unit.pod.containers))
            client = model.pebble(name, container)
            files = {path: client.pull(path).read() for path in FILES[container]}
            captured[name] = {"container": container, "files": files, "plan": client.get_plan().to_dict()}
        return elapsed, captured
    finally:
        model.destroy()


def _wait(client: ops.pebble.Client, probe: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.exec(["python3", "-c", PROBE[probe]]).wait_output()
            return
        except (ops.pebble.ExecError, ops.pebble.ChangeError):
            time.sleep(0.2)
    raise TimeoutError(f"{probe} did not come up")


def hand_run(captured: dict[str, dict[str, object]]) -> float:
    """The same processes, configs and order, with no charm in the loop."""
    # The same model name as the charm run: the captured files name its FQDNs.
    model = Model.create("bench-up", update_status_interval=3600)
    artifacts = Artifacts.load()
    image = image_tree("apachepulsar/pulsar", artifacts)
    started_pods: list[pods.Pod] = []
    try:
        started = time.perf_counter()
        clients: dict[str, ops.pebble.Client] = {}
        for index, (name, spec) in enumerate(captured.items()):
            pod = pods.Pod(model.name, name, 2 + index, model.root / "pods" / name.replace("/", "-"))
            started_pods.append(pod)
            pod.create_network()
            mounts = (
                {"zookeeper": "/var/lib/pulsar/zookeeper"}
                if spec["container"] == "pulsar"
                else {"journal": "/var/lib/bookkeeper/journal", "ledgers": "/var/lib/bookkeeper/ledgers"}
            )
            container = pod.start_container(str(spec["container"]), artifacts.pebble, image, mounts)
            pod.wait_pebble(container)
            clients[name] = ops.pebble.Client(socket_path=str(container.socket))
        entries = [(p.address, p.fqdn, p.hostname) for p in started_pods]
        for pod in started_pods:
            pod.write_hosts(entries)

        def start(kind: str, service: str) -> None:
            for name, spec in captured.items():
                if not name.startswith(kind):
                    continue
                for path, content in spec["files"].items():  # type: ignore[union-attr]
                    clients[name].push(path, content, make_dirs=True)
                services = spec["plan"]["services"]  # type: ignore[index]
                layer = {"services": {service: services[service]}}
                clients[name].add_layer(service, layer, combine=True)
                clients[name].start_services([service])

        pulsar_units = [n for n in captured if n.startswith("pulsar-k8s")]
        start("pulsar-k8s", "zookeeper")
        for name in pulsar_units:
            _wait(clients[name], "zookeeper")
        broker_conf = captured[pulsar_units[0]]["files"]["/pulsar/conf/broker.conf"]  # type: ignore[index]
        store = next(line.split("=", 1)[1] for line in broker_conf.splitlines() if line.startswith("metadataStoreUrl="))
        hosts = [store.removeprefix("zk:").split(",")[0].split(":")[0]]
        clients[pulsar_units[0]].exec(
            [
                "/pulsar/bin/pulsar",
                "initialize-cluster-metadata",
                "--cluster",
                "pulsar",
                "--metadata-store",
                store,
                "--configuration-metadata-store",
                store,
                "--web-service-url",
                f"http://{hosts[0]}:8080",
                "--broker-service-url",
                f"pulsar://{hosts[0]}:6650",
            ],
            environment={"PULSAR_MEM": "-Xms128m -Xmx128m", "PULSAR_GC": "-XX:+UseG1GC"},
        ).wait_output()
        start("bookie-k8s", "bookie")
        for name in captured:
            if name.startswith("bookie-k8s"):
                _wait(clients[name], "bookie")
        start("pulsar-k8s", "broker")
        for name in pulsar_units:
            _wait(clients[name], "broker")
        return time.perf_counter() - started
    finally:
        for pod in started_pods:
            pod.delete()
        model.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(description="bring-up benchmark")
    parser.add_argument("--pulsar-units", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--timeline", action="store_true", help="print every event of the charm run")
    args = parser.parse_args()
    for units in args.pulsar_units:
        charms, captured = charm_run(units, args.timeline)
        hand = hand_run(captured)
        print(
            f"pulsar-k8s x{units} + bookie-k8s x3: charms {charms:6.1f} s, by hand {hand:6.1f} s, "
            f"ratio {charms / hand:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
