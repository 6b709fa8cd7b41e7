#!/usr/bin/env python3
"""loadgen-k8s: synthetic IoT load for a pulsar-k8s cluster."""

from __future__ import annotations

import logging

import ops

from charms.pulsar_k8s.v0.pulsar_workload import ImageProblem, observe_lifecycle, report_status
from literals import CONTAINER, PULSAR_RELATION, Status
from workload import LoadgenWorkload

logger = logging.getLogger(__name__)


class LoadgenCharm(ops.CharmBase):
    """Wires Juju events to the workload and reports status."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = LoadgenWorkload(self.unit.get_container(CONTAINER))
        self._status: ops.StatusBase | None = None
        observe_lifecycle(self, self._reconcile, [CONTAINER], [PULSAR_RELATION])
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        for action in ("start_load_test", "stop_load_test", "get_results"):
            framework.observe(self.on[action.replace("_", "-")].action, self._on_not_available)

    def _reconcile(self, _: ops.EventBase) -> None:
        self._status = self._bring_up()

    def _bring_up(self) -> ops.StatusBase:
        if problem := self.workload.check_image(self.unit):
            return Status.NO_PEBBLE() if problem is ImageProblem.NO_PEBBLE else Status.NO_PULSAR_IMAGE()
        if self.model.get_relation(PULSAR_RELATION) is None:  # a broken relation is already left out
            return Status.NO_PULSAR_RELATION()
        return Status.NOT_MANAGED_YET()

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if self._status is not None:
            report_status(event, [self._status], self.unit)

    def _on_not_available(self, event: ops.ActionEvent) -> None:
        event.fail(f"{event.handle.kind.removesuffix('_action')} is not available in this revision")


if __name__ == "__main__":  # pragma: nocover
    ops.main(LoadgenCharm)
