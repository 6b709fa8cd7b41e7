#!/usr/bin/env python3
"""bookie-k8s: Apache BookKeeper bookies for a pulsar-k8s cluster.

Every event runs one reconcile on a snapshot of the state (`state.py`): the leader hands out
the restart lock, then the unit brings its bookie to what the metadata store and config say,
restarting under the lock. Statuses are set through collect-status, but for the progress
of a decommission (`juju remove-unit`), which waits in its hook.
"""

from __future__ import annotations

import logging

import ops

from charms.pulsar_k8s.v0.bookkeeper import BookKeeperRequirer
from charms.pulsar_k8s.v0.pulsar_workload import (
    ImageProblem,
    RemovalWatch,
    WorkloadCommandError,
    observe_lifecycle,
    report_status,
)
from charms.pulsar_k8s.v0.refresh import Kubernetes, KubernetesError, RefreshPlan, arm_for_refresh, guard_statuses
from charms.pulsar_k8s.v0.rolling_restart import DesiredWorkload, WorkloadFile
from literals import (
    BOOKIE_PORT,
    BOOKKEEPER_CONF,
    BOOKKEEPER_RELATION,
    CONTAINER,
    JAAS_CONF,
    JOURNAL_DIR,
    LEDGERS_DIR,
    PEER,
    SERVICE,
    Status,
)
from managers.config import render_bookkeeper_conf, render_jaas_conf
from managers.decommission import Decommission
from state import BookieState
from workload import LAYER, BookieWorkload

logger = logging.getLogger(__name__)


