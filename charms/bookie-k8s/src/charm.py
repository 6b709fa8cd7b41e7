#!/usr/bin/env python3
"""bookie-k8s: Apache BookKeeper bookies for a pulsar-k8s cluster."""

from __future__ import annotations

import logging

import ops

from literals import BOOKKEEPER_RELATION, CONTAINER, Status
from workload import BookieWorkload

logger = logging.getLogger(__name__)


class BookieCharm(ops.CharmBase):
    """Wires Juju events to the workload and reports status."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = BookieWorkload(self.unit.get_container(CONTAINER))
        for event in (
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.update_status,
            self.on[CONTAINER].pebble_ready,
            self.on[BOOKKEEPER_RELATION].relation_changed,
            self.on[BOOKKEEPER_RELATION].relation_broken,
        ):
            framework.observe(event, self._reconcile)

    def _reconcile(self, event: ops.EventBase) -> None:
        if not self.workload.can_connect():
            self.unit.status = Status.NO_PEBBLE.value
            return
        version = self.workload.pulsar_version()
        if version is None:
            self.unit.status = Status.NO_PULSAR_IMAGE.value
            return
        self.unit.set_workload_version(version)
        relation = self.model.get_relation(BOOKKEEPER_RELATION)
        if relation is None or isinstance(event, ops.RelationBrokenEvent):
            self.unit.status = Status.NO_BOOKKEEPER_RELATION.value
            return
        self.unit.status = Status.NOT_MANAGED_YET.value


if __name__ == "__main__":  # pragma: nocover
    ops.main(BookieCharm)
