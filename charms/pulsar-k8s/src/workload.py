"""The pulsar container: the Pebble layer of ZooKeeper and the broker, files, probes."""

from __future__ import annotations

import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import ops

from charms.pulsar_k8s.v0.pulsar_workload import (
    IMAGE_GID,
    IMAGE_UID,
    PROBE_TIMEOUT,
    PebbleWorkload,
    as_image_user,
    http_ready,
    jvm_environment,
    readiness_check,
)
from literals import (
    BROKER_SERVICE,
    BROKER_WEB_PORT,
    BROKER_WEB_PORT_TLS,
    INIT_HEAP,
    INIT_TIMEOUT,
    JAAS_CONF,
    PULSAR_HOME,
    SERVING_MODES,
    TLS_CA,
    TOKEN_KEYS_DIR,
    TOKEN_KEYS_PORT,
    TOKEN_KEYS_SERVICE,
    ZOOKEEPER_CLIENT_PORT,
    ZOOKEEPER_SERVICE,
)

LAYER = "pulsar"
# A line of `conf`'s membership: server.<id>=<host>:<quorum port>:<election port>:<role>
_MEMBER_LINE = re.compile(r"^server\.(\d+)=", re.MULTILINE)
# With the plaintext ports closed, the broker's readiness is its status page over HTTPS, as
# the charm asks it: Pebble's HTTP checks trust no private CA, and the TLS port accepts
# connections before the page answers. The CA is checked, not the name (it is localhost here).
TLS_STATUS_PROBE = (
    "python3 -c 'import ssl, urllib.request; "
    f'context = ssl.create_default_context(cafile="{TLS_CA}"); context.check_hostname = False; '
    f'urllib.request.urlopen("https://localhost:{BROKER_WEB_PORT_TLS}/status.html", timeout=2, context=context)\''
)
TOKEN_KEYS_COMMAND = f"python3 -m http.server {TOKEN_KEYS_PORT} --bind 127.0.0.1 --directory {TOKEN_KEYS_DIR}"
# A Pebble exec check: bash (bin/pulsar needs it anyway) speaks the four-letter word.
ZOOKEEPER_SERVING_PROBE = (
    f"bash -c 'exec 3<>/dev/tcp/localhost/{ZOOKEEPER_CLIENT_PORT} && printf srvr >&3 && grep -q \"^Mode: \" <&3'"
)


@dataclass(frozen=True)
class UnitProbe:
    """What one unit's ZooKeeper and broker answer, asked over the network."""

    zookeeper_mode: str | None  # None: no answer; "" answered without serving
    broker_ready: bool

    @property
    def zookeeper_serving(self) -> bool:
        return self.zookeeper_mode in SERVING_MODES

    @property
    def zookeeper_answers(self) -> bool:
        return self.zookeeper_mode is not None


