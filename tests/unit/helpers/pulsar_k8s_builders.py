"""Builders for pulsar-k8s unit tests: a unit in a model named `test`, with its files on disk.

Databag values are written and read as the charms encode them: each value JSON-encoded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ops import testing


def fqdn(unit: int, app: str = "pulsar-k8s", domain: str = "cluster.local") -> str:
    return f"{app}-{unit}.{app}-endpoints.test.svc.{domain}"


FQDN0 = fqdn(0)
FQDN1 = fqdn(1)
FQDN2 = fqdn(2)
# ZooKeeper as brokers and bookies are given it: the pods of ordinals 0 to 6, whether they
# exist or not, so that the ensemble can change under them without a restart.
ZOOKEEPER_CONNECT = ",".join(f"{fqdn(n)}:2181" for n in range(7))
METADATA_SERVICE_URI = "zk+hierarchical://" + ";".join(f"{fqdn(n)}:2181" for n in range(7)) + "/ledgers"
# The token signing key of the tests' clusters (an RSA key made once per run).
KEY_ID = "0123456789abcdef"
KEY_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    .decode()
)
KEY_SINCE = 1_800_000_000
SIGNING_KEYS = {"active-kid": KEY_ID, "active-key": KEY_PEM, "active-since": str(KEY_SINCE)}
INIT = ["/pulsar/bin/pulsar", "initialize-cluster-metadata"]


def encoded(values: Mapping[str, Any]) -> dict[str, str]:
    """A databag as Juju holds it: each value JSON-encoded."""
    return {key: json.dumps(value) for key, value in values.items()}


def decoded(databag: Mapping[str, str]) -> dict[str, Any]:
    """A databag's values, JSON-decoded."""
    return {key: json.loads(value) for key, value in databag.items()}


def member(unit: int) -> dict[str, Any]:
    """One ZooKeeper server of the published ensemble."""
    return {"id": unit + 1, "host": fqdn(unit)}


# The storage a unit finds is owned by root (Juju mounts it so): the charm gives it to the
# image's user with `chown -R`, which Pebble runs as root.
CHOWN = testing.Exec(["chown"], return_code=0)


@dataclass
class Probes:
    """What the workload's network probes answer: ZooKeeper's mode and membership, the broker's readiness.

    `zookeeper_mode` and `broker_ready` are this unit's (asked at localhost or at its FQDN);
    other hosts answer from `zookeeper_modes`, `memberships` and `brokers_ready` (nothing:
    down). A host's membership may be a list, one answer per question (the last repeats).
    """

    zookeeper_mode: str | None = None
    broker_ready: bool = False
    zookeeper_modes: dict[str, str | None] = field(default_factory=dict)
    brokers_ready: dict[str, bool] = field(default_factory=dict)
    memberships: dict[str, list[set[int] | None]] = field(default_factory=dict)
    own_fqdn: str = FQDN0
    asked: list[tuple[str, str]] = field(default_factory=list)

    def zookeeper(self, host: str) -> str | None:
        self.asked.append(("srvr", host))
        if host in ("localhost", self.own_fqdn):
            return self.zookeeper_mode
        return self.zookeeper_modes.get(host)

    def membership(self, host: str) -> set[int] | None:
        self.asked.append(("conf", host))
        answers = self.memberships.get(host, [None])
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def broker(self, host: str) -> bool:
        self.asked.append(("status.html", host))
        if host in ("localhost", self.own_fqdn):
            return self.broker_ready
        return self.brokers_ready.get(host, False)


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
        self,
        execs: frozenset[testing.Exec] = frozenset(),
        layers: dict[str, Any] | None = None,
        service_statuses: dict[str, Any] | None = None,
    ) -> testing.Container:
        mounts = {
            "lib": testing.Mount(location="/pulsar/lib", source=self.image / "lib"),
            "conf": testing.Mount(location="/pulsar/conf", source=self.conf),
            "zookeeper": testing.Mount(location="/var/lib/pulsar/zookeeper", source=self.zookeeper),
        }
        return testing.Container(
            "pulsar",
            can_connect=True,
            mounts=mounts,
            execs=execs | {CHOWN},
            layers=layers or {},
            service_statuses=service_statuses or {},
        )

    def state(
        self,
        *,
        leader: bool = True,
        app_data: dict[str, Any] | None = None,
        unit_data: dict[str, Any] | None = None,
        peers: dict[int, dict[str, Any]] | None = None,
        relations: tuple[Any, ...] = (),
        secrets: tuple[testing.Secret, ...] = (),
        config: dict[str, Any] | None = None,
        execs: frozenset[testing.Exec] = frozenset(),
        planned_units: int = 1,
        layers: dict[str, Any] | None = None,
        service_statuses: dict[str, Any] | None = None,
        stored_states: frozenset[testing.StoredState] = frozenset(),
        credentials: bool = True,
    ) -> testing.State:
        """The unit's State; databag values are given decoded (this encodes them).

        The cluster's credential secrets are there, and named in the app databag, unless
        `credentials` is False.
        """
        app_data = dict(app_data or {})
        if credentials:
            zookeeper, bookies = credential_secrets()
            app_data.setdefault("zookeeper-credentials-secret", zookeeper.id)
            app_data.setdefault("bookie-credentials-secret", bookies.id)
            secrets = (*secrets, zookeeper, bookies)
        peer = testing.PeerRelation(
            "cluster",
            local_app_data=encoded(app_data),
            local_unit_data=encoded(unit_data or {}),
            peers_data={n: encoded(data) for n, data in (peers or {}).items()},
        )
        return testing.State(
            leader=leader,
            containers={self.container(execs, layers, service_statuses)},
            relations={peer, *relations},
            secrets=set(secrets),
            config=config or {},
            planned_units=planned_units,
            model=testing.Model("test"),
            stored_states=stored_states,
        )


