#!/usr/bin/env python3
"""pulsar-client-k8s: a test client of the `pulsar` interface.

It keeps a copy of the last connection it was granted (token included) in its container, as
an application that cached its credentials would, so that tests can try a revoked token after
the relation is gone (`kept-token: true` on the actions).
"""

from __future__ import annotations

import json
from pathlib import Path

import ops

from charms.pulsar_k8s.v0.pulsar import Connection, PulsarRequirer

SCRIPT = "/pulsar/tester/client.py"
KEPT_CONNECTION = "/pulsar/tester/kept-connection.json"


class PulsarClientCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.container = self.unit.get_container("client")
        self.pulsar = PulsarRequirer(self, namespace=str(self.config["namespace"]) or None)
        for event in (
            self.on.config_changed,
            self.on.pulsar_relation_changed,
            self.on.pulsar_relation_broken,
            self.on.secret_changed,
            self.on.client_pebble_ready,
            self.on.update_status,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.produce_action, self._on_produce)
        framework.observe(self.on.consume_action, self._on_consume)
        framework.observe(self.on.admin_action, self._on_admin)
        framework.observe(self.on.connection_action, self._on_connection)

    def _reconcile(self, _: ops.EventBase) -> None:
        self.pulsar.publish_request()
        if error := self.pulsar.error():
            self.unit.status = ops.BlockedStatus(f"refused: {error}")
        elif connection := self.pulsar.connection():
            self._keep(connection)
            self.unit.status = ops.ActiveStatus(f"granted {connection.namespace}")
        else:
            self.unit.status = ops.WaitingStatus("waiting for pulsar-k8s")

    def _keep(self, connection: Connection) -> None:
        if self.container.can_connect():
            kept = json.dumps(connection.__dict__, sort_keys=True)
            self.container.push(KEPT_CONNECTION, kept, make_dirs=True, permissions=0o600)

    def _kept(self) -> Connection | None:
        try:
            return Connection(**json.loads(self.container.pull(KEPT_CONNECTION).read()))
        except (ops.pebble.PathError, ops.pebble.ConnectionError, ValueError, TypeError):
            return None

    def _connection(self, event: ops.ActionEvent) -> Connection | None:
        """The live connection, or with `kept-token` the last one granted (even if revoked since)."""
        kept = bool(event.params.get("kept-token"))
        connection = self._kept() if kept else self.pulsar.connection()
        if connection is None:
            event.fail("no connection kept" if kept else "no connection granted yet")
        return connection

    def _run(self, event: ops.ActionEvent, request: dict[str, object]) -> dict[str, object] | None:
        """Run the client script with `request` (token included) on its stdin, never its argv."""
        self.container.push(SCRIPT, (Path(__file__).parent / "client.py").read_text(), make_dirs=True)
        try:
            process = self.container.exec(["python3", SCRIPT], stdin=json.dumps(request), timeout=300)
            stdout, _ = process.wait_output()
        except ops.pebble.ExecError as error:
            lines = str(error.stdout or "").strip().splitlines()
            reason = json.loads(lines[-1]).get("error") if lines and lines[-1].startswith("{") else error.stderr
            event.fail(f"client failed: {reason}")
            return None
        return json.loads(stdout.strip().splitlines()[-1])

    def _topic(self, event: ops.ActionEvent, namespace: str) -> str:
        return f"persistent://{namespace}/{event.params['topic']}"

    def _on_produce(self, event: ops.ActionEvent) -> None:
        connection = self._connection(event)
        if connection is None:
            return
        token = connection.token if event.params["authenticate"] else ""
        topic = self._topic(event, event.params.get("namespace") or connection.namespace)
        request = {
            "mode": "produce",
            "url": connection.service_url,
            "token": token,
            "topic": topic,
            "ca": connection.tls_ca,
        }
        result = self._run(event, {**request, "count": event.params["count"]})
        if result is not None:
            event.set_results({k: v if isinstance(v, str) else json.dumps(v) for k, v in result.items()})

    def _on_consume(self, event: ops.ActionEvent) -> None:
        connection = self._connection(event)
        if connection is None:
            return
        topic = self._topic(event, event.params.get("namespace") or connection.namespace)
        request = {
            "mode": "consume",
            "url": connection.service_url,
            "token": connection.token,
            "topic": topic,
            "count": event.params["count"],
            "subscription": event.params["subscription"],
            "ca": connection.tls_ca,
            "indices": event.params.get("indices", False),
        }
        result = self._run(event, request)
        if result is not None:
            event.set_results({k: v if isinstance(v, str) else json.dumps(v) for k, v in result.items()})

    def _on_admin(self, event: ops.ActionEvent) -> None:
        connection = self._connection(event)
        if connection is None:
            return
        token = event.params.get("token") or connection.token
        request = {
            "mode": "admin",
            "url": connection.web_service_url,
            "token": token,
            "method": event.params.get("method", "GET"),
            "path": event.params["path"],
            "ca": connection.tls_ca,
        }
        result = self._run(event, request)
        if result is not None:
            event.set_results({k: v if isinstance(v, str) else json.dumps(v) for k, v in result.items()})

    def _on_connection(self, event: ops.ActionEvent) -> None:
        connection = self._connection(event)
        if connection is not None:
            event.set_results(
                {
                    "role": connection.role,
                    "namespace": connection.namespace,
                    "service-url": connection.service_url,
                    "web-service-url": connection.web_service_url,
                }
            )


if __name__ == "__main__":  # pragma: nocover
    ops.main(PulsarClientCharm)
