#!/usr/bin/env python3
"""cdc-k8s: change data capture from PostgreSQL into Pulsar."""

from __future__ import annotations

import logging

import ops

from charms.pulsar_k8s.v0.pulsar_workload import ImageProblem
from literals import CONTAINER, DATABASE_RELATION, PULSAR_RELATION, Status
from workload import CdcWorkload

logger = logging.getLogger(__name__)


class CdcCharm(ops.CharmBase):
    """Wires Juju events to the workload and reports status."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = CdcWorkload(self.unit.get_container(CONTAINER))
        observed = [
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.update_status,
            self.on[CONTAINER].pebble_ready,
        ]
        for relation in (PULSAR_RELATION, DATABASE_RELATION):
            observed += [self.on[relation].relation_changed, self.on[relation].relation_broken]
        for event in observed:
            framework.observe(event, self._reconcile)
        framework.observe(self.on.get_lag_action, self._on_get_lag)

    def _reconcile(self, event: ops.EventBase) -> None:
        if problem := self.workload.check_image(self.unit):
            no_pebble = problem is ImageProblem.NO_PEBBLE
            self.unit.status = (Status.NO_PEBBLE if no_pebble else Status.NO_PULSAR_IMAGE).value
            return
        broken = event.relation.name if isinstance(event, ops.RelationBrokenEvent) else None
        related = [
            name
            for name in (PULSAR_RELATION, DATABASE_RELATION)
            if name != broken and self.model.get_relation(name) is not None
        ]
        if len(related) < 2:
            self.unit.status = Status.MISSING_RELATIONS.value
            return
        self.unit.status = Status.NOT_MANAGED_YET.value

    def _on_get_lag(self, event: ops.ActionEvent) -> None:
        event.fail("get-lag is not available in this revision")


if __name__ == "__main__":  # pragma: nocover
    ops.main(CdcCharm)