ZOOKEEPER_CREDENTIALS = {"quorum-password": "quorum-pw", "pulsar-password": "pulsar-pw"}
BOOKIE_CREDENTIALS = {
    "zookeeper-username": "bookie",
    "zookeeper-password": "bookie-zk-pw",
    "bookkeeper-username": "bookkeeper",
    "bookkeeper-password": "bookkeeper-pw",
}


def credential_secrets() -> tuple[testing.Secret, testing.Secret]:
    """The leader's `zookeeper-credentials` and `bookie-credentials` secrets (fixed ids per call site)."""
    return (
        testing.Secret(
            ZOOKEEPER_CREDENTIALS, owner="app", label="zookeeper-credentials", id="secret:zookeepercreds0000"
        ),
        testing.Secret(BOOKIE_CREDENTIALS, owner="app", label="bookie-credentials", id="secret:bookiecreds000000000"),
    )


def signing_key_secret() -> testing.Secret:
    return testing.Secret(dict(SIGNING_KEYS), owner="app", label="token-signing-key")


def initialized_app_data(secret: testing.Secret) -> dict[str, Any]:
    return {
        "zk-members": [{"id": 1, "host": FQDN0}],
        "signing-key-secret": secret.id,
        "initialized": "pulsar",
    }


def bookie_data(unit: int, ready: bool) -> dict[str, str]:
    return encoded({"bookie-id": f"{fqdn(unit, 'bookie-k8s')}:3181", "ready": ready})


def ready_bookies(count: int, ready: int) -> testing.Relation:
    units = {n: bookie_data(n, n < ready) for n in range(count)}
    return testing.Relation("bookkeeper", remote_app_name="bookie-k8s", remote_units_data=units)


def record_admin_calls(monkeypatch: Any) -> list[tuple[str, ...]]:
    """The admin API of an empty cluster: reads find nothing, writes are recorded with their broker."""
    from pulsar_k8s.managers.admin import PulsarAdmin  # registered by tests/unit/conftest.py

    calls: list[tuple[str, ...]] = []
    for method, empty in (("tenants", []), ("tenant_info", None), ("namespaces", []), ("policies", None)):
        monkeypatch.setattr(PulsarAdmin, method, lambda self, *args, _empty=empty: _empty)
    for method in ("ensure_tenant", "ensure_namespace", "grant", "ensure_topic", "revoke", "update_tenant"):
        monkeypatch.setattr(
            PulsarAdmin, method, lambda self, *args, _m=method: calls.append((self.base_url, _m, *map(str, args)))
        )
    return calls


def workload_commands(ctx: testing.Context, container: str = "pulsar") -> list[list[str]]:
    """The commands the charm ran in a container, but the `chown` of its storage."""
    return [list(e.command) for e in ctx.exec_history.get(container, []) if e.command[0] != "chown"]
