"""Constants of the loadgen-k8s charm: names, paths, and every status it can show."""

from __future__ import annotations

import ops

from charms.pulsar_k8s.v0.pulsar_workload import StatusCatalog

CONTAINER = "loadgen"
PEER = "workers"
PULSAR_RELATION = "pulsar"


class Status(StatusCatalog):
    """Every status the charm shows. Call a member with its fields to get the ops status."""

    NO_PEBBLE = (ops.WaitingStatus, "waiting for Pebble in the loadgen container")
    NO_PULSAR_IMAGE = (ops.BlockedStatus, "the loadgen container has no Pulsar distribution at /pulsar")
    NO_PULSAR_RELATION = (ops.BlockedStatus, "integrate with pulsar-k8s: juju integrate loadgen-k8s pulsar-k8s")
    NOT_MANAGED_YET = (ops.WaitingStatus, "load generation arrives in a later revision")
