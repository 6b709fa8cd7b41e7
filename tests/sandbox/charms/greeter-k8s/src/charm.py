#!/usr/bin/env python3
"""Greeter: the sandbox's own test charm."""

from __future__ import annotations

import logging
import secrets
import shlex
import time
import urllib.request

import ops
from lightkube import ApiError, Client, KubeConfig
from lightkube.config.models import User
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

logger = logging.getLogger(__name__)

WEB_ROOT = "/pulsar/www"
KEPT = "/var/lib/greeter/kept.txt"
LOST = "/pulsar/www/lost.txt"
VERSION = "1"  # a refresh test changes it in a copy of this charm


class GreeterCharm(ops.CharmBase):
    """Serves `message` over HTTP; greets related greeters through relation data and a secret.

    Every hook logs what the charm saw (the event, planned units, leadership, whether this
    unit is dying, its Pebble plan's services), for tests that read the unit's debug log.
    """

    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self._stored.set_default(dying=False)
        self.container = self.unit.get_container("web")
        for bound in self.on.events().values():
            if issubclass(bound.event_type, ops.HookEvent):
                framework.observe(bound, self._observe)
        for event in (
            self.on.web_pebble_ready,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.web_pebble_check_recovered,
        ):
            framework.observe(event, self._on_reconcile)
        framework.observe(self.on.web_pebble_check_failed, self._on_check_failed)
        framework.observe(self.on.greeting_relation_changed, self._on_greeting_changed)
        framework.observe(self.on.upstream_relation_joined, self._on_upstream_joined)
        framework.observe(self.on.upstream_relation_changed, self._on_upstream_changed)
        framework.observe(self.on.secret_changed, self._on_upstream_changed)
        framework.observe(self.on.replicas_relation_changed, self._on_reconcile)
        framework.observe(self.on.replicas_relation_departed, self._on_reconcile)
        framework.observe(self.on.fetch_action, self._on_fetch)
        framework.observe(self.on.write_files_action, self._on_write_files)
        framework.observe(self.on.read_files_action, self._on_read_files)
        framework.observe(self.on.exec_action, self._on_exec)
        framework.observe(self.on.read_secret_action, self._on_read_secret)
        framework.observe(self.on.write_app_data_action, self._on_write_app_data)
        framework.observe(self.on.read_local_action, self._on_read_local)
        framework.observe(self.on.read_credentials_action, self._on_read_credentials)
        framework.observe(self.on.read_resource_action, self._on_read_resource)
        framework.observe(self.on.statefulset_action, self._on_statefulset)
        framework.observe(self.on.secret_changed, self._on_secret_changed)

    def _observe(self, event: ops.HookEvent) -> None:
        if isinstance(event, ops.RelationDepartedEvent) and event.departing_unit == self.unit:
            self._stored.dying = True
        services = "-"
        if self.container.can_connect():
            services = ",".join(sorted(self.container.get_plan().services)) or "none"
        departing = (
            event.departing_unit.name if isinstance(event, ops.RelationDepartedEvent) and event.departing_unit else "-"
        )
        logger.info(
            "saw %s planned=%d leader=%s dying=%s departing=%s services=%s",
            event.handle.kind,
            self.app.planned_units(),
            self.unit.is_leader(),
            self._stored.dying,
            departing,
            services,
        )

    @property
    def _message(self) -> str:
        return str(self.config["message"])

    def _on_reconcile(self, _: ops.EventBase) -> None:
        if not self.container.can_connect():
            self.unit.status = ops.WaitingStatus("waiting for Pebble")
            return
        port = int(self.config["port"])
        if not 1024 <= port <= 65535:
            self.unit.status = ops.BlockedStatus(f"invalid port {port}: use 1024-65535")
            return
        self.container.push(f"{WEB_ROOT}/index.html", f"{self._message} from {self.unit.name}\n", make_dirs=True)
        layer = ops.pebble.Layer(
            {
                "summary": "greeter",
                "services": {
                    "web": {
                        "override": "replace",
                        "startup": "enabled",
                        "command": f"python3 -m http.server {port} --directory {WEB_ROOT}",
                    }
                },
                "checks": {
                    "web-up": {
                        "override": "replace",
                        "level": "alive",
                        "period": "1s",
                        "threshold": 2,
                        "http": {"url": f"http://localhost:{port}/index.html"},
                    }
                },
            }
        )
        ready_path = str(self.config["ready-path"])
        if ready_path:
            layer.checks["web-ready"] = ops.pebble.Check(
                "web-ready",
                {
                    "override": "replace",
                    "level": "ready",
                    "period": "1s",
                    "threshold": 1,
                    "http": {"url": f"http://localhost:{port}{ready_path}"},
                },
            )
        self.container.add_layer("greeter", layer, combine=True)
        self.container.replan()
        self.unit.set_ports(port)
        self.unit.set_workload_version(VERSION)
        for relation in self.model.relations["greeting"]:
            self._publish_greeting(relation)
        peers = self.model.get_relation("replicas")
        count = len(peers.units) if peers else 0
        self.unit.status = ops.ActiveStatus(f"serving {self._message!r} on :{port} ({count} peers)")

    def _on_check_failed(self, event: ops.PebbleCheckFailedEvent) -> None:
        self.unit.status = ops.MaintenanceStatus(f"check {event.info.name} failing")

    def _on_greeting_changed(self, event: ops.RelationChangedEvent) -> None:
        self._publish_greeting(event.relation)

    def _publish_greeting(self, relation: ops.Relation) -> None:
        if not self.unit.is_leader():
            return
        try:
            secret = self.model.get_secret(label="token")
        except ops.SecretNotFoundError:
            secret = self.app.add_secret({"token": secrets.token_hex(8)}, label="token")
        secret.grant(relation)
        relation.data[self.app].update({"greeting": self._message, "token-secret": secret.id or ""})

    def _on_upstream_joined(self, event: ops.RelationJoinedEvent) -> None:
        event.relation.data[self.unit]["name"] = self.unit.name

    def _on_upstream_changed(self, _: ops.EventBase) -> None:
        relation = self.model.get_relation("upstream")
        if relation is None or relation.app is None:
            return
        data = relation.data[relation.app]
        if "token-secret" not in data:
            self.unit.status = ops.WaitingStatus("waiting for a greeting")
            return
        token = self.model.get_secret(id=data["token-secret"]).get_content(refresh=True)["token"]
        relation.data[self.unit].update({"received": data["greeting"], "token-length": str(len(token))})
        self.unit.status = ops.ActiveStatus(f"heard {data['greeting']!r}")

    def _on_fetch(self, event: ops.ActionEvent) -> None:
        try:
            with urllib.request.urlopen(event.params["url"], timeout=5) as response:  # noqa: S310
                event.set_results({"body": response.read().decode().strip()})
        except OSError as error:
            event.fail(f"fetch failed: {error}")

    def _on_write_files(self, event: ops.ActionEvent) -> None:
        self.container.push(KEPT, event.params["content"], make_dirs=True)
        self.container.push(LOST, event.params["content"], make_dirs=True)

    def _on_read_files(self, event: ops.ActionEvent) -> None:
        results = {}
        for key, path in (("kept", KEPT), ("lost", LOST)):
            try:
                results[key] = self.container.pull(path).read()
            except ops.pebble.PathError:
                results[key] = "missing"
        event.set_results(results)

    def _on_exec(self, event: ops.ActionEvent) -> None:
        try:
            stdout, stderr = self.container.exec(shlex.split(event.params["command"])).wait_output()
        except ops.pebble.ExecError as error:
            event.fail(f"exit code {error.exit_code}: {error.stderr}")
            return
        event.set_results({"stdout": stdout.strip(), "stderr": (stderr or "").strip()})

    def _on_read_secret(self, event: ops.ActionEvent) -> None:
        try:
            event.set_results(self.model.get_secret(id=event.params["id"]).get_content())
        except (ops.SecretNotFoundError, ops.ModelError) as error:
            event.fail(f"cannot read secret: {error}")

    def _on_read_credentials(self, event: ops.ActionEvent) -> None:
        """Read the user secret of the `credentials` option: the revision this unit tracks, or the latest."""
        uri = str(self.config.get("credentials") or "")
        if not uri:
            event.fail("credentials is not set")
            return
        try:
            content = self.model.get_secret(id=uri).get_content(refresh=bool(event.params["refresh"]))
        except ops.SecretNotFoundError:
            event.fail(f"secret not found: {uri}")
            return
        except ops.ModelError as error:
            event.fail(f"cannot read secret: {error}")
            return
        event.set_results(content)

    def _on_secret_changed(self, event: ops.SecretChangedEvent) -> None:
        uri = str(self.config.get("credentials") or "")
        if uri and event.secret.id and event.secret.id.rsplit(":", 1)[-1] == uri.rsplit(":", 1)[-1]:
            keys = sorted(event.secret.get_content(refresh=True))
            logger.info("credentials moved to their latest revision (keys %s)", ",".join(keys))

    def _on_read_resource(self, event: ops.ActionEvent) -> None:
        try:
            path = self.model.resources.fetch("greeting-file")
        except ops.ModelError as error:
            event.fail(f"cannot fetch resource: {error}")
            return
        event.set_results({"content": path.read_text(), "path": str(path)})

    def _on_statefulset(self, event: ops.ActionEvent) -> None:
        """What a data charm does around `juju refresh`: read its StatefulSet, move the partition, read a pod."""
        token = str(event.params["token"])
        client = Client(field_manager=self.app.name)
        if token:  # the pod's own cluster and namespace, someone else's credentials
            found = KubeConfig.from_env().get()
            assert found is not None
            config = KubeConfig.from_one(cluster=found.cluster, user=User(token=token), namespace=found.namespace)
            client = Client(config=config, field_manager=self.app.name)
        name = str(event.params["name"]) or self.app.name
        pod_name = str(event.params["pod"]) or self.unit.name.replace("/", "-")
        kinds = {"strategic": PatchType.STRATEGIC, "merge": PatchType.MERGE, "json": PatchType.JSON}
        try:
            if "partition" in event.params:
                partition = int(event.params["partition"])
                patch_type = kinds[str(event.params["patch-type"])]
                body: dict[str, object] | list[dict[str, object]] = {
                    "spec": {"updateStrategy": {"rollingUpdate": {"partition": partition}}}
                }
                if patch_type == PatchType.JSON:
                    path = "/spec/updateStrategy/rollingUpdate/partition"
                    body = [{"op": "replace", "path": path, "value": partition}]
                client.patch(StatefulSet, name, body, patch_type=patch_type)
            found_set = client.get(StatefulSet, name)
            pod = client.get(Pod, pod_name)
        except ApiError as error:
            event.set_results(
                {"code": error.status.code, "reason": error.status.reason, "message": error.status.message}
            )
            event.fail(f"{error.status.code} {error.status.reason}: {error.status.message}")
            return
        spec, status = found_set.spec, found_set.status
        assert spec is not None
        assert status is not None
        assert pod.metadata is not None
        strategy = spec.updateStrategy.rollingUpdate if spec.updateStrategy else None
        labels = pod.metadata.labels or {}
        conditions = pod.status.conditions if pod.status and pod.status.conditions else []
        event.set_results(
            {
                "partition": strategy.partition if strategy and strategy.partition is not None else 0,
                "replicas": spec.replicas or 0,
                "ready-replicas": status.readyReplicas or 0,
                "updated-replicas": status.updatedReplicas or 0,
                "current-revision": status.currentRevision or "",
                "update-revision": status.updateRevision or "",
                "pod-revision": labels.get("controller-revision-hash", ""),
                "pod-index": labels.get("apps.kubernetes.io/pod-index", ""),
                "pod-ready": next((c.status for c in conditions if c.type == "Ready"), "Unknown"),
                "pod-phase": pod.status.phase if pod.status else "",
            }
        )

    def _on_read_local(self, event: ops.ActionEvent) -> None:
        """Read a file where the charm runs (the unit agent, in the pod's network namespace)."""
        try:
            with open(event.params["path"]) as local:
                event.set_results({"content": local.read()})
        except OSError as error:
            event.fail(f"cannot read: {error}")

    def _on_write_app_data(self, event: ops.ActionEvent) -> None:
        relation = self.model.get_relation("greeting")
        if relation is None:
            event.fail("no greeting relation")
            return
        time.sleep(float(event.params["delay"]))
        try:
            relation.data[self.app]["note"] = event.params["value"]
        except ops.RelationDataError as error:
            event.fail(f"cannot write application data: {error}")


if __name__ == "__main__":  # pragma: nocover
    ops.main(GreeterCharm)
