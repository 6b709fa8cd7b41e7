"""A stand-in for the Kubernetes API at lightkube's client: one application's StatefulSet and pods.

Tests patch `lightkube.Client` with `FakeKubernetes.client`; the charms' refresh library makes
its client through that name. Every request is recorded; the StatefulSet's partition follows
the patches sent, and each pod's `controller-revision-hash` is the update revision at or above
the partition, the current one below it (unless a test sets `pod_revisions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx2
from lightkube import ApiError
from lightkube.models.apps_v1 import (
    RollingUpdateStatefulSetStrategy,
    StatefulSetSpec,
    StatefulSetStatus,
    StatefulSetUpdateStrategy,
)
from lightkube.models.core_v1 import PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import Pod

OLD = "rev-old"
NEW = "rev-new"


def _api_error(code: int, message: str) -> ApiError:
    request = httpx2.Request("GET", "https://kubernetes.default.svc/apis")
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}
    return ApiError(request=request, response=httpx2.Response(code, json=body, request=request))


@dataclass
class FakeKubernetes:
    app: str
    replicas: int = 1
    partition: int | None = None
    current_revision: str = OLD
    update_revision: str = OLD
    pod_revisions: dict[int, str] = field(default_factory=dict)
    trusted: bool = True
    reachable: bool = True
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)
    namespaces: set[str | None] = field(default_factory=set)

    def refreshing(self, replicas: int, partition: int) -> FakeKubernetes:
        """A `juju refresh` under way: the pod template changed, pods at or above `partition` replaced."""
        self.replicas, self.partition = replicas, partition
        self.current_revision, self.update_revision = OLD, NEW
        return self

    def steady(self, replicas: int, partition: int | None = None) -> FakeKubernetes:
        self.replicas, self.partition = replicas, partition
        self.current_revision = self.update_revision = OLD
        return self

    @property
    def partitions_set(self) -> list[int]:
        """The partitions the charm patched, in order."""
        return [p["spec"]["updateStrategy"]["rollingUpdate"]["partition"] for p in self.patches]

    def client(self, *_: Any, namespace: str | None = None, **__: Any) -> FakeClient:
        self.namespaces.add(namespace)
        return FakeClient(self)

    def pod_revision(self, ordinal: int) -> str:
        if ordinal in self.pod_revisions:
            return self.pod_revisions[ordinal]
        return self.update_revision if ordinal >= (self.partition or 0) else self.current_revision

    def statefulset(self) -> StatefulSet:
        strategy = StatefulSetUpdateStrategy(
            type="RollingUpdate", rollingUpdate=RollingUpdateStatefulSetStrategy(partition=self.partition)
        )
        return StatefulSet(
            metadata=ObjectMeta(name=self.app),
            spec=StatefulSetSpec(
                selector=LabelSelector(matchLabels={"app.kubernetes.io/name": self.app}),
                serviceName=f"{self.app}-endpoints",
                template=PodTemplateSpec(),
                replicas=self.replicas,
                updateStrategy=strategy,
            ),
            status=StatefulSetStatus(
                replicas=self.replicas, currentRevision=self.current_revision, updateRevision=self.update_revision
            ),
        )


@dataclass
class FakeClient:
    cluster: FakeKubernetes

    def _check(self, verb: str, kind: str, name: str) -> None:
        self.cluster.requests.append((verb, kind, name))
        if not self.cluster.reachable:
            raise httpx2.ConnectError("[Errno 111] Connection refused")
        if not self.cluster.trusted:
            raise _api_error(403, f'{kind.lower()}s "{name}" is forbidden: cannot {verb} resource')

    def get(self, res: type, name: str, *, namespace: str | None = None) -> Any:
        self._check("get", res.__name__, name)
        if res is StatefulSet and name == self.cluster.app:
            return self.cluster.statefulset()
        app, _, ordinal = name.rpartition("-")
        if res is Pod and app == self.cluster.app and ordinal.isdigit():
            labels = {"controller-revision-hash": self.cluster.pod_revision(int(ordinal))}
            return Pod(metadata=ObjectMeta(name=name, labels=labels))
        raise _api_error(404, f'{res.__name__.lower()}s "{name}" not found')

    def patch(self, res: type, name: str, obj: dict[str, Any], *, namespace: str | None = None, **_: Any) -> Any:
        self._check("patch", res.__name__, name)
        assert res is StatefulSet
        assert name == self.cluster.app
        self.cluster.patches.append(obj)
        self.cluster.partition = obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
        return self.cluster.statefulset()
