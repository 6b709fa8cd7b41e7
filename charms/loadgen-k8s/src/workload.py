"""The loadgen container: the engine's source, the token and CA, the workers' services and their files."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any

import ops

from charms.pulsar_k8s.v0.pulsar_workload import PebbleWorkload, template_environment
from literals import CA_FILE, LAYER, RESULTS_DIR, SERVICE_PREFIX, TOKEN_FILE
from managers.spec import Engine
from managers.workers import ENGINE_SOURCE, Worker

logger = logging.getLogger(__name__)

CHARM_DIR = Path(__file__).parent.parent
ENGINE_FILE = CHARM_DIR / "src" / "engine" / "LoadWorker.java"
TEMPLATES = CHARM_DIR / "templates"


def test_dir(test_id: str) -> str:
    return f"{RESULTS_DIR}/tests/{test_id}"


def service_name(worker: str) -> str:
    return f"{SERVICE_PREFIX}{worker}"


class LoadgenWorkload(PebbleWorkload):
    """Worker JVMs run as one-shot Pebble services (never restarted), one per worker."""

    def __init__(self, container: ops.Container) -> None:
        super().__init__(container)
        self._templates = template_environment(TEMPLATES)

    def install_engine(self) -> None:
        self.write(ENGINE_SOURCE, ENGINE_FILE.read_text())

    def write_token(self, token: str) -> None:
        # No newline: a client that sends the file's bytes as they are would be refused for it.
        self.write(TOKEN_FILE, token, permissions=0o600)

    def remove_token(self) -> None:
        self.remove(TOKEN_FILE)

    def write_ca(self, pem: str) -> None:
        # Replaced in place: a running worker's client reloads it when it changes.
        self.write(CA_FILE, pem, permissions=0o644)

    def remove_ca(self) -> None:
        self.remove(CA_FILE)

    def started(self, test_id: str) -> list[str]:
        """The workers this unit started for a test (empty if it never did): its own record in storage."""
        record = self.read_json(f"{test_dir(test_id)}/workers.json")
        return [str(w) for w in record] if isinstance(record, dict) else []

    def engines(self, test_id: str) -> dict[str, str]:
        """Worker name -> the engine it ran (`java` or `pulsar-perf`)."""
        record = self.read_json(f"{test_dir(test_id)}/workers.json")
        return {str(k): str(v) for k, v in record.items()} if isinstance(record, dict) else {}

    def start_workers(self, test_id: str, workers: list[Worker]) -> None:
        """Render each worker's properties, put their services in the plan and start them, once."""
        directory = test_dir(test_id)
        template = self._templates.get_template("worker.properties.j2")
        services: dict[str, ops.pebble.ServiceDict] = {}
        for worker in workers:
            if worker.engine is Engine.JAVA:
                self.write(worker.properties_file, template.render(**worker.values), permissions=0o600)
            services[service_name(worker.name)] = {
                "override": "replace",
                "summary": f"load test {test_id}: {worker.name}",
                "command": shlex.join(worker.command),
                "environment": worker.environment,
                "startup": "disabled",
                "on-success": "ignore",
                "on-failure": "ignore",
                "kill-delay": "20s",
            }
        self.container.add_layer(LAYER, {"services": services}, combine=True)
        self.write(f"{directory}/workers.json", json.dumps({w.name: w.engine.value for w in workers}))
        self.container.start(*services)

    def running_workers(self, workers: list[str]) -> set[str]:
        running = self.running(service_name(w) for w in workers)
        return {w for w in workers if service_name(w) in running}

    def stop_workers(self, workers: list[str]) -> None:
        """Stop (SIGTERM, then SIGKILL after the kill delay): the engine writes its partial result."""
        if running := self.running(service_name(w) for w in workers):
            self.container.stop(*running)

    def read_json(self, path: str) -> Any:
        """A JSON file of the container, or None when it is missing or does not decode."""
        try:
            return json.loads(self.container.pull(path).read())
        except (ops.pebble.PathError, ValueError):
            return None

    def worker_file(self, test_id: str, worker: str, kind: str) -> dict[str, Any] | None:
        """A worker's `progress` or `result` JSON, or None."""
        data = self.read_json(f"{test_dir(test_id)}/{worker}.{kind}.json")
        return data if isinstance(data, dict) else None
