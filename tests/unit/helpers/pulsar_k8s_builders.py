"""Builders for pulsar-k8s unit tests: a unit in a model named `test`, with its files on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops import testing

FQDN0 = "pulsar-k8s-0.pulsar-k8s-endpoints.test.svc.cluster.local"
FQDN1 = "pulsar-k8s-1.pulsar-k8s-endpoints.test.svc.cluster.local"
KEY = "c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2Q="
INIT = ["/pulsar/bin/pulsar", "initialize-cluster-metadata"]


@dataclass
class Probes:
    """What the workload's probes answer: ZooKeeper's mode, the broker's readiness."""

    zookeeper_mode: str | None = None
    broker_ready: bool = False


@dataclass
class Unit:
    """The files of a unit's container, on disk, and a builder for its State."""

    root: Path
    image: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def zookeeper(self) -> Path:
        return self.root / "zookeeper"

    def container(
        self, execs: frozenset[testing.Exec] = frozenset(), layers: dict[str, Any] | None = None
    ) -> testing.Container:
        mounts = {
            "lib": testing.Mount(location="/pulsar/lib", source=self.image / "lib"),
            "conf": testing.Mount(location="/pulsar/conf", source=self.conf),
            "zookeeper": testing.Mount(location="/var/lib/pulsar/zookeeper", source=self.zookeeper),
        }
        return testing.Container("pulsar", can_connect=True, mounts=mounts, execs=execs, layers=layers or {})

    def state(
        self,
        *,
        leader: bool = True,
        app_data: dict[str, str] | None = None,
        peers: dict[int, dict[str, str]] | None = None,
        relations: tuple[Any, ...] = (),
        secrets: tuple[testing.Secret, ...] = (),
        config: dict[str, Any] | None = None,
        execs: frozenset[testing.Exec] = frozenset(),
        planned_units: int = 1,
        layers: dict[str, Any] | None = None,
    ) -> testing.State:
        peer = testing.PeerRelation("cluster", local_app_data=app_data or {}, peers_data=peers or {})
        return testing.State(
            leader=leader,
            containers={self.container(execs, layers)},
            relations={peer, *relations},
            secrets=set(secrets),
            config=config or {},
            planned_units=planned_units,
            model=testing.Model("test"),
        )


def signing_key_secret() -> testing.Secret:
    return testing.Secret({"signing-key": KEY}, owner="app", label="token-signing-key")


def initialized_app_data(secret: testing.Secret) -> dict[str, str]:
    return {
        "zk-members": f'[{{"id": 1, "host": "{FQDN0}"}}]',
        "signing-key-secret": secret.id,
        "initialized": "pulsar",
    }


def ready_bookies(count: int, ready: int) -> testing.Relation:
    units = {
        n: {
            "bookie-id": f"bookie-k8s-{n}.bookie-k8s-endpoints.test.svc.cluster.local:3181",
            "ready": "true" if n < ready else "false",
        }
        for n in range(count)
    }
    return testing.Relation("bookkeeper", remote_app_name="bookie-k8s", remote_units_data=units)
