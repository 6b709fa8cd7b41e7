#!/usr/bin/env python3
"""pulsar-k8s: a ZooKeeper ensemble and Pulsar brokers, one of each per unit."""

from __future__ import annotations

import logging

import ops

from literals import CONTAINER, Status
from workload import PulsarWorkload

logger = logging.getLogger(__name__)


class PulsarCharm(ops.CharmBase):
    """Wires Juju events to the workload and reports status."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = PulsarWorkload(self.unit.get_container(CONTAINER))
        for event in (
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.update_status,
            self.on[CONTAINER].pebble_ready,
        ):
            framework.observe(event, self._reconcile)

    def _reconcile(self, _: ops.EventBase) -> None:
        if not self.workload.can_connect():
            self.unit.status = Status.NO_PEBBLE.value
            return
        version = self.workload.pulsar_version()
        if version is None:
            self.unit.status = Status.NO_PULSAR_IMAGE.value
            return
        self.unit.set_workload_version(version)
        self.unit.status = Status.NOT_MANAGED_YET.value


if __name__ == "__main__":  # pragma: nocover
    ops.main(PulsarCharm)
