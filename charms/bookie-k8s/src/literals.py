"""Constants of the bookie-k8s charm: names, paths, ports, and every status it can show."""

from __future__ import annotations

from enum import Enum

import ops

CONTAINER = "bookie"
PEER = "bookies"
BOOKKEEPER_RELATION = "bookkeeper"

JOURNAL_DIR = "/var/lib/bookkeeper/journal"
LEDGERS_DIR = "/var/lib/bookkeeper/ledgers"

BOOKIE_PORT = 3181
BOOKIE_HTTP_PORT = 8000


class Status(Enum):
    """Every status the charm shows, so that its messages live in one place."""

    NO_PEBBLE = ops.WaitingStatus("waiting for Pebble in the bookie container")
    NO_PULSAR_IMAGE = ops.BlockedStatus("the bookie container has no Pulsar distribution at /pulsar")
    NO_BOOKKEEPER_RELATION = ops.BlockedStatus(
        "integrate with pulsar-k8s: juju integrate bookie-k8s pulsar-k8s"
    )
    NOT_MANAGED_YET = ops.WaitingStatus("bookie bring-up arrives in the next revision")
