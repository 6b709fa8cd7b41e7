#!/usr/bin/env python3
"""cdc-k8s: change data capture from PostgreSQL into Pulsar."""

from __future__ import annotations

import logging

import ops

from charms.pulsar_k8s.v0.pulsar_workload import ImageProblem, observe_lifecycle, report_status
from literals import CONTAINER, DATABASE_RELATION, PULSAR_RELATION, Status
from workload import CdcWorkload

logger = logging.getLogger(__name__)


class CdcCharm(ops.CharmBase):
    """Wires Juju events to the workload and reports status."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = CdcWorkload(self.unit.get_container(CONTAINER))
        self._status: ops.StatusBase | None = None
        observe_lifecycle(self, self._reconcile, [CONTAINER], [PULSAR_RELATION, DATABASE_RELATION])
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.get_lag_action, self._on_get_lag)

    def _reconcile(self, _: ops.EventBase) -> None:
        self._status = self._bring_up()

    def _bring_up(self) -> ops.StatusBase:
        if problem := self.workload.check_image(self.unit):
            return Status.NO_PEBBLE() if problem is ImageProblem.NO_PEBBLE else Status.NO_PULSAR_IMAGE()
        # A relation being broken is already left out of the model's relations.
        if any(self.model.get_relation(name) is None for name in (PULSAR_RELATION, DATABASE_RELATION)):
            return Status.MISSING_RELATIONS()
        return Status.NOT_MANAGED_YET()

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if self._status is not None:
            report_status(event, [self._status], self.unit)

    def _on_get_lag(self, event: ops.ActionEvent) -> None:
        event.fail("get-lag is not available in this revision")


if __name__ == "__main__":  # pragma: nocover
    ops.main(CdcCharm)
