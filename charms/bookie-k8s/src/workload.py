"""The bookie container: the Pebble layer, bookkeeper.conf, readiness."""

from __future__ import annotations

import urllib.error
import urllib.request

import ops

from charms.pulsar_k8s.v0.pulsar_workload import PebbleWorkload, jvm_environment
from literals import BOOKIE_HTTP_PORT, PULSAR_HOME, SERVICE

LAYER = "bookie"
READY_URL = f"http://localhost:{BOOKIE_HTTP_PORT}/api/v1/bookie/is_ready"


class BookieWorkload(PebbleWorkload):
    """A BookKeeper bookie run from the Pulsar distribution at /pulsar."""

    def layer(self, heap: str, direct_memory: str) -> ops.pebble.LayerDict:
        return {
            "summary": "Apache BookKeeper bookie",
            "services": {
                SERVICE: {
                    "override": "replace",
                    "summary": "BookKeeper bookie with autorecovery",
                    "command": f"{PULSAR_HOME}/bin/pulsar bookie",
                    "startup": "enabled",
                    "environment": jvm_environment(heap, direct_memory),
                }
            },
            "checks": {
                "bookie-ready": {
                    "override": "replace",
                    "level": "ready",
                    "period": "3s",
                    "threshold": 1,
                    "http": {"url": READY_URL},
                }
            },
        }

    def restart(self) -> None:
        self.container.restart(SERVICE)

    def is_running(self) -> bool:
        services = self.container.get_services(SERVICE)
        return SERVICE in services and services[SERVICE].is_running()

    def ready(self) -> bool:
        """The bookie's own readiness endpoint (the charm shares the pod's network)."""
        try:
            with urllib.request.urlopen(READY_URL, timeout=2.0) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False
