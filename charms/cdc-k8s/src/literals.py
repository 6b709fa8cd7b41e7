"""Constants of the cdc-k8s charm: names, paths, and every status it can show."""

from __future__ import annotations

from enum import Enum

import ops

CONTAINER = "cdc"
PULSAR_RELATION = "pulsar"
DATABASE_RELATION = "database"


class Status(Enum):
    """Every status the charm shows, so that its messages live in one place."""

    NO_PEBBLE = ops.WaitingStatus("waiting for Pebble in the cdc container")
    NO_PULSAR_IMAGE = ops.BlockedStatus("the cdc container has no Pulsar distribution at /pulsar")
    MISSING_RELATIONS = ops.BlockedStatus("integrate with pulsar-k8s and postgresql-k8s")
    NOT_MANAGED_YET = ops.WaitingStatus("change data capture arrives in a later revision")
