"""The charm's config, validated, and the workload's config files rendered from templates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charms.pulsar_k8s.v0.pulsar_workload import InvalidConfigError, check_size, template_environment
from literals import (
    BROKER_SERVICE_PORT,
    BROKER_SERVICE_PORT_TLS,
    BROKER_STATUS_FILE,
    BROKER_TOKEN_FILE,
    BROKER_WEB_PORT,
    BROKER_WEB_PORT_TLS,
    PULSAR_ZOOKEEPER_USER,
    QUORUM_USER,
    SUPERUSER_ROLE,
    TLS_CA,
    TLS_CHAIN,
    TLS_KEY,
    ZOOKEEPER_CLIENT_PORT,
    ZOOKEEPER_DATA_DIR,
    ZOOKEEPER_ELECTION_PORT,
    ZOOKEEPER_LOG_DIR,
    ZOOKEEPER_METRICS_PORT,
    ZOOKEEPER_PEER_PORT,
)
from managers.auth import ISSUER, ClusterCredentials
from managers.ensemble import Member

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"
_CLUSTER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$")
_DURATION = re.compile(r"^([1-9][0-9]*)([dhm])$")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60}
MIN_TOKEN_LIFETIME = 60
MAX_AUTO_ENSEMBLE = 3
# Every entry goes to the whole ensemble (up to three) and is acknowledged by two: one slow or
# frozen bookie delays no write (with a write quorum of two, each entry it is in waits for the
# brokers' 30 s timeout to it before the ensemble changes), and an acknowledged entry is on two.
MAX_AUTO_WRITE_QUORUM = 3
MAX_AUTO_ACK_QUORUM = 2


@dataclass(frozen=True)
class CharmConfig:
    cluster_name: str
    broker_heap: str
    zookeeper_heap: str
    ensemble_size: int
    write_quorum: int
    ack_quorum: int
    tls_required: bool = False
    token_lifetime: int = 28 * 86400  # seconds
    metrics_authentication: bool = False

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> CharmConfig:
        """Validate the options a user can type; raise InvalidConfigError on the first bad one."""
        name = str(raw["cluster-name"])
        if not _CLUSTER_NAME.match(name):
            raise InvalidConfigError("cluster-name", f"{name!r} (letters, digits, - and _, max 64)")
        broker_heap = check_size("broker-heap", raw["broker-heap"])
        zookeeper_heap = check_size("zookeeper-heap", raw["zookeeper-heap"])
        for option in ("ensemble-size", "write-quorum", "ack-quorum"):
            if int(raw[option]) < 0:
                raise InvalidConfigError(option, f"{raw[option]} (0 for automatic, or a positive number)")
        return cls(
            cluster_name=name,
            broker_heap=broker_heap,
            zookeeper_heap=zookeeper_heap,
            ensemble_size=int(raw["ensemble-size"]),
            write_quorum=int(raw["write-quorum"]),
            ack_quorum=int(raw["ack-quorum"]),
            tls_required=bool(raw.get("tls-required", False)),
            token_lifetime=parse_duration("token-lifetime", raw.get("token-lifetime", "28d")),
            metrics_authentication=bool(raw.get("metrics-authentication", False)),
        )


def parse_duration(option: str, value: object) -> int:
    """Seconds in `28d`, `12h` or `30m`; raise InvalidConfigError for anything else or under a minute."""
    match = _DURATION.match(str(value).strip())
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)] if match else 0
    if seconds < MIN_TOKEN_LIFETIME:
        raise InvalidConfigError(option, f"{value!r} (a duration such as 28d, 12h or 30m, at least 1m)")
    return seconds


@dataclass(frozen=True)
class LedgerQuorum:
    ensemble_size: int
    write_quorum: int
    ack_quorum: int


def ledger_quorum(config: CharmConfig, ready_bookies: int) -> LedgerQuorum:
    """Ensemble, write and ack quorum: the configured values, or defaults from the ready bookies.

    Defaults: E = min(ready bookies, 3), Qw = min(E, 3), Qa = min(Qw, 2); at least 1 each.
    """
    ensemble = config.ensemble_size or max(1, min(ready_bookies, MAX_AUTO_ENSEMBLE))
    write = config.write_quorum or min(ensemble, MAX_AUTO_WRITE_QUORUM)
    ack = config.ack_quorum or min(write, MAX_AUTO_ACK_QUORUM)
    if write > ensemble:
        raise InvalidConfigError("write-quorum", f"{write} exceeds the ensemble size {ensemble}")
    if ack > write:
        raise InvalidConfigError("ack-quorum", f"{ack} exceeds the write quorum {write}")
    return LedgerQuorum(ensemble, write, ack)


def broker_service_url(members: list[Member], tls: bool = False) -> str:
    """`pulsar://h1:6650,h2:6650`: one scheme, then every broker (Pulsar's multi-host URL).

    With `tls`, `pulsar+ssl://h1:6651,...`.
    """
    scheme, port = ("pulsar+ssl", BROKER_SERVICE_PORT_TLS) if tls else ("pulsar", BROKER_SERVICE_PORT)
    return f"{scheme}://" + ",".join(f"{m.host}:{port}" for m in members)


def web_service_url(members: list[Member], tls: bool = False) -> str:
    """`http://h1:8080,h2:8080`: one scheme, then every broker's web service (`https://h1:8443,...`)."""
    scheme, port = ("https", BROKER_WEB_PORT_TLS) if tls else ("http", BROKER_WEB_PORT)
    return f"{scheme}://" + ",".join(f"{m.host}:{port}" for m in members)


def zookeeper_connect(hosts: list[str]) -> str:
    """`h1:2181,h2:2181,...`: ZooKeeper's connect string over `hosts` (see `ClusterState.zookeeper_hosts`)."""
    return ",".join(f"{host}:{ZOOKEEPER_CLIENT_PORT}" for host in hosts)


def bookkeeper_metadata_service_uri(hosts: list[str]) -> str:
    """`zk+hierarchical://h1:2181;h2:2181/ledgers`: BookKeeper's metadata service on those ZooKeeper hosts."""
    servers = ";".join(f"{host}:{ZOOKEEPER_CLIENT_PORT}" for host in hosts)
    return f"zk+hierarchical://{servers}/ledgers"


class ConfigRenderer:
    """Renders the workload's config files, whole, from the charm's templates."""

    def __init__(self, templates: Path = TEMPLATES) -> None:
        self.env = template_environment(templates)

    def zookeeper(self, members: list[Member]) -> str:
        return self.env.get_template("zookeeper.conf.j2").render(
            data_dir=ZOOKEEPER_DATA_DIR,
            log_dir=ZOOKEEPER_LOG_DIR,
            client_port=ZOOKEEPER_CLIENT_PORT,
            peer_port=ZOOKEEPER_PEER_PORT,
            election_port=ZOOKEEPER_ELECTION_PORT,
            metrics_port=ZOOKEEPER_METRICS_PORT,
            members=members,
        )

    def jaas(self, credentials: ClusterCredentials) -> str:
        return self.env.get_template("jaas.conf.j2").render(
            credentials=credentials, quorum_user=QUORUM_USER, pulsar_zookeeper_user=PULSAR_ZOOKEEPER_USER
        )

    def broker(
        self,
        config: CharmConfig,
        zookeeper_hosts: list[str],
        advertised_address: str,
        quorum: LedgerQuorum,
        audience: str,
        tls: bool = False,
    ) -> str:
        """broker.conf; with `tls` the TLS ports serve too, and `config.tls_required` closes the others.

        Tokens are verified by the OpenID provider with the key set served on localhost, for
        `audience` (the application's name); the broker's own token is read from its file.
        """
        return self.env.get_template("broker.conf.j2").render(
            cluster_name=config.cluster_name,
            metadata_store_url=f"zk:{zookeeper_connect(zookeeper_hosts)}",
            bookkeeper_metadata_service_uri=bookkeeper_metadata_service_uri(zookeeper_hosts),
            advertised_address=advertised_address,
            broker_service_port=BROKER_SERVICE_PORT,
            web_service_port=BROKER_WEB_PORT,
            ensemble_size=quorum.ensemble_size,
            write_quorum=quorum.write_quorum,
            ack_quorum=quorum.ack_quorum,
            status_file=BROKER_STATUS_FILE,
            superuser_role=SUPERUSER_ROLE,
            token_issuer=ISSUER,
            token_audience=audience,
            broker_token_file=BROKER_TOKEN_FILE,
            tls=tls,
            tls_only=tls and config.tls_required,
            metrics_authentication=config.metrics_authentication,
            broker_service_port_tls=BROKER_SERVICE_PORT_TLS,
            web_service_port_tls=BROKER_WEB_PORT_TLS,
            tls_chain=TLS_CHAIN,
            tls_key=TLS_KEY,
            tls_ca=TLS_CA,
        )
