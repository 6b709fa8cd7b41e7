"""Constants of the cdc-k8s charm: names, paths, ports, and every status it can show."""

from __future__ import annotations

import ops

from charms.pulsar_k8s.v0.pulsar_workload import StatusCatalog

CONTAINER = "cdc"
PEER = "cdc-peers"
PULSAR_RELATION = "pulsar"
DATABASE_RELATION = "database"
CREDENTIALS_OPTION = "postgresql-credentials"
ENRICHMENT_RESOURCE = "enrichment"
LAYER = "cdc"
SOURCE_SERVICE = "debezium-source"
FUNCTION_SERVICE = "enrichment-function"


CONNECTORS_DIR = "/pulsar/connectors"
CDC_DIR = "/var/lib/cdc"  # rendered each event: nothing here has to outlive the pod
SOURCE_CONFIG = f"{CDC_DIR}/source.json"
FUNCTION_CONFIG = f"{CDC_DIR}/function.json"
FUNCTION_MODULE = f"{CDC_DIR}/function/enrichment.py"
TOKEN_FILE = f"{CDC_DIR}/pulsar-token"  # 0600, read by both services, never on a command line
# 0600: the PostgreSQL password. The source's shell exports it as PG_PASSWORD just before it
# execs the runner, so it is on no command line and not in the Pebble plan.
PASSWORD_FILE = f"{CDC_DIR}/postgresql-password"
CA_FILE = f"{CDC_DIR}/postgresql-ca.pem"  # 0600, when the database asks for TLS
# 0600, when pulsar-k8s hands out TLS URLs: the CA that signed its brokers' certificates, which
# both runners (and their Pulsar clients, the source's offset store among them) verify them with.
PULSAR_CA_FILE = f"{CDC_DIR}/pulsar-ca.pem"
# The source's log4j2 config, alone in its directory: the Pulsar scripts put that directory on
# the classpath (and nothing else of ours goes there with it).
SOURCE_LOG_CONFIG = f"{CDC_DIR}/logging/source-log4j2.yaml"
SOURCE_ERRORS = f"{CDC_DIR}/source-errors.log"  # the source's ERROR lines, one line each
SOURCE_ERRORS_MAX = "64 KB"  # then log4j2 rolls it over once, to source-errors.log.1
SOURCE_METRICS_PORT = 9094
FUNCTION_METRICS_PORT = 9095


class Status(StatusCatalog):
    """Every status the charm shows. Call a member with its fields to get the ops status."""

    NO_PEBBLE = (ops.WaitingStatus, "waiting for Pebble in the cdc container")
    NO_PULSAR_IMAGE = (ops.BlockedStatus, "the cdc container has no Pulsar distribution at /pulsar")
    NO_CONNECTOR = (ops.BlockedStatus, "the image has no Debezium PostgreSQL connector: use apachepulsar/pulsar-all")
    INVALID_CONFIG = (ops.BlockedStatus, "{message}")  # "invalid config <option>: <reason>"
    INVALID_PEER_DATA = (ops.BlockedStatus, "unreadable peer data, the pipeline is left as it is: {error}")
    NO_PULSAR_RELATION = (ops.BlockedStatus, "integrate with pulsar-k8s: juju integrate cdc-k8s pulsar-k8s")
    PULSAR_REFUSED = (ops.BlockedStatus, "pulsar-k8s refused the request: {reason}")
    NO_GRANT = (ops.WaitingStatus, "waiting for pulsar-k8s to grant a namespace")
    NO_DATABASE = (
        ops.BlockedStatus,
        "integrate with postgresql-k8s, or set postgresql-credentials to a granted secret",
    )
    NO_DB_CREDENTIALS = (ops.WaitingStatus, "waiting for postgresql-k8s to share credentials")
    SECRET_NOT_GRANTED = (
        ops.BlockedStatus,
        "postgresql-credentials: secret not found or not granted (juju grant-secret <secret> cdc-k8s)",
    )
    SECRET_INVALID = (ops.BlockedStatus, "postgresql-credentials: {reason}")
    DATABASE_REFUSES = (ops.BlockedStatus, "the database cannot feed Debezium: {reason}")
    TEARDOWN_FAILED = (
        ops.BlockedStatus,
        "replication slot {slot} may remain and pin WAL: {reason}; drop it with pg_drop_replication_slot",
    )
    BAD_ENRICHMENT = (ops.BlockedStatus, "enrichment resource refused, the running function is unchanged: {reason}")
    STANDBY = (ops.ActiveStatus, "standby: the leader runs the pipeline")
    STARTING = (ops.MaintenanceStatus, "starting {services} ({source} source)")
    CAPTURING = (ops.ActiveStatus, "capturing {tables} from {database} ({source} source)")
    # A human must act (credentials, grants, the slot, the publication, the server): not a wait.
    CONNECTOR_FAILS = (ops.BlockedStatus, "the connector fails: {error}")
    # The pipeline runs again, from a slot made after the failover: say what may be missing.
    SLOT_LOST = (
        ops.ActiveStatus,
        "replication slot {slot} was lost (a database failover?) and recreated at {time}: changes between"
        " the last one captured and then may be missing; to re-read the tables:"
        " juju run {app}/leader resnapshot confirm=true",
    )