class BookieCharm(ops.CharmBase):
    """Wires Juju events to the bookie's bring-up and reports status."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.removal = RemovalWatch(self, [PEER, BOOKKEEPER_RELATION])
        self.workload = BookieWorkload(self.unit.get_container(CONTAINER))
        self.bookkeeper = BookKeeperRequirer(self, BOOKKEEPER_RELATION)
        self.kubernetes = Kubernetes(self.app.name, self.model.name)
        self._state: BookieState | None = None
        self._status: ops.StatusBase | None = None
        self._refresh: RefreshPlan | KubernetesError | None = None
        # Peer events carry the restart lock's traffic: requests, releases, hand-overs.
        observe_lifecycle(self, self._reconcile, [CONTAINER], [BOOKKEEPER_RELATION, PEER])
        # remove-unit: the bookie leaves the cluster before its volumes go (the first of the two does it).
        for storage in ("journal", "ledgers"):
            framework.observe(self.on[storage].storage_detaching, self._on_storage_detaching)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.collect_app_status, self._on_collect_app_status)
        framework.observe(self.on.pre_upgrade_check_action, self._on_pre_upgrade_check)

    def _reconcile(self, _: ops.EventBase) -> None:
        state = self._state = BookieState(self, self.bookkeeper, dying=self.removal.dying, kubernetes=self.kubernetes)
        if state.leads:  # application-wide, whatever this unit's own state
            state.restarts().lead()
        self._status = self._bring_up(state)
        # After this unit's own work, so that the leader's own readiness is this event's.
        self._refresh = state.refresh.apply() if state.leads else None

    def _on_storage_detaching(self, _: ops.StorageDetachingEvent) -> None:
        state = self._state = BookieState(self, self.bookkeeper, dying=True)
        self._status = Decommission(self.workload, self.unit, state.bookie_id).run()

    def _bring_up(self, state: BookieState) -> ops.StatusBase:
        if state.dying:
            return Status.DYING()
        if problem := self.workload.check_image(self.unit):
            return Status.NO_PEBBLE() if problem is ImageProblem.NO_PEBBLE else Status.NO_PULSAR_IMAGE()
        if state.config is None:
            return Status.INVALID_CONFIG(error=state.config_error)
        if not state.related:
            return Status.NO_BOOKKEEPER_RELATION()
        if state.store_error:
            return Status.INVALID_PROVIDER_DATA(error=state.store_error)
        if state.store is None or not state.store.initialized:
            self.bookkeeper.publish(state.bookie_id, ready=False)
            return Status.WAITING_FOR_METADATA()
        if state.credentials_error:
            return Status.INVALID_CREDENTIALS(error=state.credentials_error)
        if state.credentials is None:
            self.bookkeeper.publish(state.bookie_id, ready=False)
            return Status.WAITING_FOR_CREDENTIALS()
        if state.peers is None:
            return Status.NO_PEERS()
        if state.peer_data_error:
            return Status.INVALID_PEER_DATA(error=state.peer_data_error)

        try:
            self.workload.own_directories(JOURNAL_DIR, LEDGERS_DIR)
        except WorkloadCommandError as error:
            return Status.STORAGE_NOT_OWNED(error=str(error))
        conf = render_bookkeeper_conf(state.config, state.fqdn, state.store.metadata_service_uri)
        layer = self.workload.layer(state.config.heap, state.config.direct_memory)
        files = (
            WorkloadFile(BOOKKEEPER_CONF, conf),
            WorkloadFile(JAAS_CONF, render_jaas_conf(state.credentials), 0o600),
        )
        desired = DesiredWorkload(LAYER, layer, files, {SERVICE: (BOOKKEEPER_CONF, JAAS_CONF)})
        waiting = state.restarts().roll(self.workload, desired, lambda _: self.workload.ready())
        ready = self.workload.ready()
        self.bookkeeper.publish(state.bookie_id, ready=ready)
        # Written together by this pod: the refresh guard never counts the old pod's `ready`.
        state.unit_data.ready = ready
        state.unit_data.pod_revision = state.own_pod_revision()
        state.save()
        if waiting is not None:  # keep serving with the old config until this bookie's turn
            return Status.RESTART_HELD(holder=waiting.holder) if waiting.holder else Status.WAITING_TO_RESTART()
        self.unit.set_ports(BOOKIE_PORT)
        if not ready:
            return Status.STARTING()
        if state.too_few_bookies:
            return Status.TOO_FEW_BOOKIES(planned=state.planned_units, ensemble=state.ensemble_size)
        return Status.ACTIVE(bookie_id=state.bookie_id)

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if self._status is not None:
            report_status(event, [self._status], self.unit)

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        """The leader sums what each bookie of the application last said of its readiness."""
        state = self._state
        if state is None or not state.leads:
            return
        ready, total = state.ready_peers(), 1 + len(state.peer_units)
        status = Status.APP_ACTIVE if ready == total else Status.APP_DEGRADED
        statuses = self._refresh_statuses(status(ready=ready, total=total))
        if state.too_few_bookies:
            statuses.append(Status.TOO_FEW_BOOKIES(planned=state.planned_units, ensemble=state.ensemble_size))
        report_status(event, statuses, self.app)

    def _refresh_statuses(self, bookies: ops.StatusBase) -> list[ops.StatusBase]:
        """The application's status with the refresh guard's: a roll under way, or why the guard is off."""
        return guard_statuses(
            self._refresh,
            bookies,
            self.app.name,
            Status.APP_REFRESHING,
            Status.APP_REFRESH_UNGUARDED,
            Status.APP_REFRESH_GUARD_DOWN,
        )

    def _on_pre_upgrade_check(self, event: ops.ActionEvent) -> None:
        """Check that a refresh may start, and arm the guard: the highest unit refreshes first."""
        if not self.unit.is_leader():
            event.fail("run it on the leader unit: juju run bookie-k8s/leader pre-upgrade-check")
            return
        state = BookieState(self, self.bookkeeper, dying=self.removal.dying, kubernetes=self.kubernetes)
        if not state.leads:
            event.fail("the bookies peer relation does not exist yet, or this unit is being removed")
            return
        arm_for_refresh(event, state.refresh, self.app.name)


if __name__ == "__main__":  # pragma: nocover
    ops.main(BookieCharm)
