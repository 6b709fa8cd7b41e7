"""Constants of the pulsar-k8s charm: names, paths, ports, and every status it can show."""

from __future__ import annotations

import ops

from charms.pulsar_k8s.v0.pulsar_workload import StatusCatalog

CONTAINER = "pulsar"
PEER = "cluster"
BOOKKEEPER_RELATION = "bookkeeper"
CLIENT_RELATION = "pulsar"
CERTIFICATES_RELATION = "certificates"

PULSAR_HOME = "/pulsar"
CONF_DIR = f"{PULSAR_HOME}/conf"
ZOOKEEPER_CONF = f"{CONF_DIR}/zookeeper.conf"
BROKER_CONF = f"{CONF_DIR}/broker.conf"
BROKER_STATUS_FILE = f"{CONF_DIR}/broker-status"
TLS_DIR = f"{CONF_DIR}/tls"
TLS_CHAIN = f"{TLS_DIR}/broker-chain.pem"
TLS_KEY = f"{TLS_DIR}/broker-key.pem"  # PKCS#8
TLS_CA = f"{TLS_DIR}/ca.pem"
# The token signing keys' public halves, served on localhost for the broker (see managers/auth.py).
TOKEN_KEYS_DIR = f"{CONF_DIR}/token-keys"
OPENID_CONFIGURATION = f"{TOKEN_KEYS_DIR}/.well-known/openid-configuration"
KEY_SET = f"{TOKEN_KEYS_DIR}/jwks.json"
# The broker's own superuser token, read from this file each time it connects (0600).
BROKER_TOKEN_FILE = f"{CONF_DIR}/broker-token"
# Every JVM of the unit (ZooKeeper, the broker, the charm's commands) logs in from this file.
JAAS_CONF = f"{CONF_DIR}/jaas.conf"
ZOOKEEPER_STORAGE = "/var/lib/pulsar/zookeeper"
ZOOKEEPER_DATA_DIR = f"{ZOOKEEPER_STORAGE}/data"
ZOOKEEPER_LOG_DIR = f"{ZOOKEEPER_STORAGE}/txlog"
MYID_PATH = f"{ZOOKEEPER_DATA_DIR}/myid"

ZOOKEEPER_SERVICE = "zookeeper"
BROKER_SERVICE = "broker"
TOKEN_KEYS_SERVICE = "token-keys"  # noqa: S105 - a Pebble service name

ZOOKEEPER_CLIENT_PORT = 2181
# ZooKeeper clients (brokers, bookies) are given the pods of these ordinals, whether each
# exists or not: a fixed list, so that growing or shrinking the ensemble restarts no broker
# and no bookie. A pod that does not exist fails its DNS lookup at once and the client tries
# the next. The lowest ordinals are always there (Kubernetes removes the highest first), and
# an ensemble of up to seven servers is wholly among them.
ZOOKEEPER_CLIENT_ORDINALS = 7
ZOOKEEPER_PEER_PORT = 2888
ZOOKEEPER_ELECTION_PORT = 3888
ZOOKEEPER_METRICS_PORT = 8000
BROKER_SERVICE_PORT = 6650
BROKER_WEB_PORT = 8080
BROKER_SERVICE_PORT_TLS = 6651
BROKER_WEB_PORT_TLS = 8443
TOKEN_KEYS_PORT = 8079  # on 127.0.0.1 only

# The role the charms use for their own admin calls; a superuser of the broker.
SUPERUSER_ROLE = "pulsar-k8s-admin"
SECRET_KEY_LABEL = "token-signing-key"  # noqa: S105 - the label of a Juju secret, not a secret
ZOOKEEPER_CREDENTIALS_LABEL = "zookeeper-credentials"
BOOKIE_CREDENTIALS_LABEL = "bookie-credentials"
# SASL (DIGEST-MD5) user names: ZooKeeper's quorum peers, its clients, BookKeeper's clients.
QUORUM_USER = "zookeeper"
PULSAR_ZOOKEEPER_USER = "pulsar"
BOOKIE_ZOOKEEPER_USER = "bookie"
BOOKKEEPER_CLIENT_USER = "bookkeeper"
INIT_TIMEOUT = 300.0
RESTART_WAIT = 30.0
INIT_HEAP = "128m"
# ZooKeeper `srvr` modes of a server that serves requests.
STANDALONE = "standalone"  # the mode of an ensemble of one
SERVING_MODES = ("leader", "follower", STANDALONE)