class PulsarWorkload(PebbleWorkload):
    """ZooKeeper and the broker, both run from the Pulsar distribution at /pulsar.

    Both run as the image's non-root user, which owns every file the charm pushes and the
    ZooKeeper storage.
    """

    def __init__(self, container: ops.Container) -> None:
        super().__init__(container, files_owner=(IMAGE_UID, IMAGE_GID))
        # Set while the brokers' plaintext ports are closed: probes go to HTTPS, verified with it.
        self.web_tls: ssl.SSLContext | None = None

    def layer(self, zookeeper_heap: str, broker_heap: str | None, tls_only: bool = False) -> ops.pebble.LayerDict:
        """The Pebble layer: ZooKeeper always, the broker once it may start (`broker_heap` set).

        With `tls_only` (no plaintext port) the broker's readiness check fetches its status
        page over HTTPS (`TLS_STATUS_PROBE`).
        """
        services: dict[str, ops.pebble.ServiceDict] = {
            ZOOKEEPER_SERVICE: as_image_user(
                {
                    "override": "replace",
                    "summary": "ZooKeeper (Pulsar metadata store)",
                    "command": f"{PULSAR_HOME}/bin/pulsar zookeeper",
                    "startup": "enabled",
                    "environment": jvm_environment(zookeeper_heap, jaas_conf=JAAS_CONF),
                }
            )
        }
        checks: dict[str, ops.pebble.CheckDict] = {
            # Not a TCP check: ZooKeeper listens long before it serves (it refuses requests
            # until its ensemble has a quorum); `srvr` says "Mode: ..." only once it serves.
            "zookeeper-ready": readiness_check({"exec": {"command": ZOOKEEPER_SERVING_PROBE}}),
        }
        if broker_heap:
            # The broker fetches the token keys from here (see managers/auth.py); only the pod sees it.
            services[TOKEN_KEYS_SERVICE] = as_image_user(
                {
                    "override": "replace",
                    "summary": "token signing keys (public) for the broker",
                    "command": TOKEN_KEYS_COMMAND,
                    "startup": "enabled",
                }
            )
            services[BROKER_SERVICE] = as_image_user(
                {
                    "override": "replace",
                    "summary": "Pulsar broker",
                    "command": f"{PULSAR_HOME}/bin/pulsar broker",
                    "startup": "enabled",
                    "after": [ZOOKEEPER_SERVICE, TOKEN_KEYS_SERVICE],
                    "environment": jvm_environment(broker_heap, broker_heap, jaas_conf=JAAS_CONF),
                }
            )
            probe: dict[str, object] = (
                {"exec": {"command": TLS_STATUS_PROBE}}
                if tls_only
                else {"http": {"url": f"http://localhost:{BROKER_WEB_PORT}/status.html"}}
            )
            checks["broker-ready"] = readiness_check(probe)
        return {"summary": "Apache Pulsar", "services": services, "checks": checks}

    def zookeeper_command(self, command: str, host: str = "localhost") -> str | None:
        """A ZooKeeper four-letter command to a server, or None if it does not answer.

        The charm container shares the pod's network, so localhost is this unit's ZooKeeper.
        """
        try:
            with socket.create_connection((host, ZOOKEEPER_CLIENT_PORT), timeout=PROBE_TIMEOUT) as conn:
                conn.sendall(command.encode())
                chunks = []
                while chunk := conn.recv(4096):
                    chunks.append(chunk)
        except OSError:
            return None
        return b"".join(chunks).decode(errors="replace")

    def wait_for_zookeeper(self, timeout: float) -> str | None:
        """Poll until the local ZooKeeper serves (or `timeout` passes); return its mode."""
        deadline = time.monotonic() + timeout
        while (mode := self.zookeeper_mode()) not in SERVING_MODES and time.monotonic() < deadline:
            time.sleep(1.0)
        return mode

    def zookeeper_mode(self, host: str = "localhost") -> str | None:
        """The server's mode: leader, follower or standalone while it serves.

        "" when it answers without serving (no quorum), None when it does not answer.
        """
        answer = self.zookeeper_command("srvr", host)
        if answer is None:
            return None
        for line in answer.splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return ""

    def zookeeper_membership(self, host: str = "localhost") -> set[int] | None:
        """The ids of the ensemble a server runs (`conf`'s membership), or None if it does not answer."""
        answer = self.zookeeper_command("conf", host)
        if answer is None:
            return None
        return {int(found.group(1)) for found in _MEMBER_LINE.finditer(answer)}

    def broker_ready(self, host: str) -> bool:
        """Whether a broker's status page answers (over HTTPS with `web_tls`: then by its FQDN)."""
        if self.web_tls is not None:
            return http_ready(f"https://{host}:{BROKER_WEB_PORT_TLS}/status.html", context=self.web_tls)
        return http_ready(f"http://{host}:{BROKER_WEB_PORT}/status.html")

    def probe(self, hosts: list[str]) -> dict[str, UnitProbe]:
        """Ask every host's ZooKeeper and broker, all at once (a down pod costs one timeout)."""
        if not hosts:
            return {}
        with ThreadPoolExecutor(max_workers=2 * len(hosts)) as pool:
            modes = {host: pool.submit(self.zookeeper_mode, host) for host in hosts}
            brokers = {host: pool.submit(self.broker_ready, host) for host in hosts}
            return {host: UnitProbe(modes[host].result(), brokers[host].result()) for host in hosts}

    def initialize_cluster_metadata(self, cluster: str, metadata_store: str, web_url: str, broker_url: str) -> None:
        """Create the cluster's metadata (and BookKeeper's) if absent; raise WorkloadCommandError."""
        argv = [f"{PULSAR_HOME}/bin/pulsar", "initialize-cluster-metadata", "--cluster", cluster]
        argv += ["--metadata-store", metadata_store, "--configuration-metadata-store", metadata_store]
        argv += ["--web-service-url", web_url, "--broker-service-url", broker_url]
        environment = jvm_environment(INIT_HEAP, jaas_conf=JAAS_CONF)
        self.run(argv, timeout=INIT_TIMEOUT, environment=environment, user_id=IMAGE_UID, group_id=IMAGE_GID)
