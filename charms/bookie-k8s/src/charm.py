#!/usr/bin/env python3
"""bookie-k8s: Apache BookKeeper bookies for a pulsar-k8s cluster."""

from __future__ import annotations

import logging

import ops

from charms.pulsar_k8s.v0.bookkeeper import BookKeeperRequirer
from charms.pulsar_k8s.v0.pulsar_workload import ImageProblem, InvalidConfigError, pod_fqdn
from literals import BOOKIE_PORT, BOOKKEEPER_CONF, BOOKKEEPER_RELATION, CONTAINER, Status
from managers.config import BookieConfig, render_bookkeeper_conf
from workload import LAYER, BookieWorkload

logger = logging.getLogger(__name__)


class BookieCharm(ops.CharmBase):
    """Wires Juju events to the bookie's bring-up and reports status."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = BookieWorkload(self.unit.get_container(CONTAINER))
        self.bookkeeper = BookKeeperRequirer(self, BOOKKEEPER_RELATION)
        container = self.on[CONTAINER]
        for event in (
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.update_status,
            container.pebble_ready,
            container.pebble_check_failed,
            container.pebble_check_recovered,
            self.on[BOOKKEEPER_RELATION].relation_joined,
            self.on[BOOKKEEPER_RELATION].relation_changed,
            self.on[BOOKKEEPER_RELATION].relation_broken,
        ):
            framework.observe(event, self._reconcile)

    @property
    def fqdn(self) -> str:
        return pod_fqdn(self.unit.name, self.model.name)

    @property
    def bookie_id(self) -> str:
        return f"{self.fqdn}:{BOOKIE_PORT}"

    def _reconcile(self, event: ops.EventBase) -> None:
        self.unit.status = self._bring_up(event)

    def _bring_up(self, event: ops.EventBase) -> ops.StatusBase:
        if problem := self.workload.check_image(self.unit):
            return Status.NO_PEBBLE() if problem is ImageProblem.NO_PEBBLE else Status.NO_PULSAR_IMAGE()
        try:
            config = BookieConfig.parse(self.config)
        except InvalidConfigError as error:
            return Status.INVALID_CONFIG(error=str(error))
        if self.bookkeeper.relation is None or isinstance(event, ops.RelationBrokenEvent):
            return Status.NO_BOOKKEEPER_RELATION()
        store = self.bookkeeper.metadata_store()
        if store is None or not store.initialized:
            self.bookkeeper.publish(self.bookie_id, ready=False)
            return Status.WAITING_FOR_METADATA()
        conf = render_bookkeeper_conf(config, self.fqdn, store.metadata_service_uri)
        changed = self.workload.write(BOOKKEEPER_CONF, conf)
        self.workload.apply_layer(LAYER, self.workload.layer(config.heap, config.direct_memory))
        if changed and self.workload.is_running():
            self.workload.restart()
        self.unit.set_ports(BOOKIE_PORT)
        ready = self.workload.ready()
        self.bookkeeper.publish(self.bookie_id, ready=ready)
        return Status.ACTIVE(bookie_id=self.bookie_id) if ready else Status.STARTING()


if __name__ == "__main__":  # pragma: nocover
    ops.main(BookieCharm)
