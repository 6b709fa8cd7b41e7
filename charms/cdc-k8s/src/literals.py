"""Constants of the cdc-k8s charm: names, paths, and every status it can show."""

from __future__ import annotations

import ops

from charms.pulsar_k8s.v0.pulsar_workload import StatusCatalog

CONTAINER = "cdc"
PULSAR_RELATION = "pulsar"
DATABASE_RELATION = "database"


class Status(StatusCatalog):
    """Every status the charm shows. Call a member with its fields to get the ops status."""

    NO_PEBBLE = (ops.WaitingStatus, "waiting for Pebble in the cdc container")
    NO_PULSAR_IMAGE = (ops.BlockedStatus, "the cdc container has no Pulsar distribution at /pulsar")
    MISSING_RELATIONS = (ops.BlockedStatus, "integrate with pulsar-k8s and postgresql-k8s")
    NOT_MANAGED_YET = (ops.WaitingStatus, "change data capture arrives in a later revision")
