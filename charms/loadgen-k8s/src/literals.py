"""Constants of the loadgen-k8s charm: names, paths, and every status it can show."""

from __future__ import annotations

import ops

from charms.pulsar_k8s.v0.pulsar_workload import StatusCatalog

CONTAINER = "loadgen"
PEER = "workers"
PULSAR_RELATION = "pulsar"
NAMESPACE_SUFFIX = "default"  # the namespace asked of pulsar-k8s: <app>/default

RESULTS_DIR = "/var/lib/loadgen"  # the `results` storage: survives pod restarts
TOKEN_FILE = f"{RESULTS_DIR}/pulsar-token"  # 0600, read by the workers, never on a command line
# With TLS: the CA that signed the brokers' certificates, the only one the workers' clients trust.
# Not a secret (0644); it is gone when the connection is plaintext.
CA_FILE = f"{RESULTS_DIR}/pulsar-ca.pem"
LAYER = "loadgen"
SERVICE_PREFIX = "loadgen-"  # one Pebble service per worker: loadgen-producer-0, loadgen-consumer-0
# A worker that ends raises this Pebble custom notice (Juju: pebble-custom-notice), so the unit
# collects its result at once. Our engine posts it itself; pulsar-perf's shell runs Pebble's CLI,
# which Juju mounts into every workload container.
WORKER_DONE_NOTICE = "pulsar.apache.org/loadgen-worker-done"
PEBBLE_CLI = "/charm/bin/pebble"


class Status(StatusCatalog):
    """Every status the charm shows. Call a member with its fields to get the ops status."""

    NO_PEBBLE = (ops.WaitingStatus, "waiting for Pebble in the loadgen container")
    NO_PULSAR_IMAGE = (ops.BlockedStatus, "the loadgen container has no Pulsar distribution at /pulsar")
    NO_PULSAR_RELATION = (ops.BlockedStatus, "integrate with pulsar-k8s: juju integrate loadgen-k8s pulsar-k8s")
    REFUSED = (ops.BlockedStatus, "pulsar-k8s refused the request: {reason}")
    NO_GRANT = (ops.WaitingStatus, "waiting for pulsar-k8s to grant a namespace")
    NO_PEERS = (ops.WaitingStatus, "waiting for the workers peer relation")
    PEER_DATA = (ops.BlockedStatus, "peer data does not decode: {reason}")
    PREPARING = (ops.MaintenanceStatus, "load test {test} preparing its topic")
    RUNNING = (ops.ActiveStatus, "load test {test}: {progress}")
    STOPPING = (ops.MaintenanceStatus, "load test {test} stopping")
    IDLE = (ops.ActiveStatus, "ready: {units} unit(s) on {namespace}{last}")
