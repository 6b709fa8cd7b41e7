"""Constants of the pulsar-k8s charm: names, paths, ports, and every status it can show."""

from __future__ import annotations

from enum import Enum

import ops

CONTAINER = "pulsar"
PEER = "cluster"
BOOKKEEPER_RELATION = "bookkeeper"
CLIENT_RELATION = "pulsar"

PULSAR_HOME = "/pulsar"
ZOOKEEPER_DATA = "/var/lib/pulsar/zookeeper"

ZOOKEEPER_CLIENT_PORT = 2181
ZOOKEEPER_PEER_PORT = 2888
ZOOKEEPER_ELECTION_PORT = 3888
BROKER_SERVICE_PORT = 6650
BROKER_WEB_PORT = 8080


class Status(Enum):
    """Every status the charm shows, so that its messages live in one place."""

    NO_PEBBLE = ops.WaitingStatus("waiting for Pebble in the pulsar container")
    NO_PULSAR_IMAGE = ops.BlockedStatus("the pulsar container has no Pulsar distribution at /pulsar")
    NOT_MANAGED_YET = ops.WaitingStatus("ZooKeeper and broker bring-up arrive in the next revision")
