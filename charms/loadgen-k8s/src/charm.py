#!/usr/bin/env python3
"""loadgen-k8s: synthetic IoT load for a pulsar-k8s cluster."""

from __future__ import annotations

import logging

import ops

from charms.pulsar_k8s.v0.pulsar_workload import ImageProblem
from literals import CONTAINER, PULSAR_RELATION, Status
from workload import LoadgenWorkload

logger = logging.getLogger(__name__)


class LoadgenCharm(ops.CharmBase):
    """Wires Juju events to the workload and reports status."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = LoadgenWorkload(self.unit.get_container(CONTAINER))
        for event in (
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.update_status,
            self.on[CONTAINER].pebble_ready,
            self.on[PULSAR_RELATION].relation_changed,
            self.on[PULSAR_RELATION].relation_broken,
        ):
            framework.observe(event, self._reconcile)
        for action in ("start_load_test", "stop_load_test", "get_results"):
            framework.observe(self.on[action.replace("_", "-")].action, self._on_not_available)

    def _reconcile(self, event: ops.EventBase) -> None:
        if problem := self.workload.check_image(self.unit):
            no_pebble = problem is ImageProblem.NO_PEBBLE
            self.unit.status = (Status.NO_PEBBLE if no_pebble else Status.NO_PULSAR_IMAGE).value
            return
        if self.model.get_relation(PULSAR_RELATION) is None or isinstance(event, ops.RelationBrokenEvent):
            self.unit.status = Status.NO_PULSAR_RELATION.value
            return
        self.unit.status = Status.NOT_MANAGED_YET.value

    def _on_not_available(self, event: ops.ActionEvent) -> None:
        event.fail(f"{event.handle.kind.removesuffix('_action')} is not available in this revision")


if __name__ == "__main__":  # pragma: nocover
    ops.main(LoadgenCharm)
