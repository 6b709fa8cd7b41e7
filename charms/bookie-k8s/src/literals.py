"""Constants of the bookie-k8s charm: names, paths, ports, and every status it can show."""

from __future__ import annotations

import ops

from charms.pulsar_k8s.v0.pulsar_workload import StatusCatalog

CONTAINER = "bookie"
PEER = "bookies"
BOOKKEEPER_RELATION = "bookkeeper"
SERVICE = "bookie"

PULSAR_HOME = "/pulsar"
BOOKKEEPER_CONF = f"{PULSAR_HOME}/conf/bookkeeper.conf"
# The bookie logs in to ZooKeeper and BookKeeper from this file (mode 0600: passwords).
JAAS_CONF = f"{PULSAR_HOME}/conf/jaas.conf"
JOURNAL_DIR = "/var/lib/bookkeeper/journal"
LEDGERS_DIR = "/var/lib/bookkeeper/ledgers"
# The bookie's cookie on its storage: there once the bookie has registered with the cluster.
COOKIE_FILES = (f"{JOURNAL_DIR}/current/VERSION", f"{LEDGERS_DIR}/current/VERSION")

BOOKIE_PORT = 3181
# The bookie's HTTP server (readiness and state, metrics, but also ledger deletion and config
# changes) listens on localhost only: the charm probes it from inside the pod.
BOOKIE_HTTP_PORT = 8000


class Status(StatusCatalog):
    """Every status the charm shows. Call a member with its fields to get the ops status."""

    NO_PEBBLE = (ops.WaitingStatus, "waiting for Pebble in the bookie container")
    NO_PULSAR_IMAGE = (ops.BlockedStatus, "the bookie container has no Pulsar distribution at /pulsar")
    INVALID_CONFIG = (ops.BlockedStatus, "{error}")
    NO_BOOKKEEPER_RELATION = (ops.BlockedStatus, "integrate with pulsar-k8s: juju integrate bookie-k8s pulsar-k8s")
    WAITING_FOR_CREDENTIALS = (ops.WaitingStatus, "waiting for pulsar-k8s to grant the bookies' credentials")
    INVALID_CREDENTIALS = (ops.BlockedStatus, "unusable credentials from pulsar-k8s: {error}")
    WAITING_FOR_METADATA = (ops.WaitingStatus, "waiting for pulsar-k8s to initialize cluster metadata")
    INVALID_PROVIDER_DATA = (ops.BlockedStatus, "unreadable data from pulsar-k8s: {error}")
    NO_PEERS = (ops.WaitingStatus, "waiting for the bookies peer relation")
    INVALID_PEER_DATA = (ops.BlockedStatus, "unreadable peer data, left untouched: {error}")
    DYING = (ops.MaintenanceStatus, "being removed")
    # Set as the decommission goes, in the storage-detaching hook (it waits there).
    DECOMMISSIONING = (ops.MaintenanceStatus, "decommissioning: re-replicating its ledgers (attempt {attempt})")
    DECOMMISSION_RETRYING = (
        ops.MaintenanceStatus,
        "decommission waits (attempt {attempt}: {error}); a ledger needs a bookie outside its ensemble to move to",
    )
    DECOMMISSIONED = (ops.MaintenanceStatus, "decommissioned: its ledgers are on the other bookies")
    NOT_DECOMMISSIONED = (ops.MaintenanceStatus, "left without decommission: {reason}")
    STORAGE_NOT_OWNED = (ops.BlockedStatus, "cannot give the storage to the workload's user: {error}")
    WAITING_TO_RESTART = (ops.MaintenanceStatus, "waiting for its turn to restart the bookie")
    # No timeout moves the lock on: with write quorum 2, two bookies down stop the writes.
    RESTART_HELD = (ops.MaintenanceStatus, "waiting to restart the bookie: {holder} restarts first")
    STARTING = (ops.MaintenanceStatus, "bookie starting")
    ACTIVE = (ops.ActiveStatus, "bookie ready as {bookie_id}")
    # A removed bookie's ledgers can only move to bookies outside their ensembles.
    TOO_FEW_BOOKIES = (
        ops.BlockedStatus,
        "{planned} bookies, fewer than the ensemble size {ensemble}: a removed bookie cannot be decommissioned; "
        "add a bookie",
    )
    # The application's status (the leader's summary).
    APP_ACTIVE = (ops.ActiveStatus, "{ready} bookies ready")
    APP_DEGRADED = (ops.WaitingStatus, "{ready}/{total} bookies ready")
    # The refresh guard (the StatefulSet's partition): a roll under way, or why the guard is off.
    APP_REFRESHING = (ops.MaintenanceStatus, "refreshing: {updated}/{total} units on the new revision")
    APP_REFRESH_UNGUARDED = (ops.ActiveStatus, "{summary}; refresh guard off: juju trust {app} --scope=cluster")
    APP_REFRESH_GUARD_DOWN = (ops.ActiveStatus, "{summary}; refresh guard off: {error}")
