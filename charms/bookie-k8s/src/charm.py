#!/usr/bin/env python3
"""bookie-k8s: Apache BookKeeper bookies for a pulsar-k8s cluster."""

from __future__ import annotations

import logging

import ops

from charms.pulsar_k8s.v0.bookkeeper import BookKeeperRequirer
from charms.pulsar_k8s.v0.pulsar_workload import ImageProblem, InvalidConfigError, pod_fqdn
from charms.pulsar_k8s.v0.rolling_restart import RollingRestart, fingerprint
from literals import BOOKIE_PORT, BOOKKEEPER_CONF, BOOKKEEPER_RELATION, CONTAINER, PEER, SERVICE, Status
from managers.config import BookieConfig, render_bookkeeper_conf
from workload import LAYER, BookieWorkload

logger = logging.getLogger(__name__)


class BookieCharm(ops.CharmBase):
    """Wires Juju events to the bookie's bring-up and reports status."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = BookieWorkload(self.unit.get_container(CONTAINER))
        self.bookkeeper = BookKeeperRequirer(self, BOOKKEEPER_RELATION)
        self.restarts = RollingRestart(self, PEER)
        container = self.on[CONTAINER]
        for event in (
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.update_status,
            self.on.leader_elected,
            container.pebble_ready,
            container.pebble_check_failed,
            container.pebble_check_recovered,
            self.on[BOOKKEEPER_RELATION].relation_joined,
            self.on[BOOKKEEPER_RELATION].relation_changed,
            self.on[BOOKKEEPER_RELATION].relation_broken,
            # Restart lock traffic: a unit's request and release, the leader's hand-over.
            self.on[PEER].relation_changed,
            self.on[PEER].relation_departed,
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
        if self.model.get_relation(PEER) is None:
            return Status.NO_PEERS()
        conf = render_bookkeeper_conf(config, self.fqdn, store.metadata_service_uri)
        layer = self.workload.layer(config.heap, config.direct_memory)
        desired = {SERVICE: fingerprint(conf, layer.get("services", {})[SERVICE])}
        serving = lambda _: self.workload.ready()  # noqa: E731 - the lock's "serves again" test
        self.restarts.check_restarted(serving)
        stale = self.restarts.stale(desired, {SERVICE} if self.workload.is_running() else set())
        if stale and not self.restarts.may_restart():
            # Keep serving with the old config until this bookie's turn comes.
            self.bookkeeper.publish(self.bookie_id, ready=self.workload.ready())
            if holder := self.restarts.holder:
                return Status.RESTART_HELD(holder=holder)
            return Status.WAITING_TO_RESTART()
        self.workload.write(BOOKKEEPER_CONF, conf)
        self.workload.apply_layer(LAYER, layer)
        if stale:
            self.workload.restart()
        self.restarts.applied(desired, stale, serving)
        self.unit.set_ports(BOOKIE_PORT)
        ready = self.workload.ready()
        self.bookkeeper.publish(self.bookie_id, ready=ready)
        return Status.ACTIVE(bookie_id=self.bookie_id) if ready else Status.STARTING()


if __name__ == "__main__":  # pragma: nocover
    ops.main(BookieCharm)
