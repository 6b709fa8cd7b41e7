#!/usr/bin/env python3
"""pulsar-client-k8s: a test client of the `pulsar` interface."""

from __future__ import annotations

import json
from pathlib import Path

import ops

from charms.pulsar_k8s.v0.pulsar import PulsarRequirer

SCRIPT = "/pulsar/tester/client.py"


class PulsarClientCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.container = self.unit.get_container("client")
        self.pulsar = PulsarRequirer(self, namespace=str(self.config["namespace"]) or None)
        for event in (
            self.on.config_changed,
            self.on.pulsar_relation_changed,
            self.on.secret_changed,
            self.on.client_pebble_ready,
            self.on.update_status,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.produce_action, self._on_produce)
        framework.observe(self.on.consume_action, self._on_consume)

    def _reconcile(self, _: ops.EventBase) -> None:
        self.pulsar.publish_request()
        if error := self.pulsar.error():
            self.unit.status = ops.BlockedStatus(f"refused: {error}")
        elif connection := self.pulsar.connection():
            self.unit.status = ops.ActiveStatus(f"granted {connection.namespace}")
        else:
            self.unit.status = ops.WaitingStatus("waiting for pulsar-k8s")

    def _run(self, event: ops.ActionEvent, argv: list[str]) -> dict[str, object] | None:
        self.container.push(SCRIPT, (Path(__file__).parent / "client.py").read_text(), make_dirs=True)
        try:
            stdout, _ = self.container.exec(["python3", SCRIPT, *argv], timeout=300).wait_output()
        except ops.pebble.ExecError as error:
            lines = str(error.stdout or "").strip().splitlines()
            reason = json.loads(lines[-1]).get("error") if lines and lines[-1].startswith("{") else error.stderr
            event.fail(f"client failed: {reason}")
            return None
        return json.loads(stdout.strip().splitlines()[-1])

    def _topic(self, event: ops.ActionEvent, namespace: str) -> str:
        return f"persistent://{namespace}/{event.params['topic']}"

    def _on_produce(self, event: ops.ActionEvent) -> None:
        connection = self.pulsar.connection()
        if connection is None:
            event.fail("no connection granted yet")
            return
        token = connection.token if event.params["authenticate"] else ""
        topic = self._topic(event, event.params.get("namespace") or connection.namespace)
        result = self._run(event, ["produce", connection.service_url, token, topic, str(event.params["count"])])
        if result is not None:
            event.set_results({k: str(v) for k, v in result.items()})

    def _on_consume(self, event: ops.ActionEvent) -> None:
        connection = self.pulsar.connection()
        if connection is None:
            event.fail("no connection granted yet")
            return
        topic = self._topic(event, connection.namespace)
        argv = [
            "consume",
            connection.service_url,
            connection.token,
            topic,
            str(event.params["count"]),
            event.params["subscription"],
        ]
        result = self._run(event, argv)
        if result is not None:
            event.set_results({k: str(v) for k, v in result.items()})


if __name__ == "__main__":  # pragma: nocover
    ops.main(PulsarClientCharm)