class Status(StatusCatalog):
    """Every status the charm shows. Call a member with its fields to get the ops status."""

    NO_PEBBLE = (ops.WaitingStatus, "waiting for Pebble in the pulsar container")
    NO_PULSAR_IMAGE = (ops.BlockedStatus, "the pulsar container has no Pulsar distribution at /pulsar")
    INVALID_CONFIG = (ops.BlockedStatus, "{error}")
    CLUSTER_NAME_FIXED = (ops.BlockedStatus, "invalid config cluster-name: initialized as {name!r}, cannot change")
    NO_PEERS = (ops.WaitingStatus, "waiting for the cluster peer relation")
    INVALID_PEER_DATA = (ops.BlockedStatus, "unreadable peer data, left untouched: {error}")
    DYING = (ops.MaintenanceStatus, "being removed")
    # A dying unit's storage-detaching hook sets these as it waits (managers/departure.py).
    LEAVING_ENSEMBLE = (
        ops.MaintenanceStatus,
        "leaving the ZooKeeper ensemble: waiting for servers {pending} to serve without this one",
    )
    HANDING_OVER = (
        ops.MaintenanceStatus,
        "leaving the ZooKeeper ensemble: restarting its server, so that another leads",
    )
    LEFT_ENSEMBLE = (ops.MaintenanceStatus, "left the ZooKeeper ensemble")
    LEFT_UNWAITED = (ops.MaintenanceStatus, "left without waiting for the ZooKeeper ensemble: {reason}")
    WAITING_FOR_UNITS = (ops.WaitingStatus, "zookeeper: waiting for units to join: {joined}/{planned}")
    STORAGE_NOT_OWNED = (ops.BlockedStatus, "cannot give the storage to the workload's user: {error}")
    NOT_A_MEMBER = (ops.WaitingStatus, "zookeeper: waiting to join the ensemble")
    WAITING_TO_RESTART = (ops.MaintenanceStatus, "waiting for its turn to restart {services}")
    # No timeout moves the lock on: restarting a second ZooKeeper while the first is still
    # down would lose a quorum of three. The holder's own status says what it waits for.
    RESTART_HELD = (ops.MaintenanceStatus, "waiting to restart {services}: {holder} restarts first")
    ZK_QUORUM = (ops.WaitingStatus, "zookeeper quorum: {ready}/{total} members")
    NO_CREDENTIALS = (ops.WaitingStatus, "waiting for the leader to create the cluster's credentials")
    NO_SIGNING_KEY = (ops.WaitingStatus, "waiting for the leader to create the token signing key")
    WAITING_FOR_INIT = (ops.WaitingStatus, "waiting for the leader to initialize cluster metadata")
    INIT_FAILED = (ops.WaitingStatus, "initialize-cluster-metadata failed, retrying: {error}")
    TLS_NOT_RELATED = (
        ops.BlockedStatus,
        "tls-required needs certificates: juju integrate pulsar-k8s <provider of tls-certificates>",
    )
    WAITING_FOR_CERTIFICATE = (ops.WaitingStatus, "tls-required: waiting for this unit's certificate")
    NO_BOOKKEEPER_RELATION = (ops.BlockedStatus, "integrate with bookie-k8s: juju integrate pulsar-k8s bookie-k8s")
    WAITING_FOR_BOOKIES = (ops.WaitingStatus, "waiting for bookies: {ready}/{needed} ready")
    BROKER_STARTING = (ops.MaintenanceStatus, "broker starting")
    CLIENT_FAILED = (ops.WaitingStatus, "{error}; retrying")
    ACTIVE = (ops.ActiveStatus, "zookeeper {role}, broker ready")
    # The application's status (the leader's summary of the cluster).
    APP_WAITING_FOR_UNITS = (ops.WaitingStatus, "waiting for units to join: {joined}/{planned}")
    APP_DEGRADED = (ops.WaitingStatus, "{brokers}, ZooKeeper {serving}/{members}, {bookies}")
    APP_ACTIVE = (ops.ActiveStatus, "{brokers}, ZooKeeper {serving}/{members}, {bookies}")
    APP_ACTIVE_ROTATING = (
        ops.ActiveStatus,
        "{brokers}, ZooKeeper {serving}/{members}, {bookies}; token key rotation: {step}",
    )
    # The refresh guard (the StatefulSet's partition): a roll under way, or why the guard is off.
    APP_REFRESHING = (ops.MaintenanceStatus, "refreshing: {updated}/{total} units on the new revision")
    APP_REFRESH_UNGUARDED = (
        ops.ActiveStatus,
        "{summary}; refresh guard off: juju trust {app} --scope=cluster",
    )
    APP_REFRESH_GUARD_DOWN = (ops.ActiveStatus, "{summary}; refresh guard off: {error}")
