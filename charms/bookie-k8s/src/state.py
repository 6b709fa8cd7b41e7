"""The charm's state: a snapshot of everything its reconcile reads, built once per event.

The `bookies` peer databags: `BookieUnitData` (each unit: its readiness, and its use of the
restart lock) and `LockAppData` (the leader: the lock's holder), documented in the
rolling_restart library. The `bookkeeper` relation's databags are `MetadataStore`
(pulsar-k8s's, with its credentials secret) and `BookieData` (this unit's), documented in
the bookkeeper library.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Final

import ops

from charms.pulsar_k8s.v0.bookkeeper import BookieCredentials, BookKeeperRequirer, MetadataStore
from charms.pulsar_k8s.v0.pulsar_workload import (
    InvalidConfigError,
    InvalidDatabagError,
    PeerData,
    cluster_domain,
    pod_fqdn,
)
from charms.pulsar_k8s.v0.refresh import (
    Kubernetes,
    RefreshGuard,
    RefreshUnitData,
    UnitRefresh,
    unit_ordinal,
)
from charms.pulsar_k8s.v0.rolling_restart import LockAppData, LockUnitData, RestartRequest, RollingRestart
from literals import BOOKIE_PORT, PEER
from managers.config import BookieConfig

logger = logging.getLogger(__name__)


@dataclass
class BookieUnitData(LockUnitData, RefreshUnitData):
    """A unit's `bookies` peer databag.

    - `ready`: whether its bookie said it was ready when the unit last looked (the leader
      sums these for the application's status: the bookie's HTTP API answers in its pod only)
    - `pod-revision`: the StatefulSet revision its own pod runs, written with `ready` in the
      same hook (`RefreshUnitData`): the leader's refresh guard reads both
    - `restart-request`, `applied`: its use of the restart lock (`LockUnitData`)
    """

    ready: bool = False


class BookieState:
    """What this event's reconcile knows: this bookie, the metadata store, the restart lock."""

    def __init__(
        self, charm: ops.CharmBase, bookkeeper: BookKeeperRequirer, dying: bool, kubernetes: Kubernetes | None = None
    ) -> None:
        self.kubernetes = kubernetes or Kubernetes(charm.app.name, charm.model.name)
        self.unit = charm.unit
        self.app = charm.app
        self._model_name = charm.model.name
        self.domain = cluster_domain(charm.model.name)
        self.fqdn = self.fqdn_of(charm.unit.name)
        self.bookie_id = f"{self.fqdn}:{BOOKIE_PORT}"
        self.leader = charm.unit.is_leader()
        self.dying = dying
        # How many units the application will have once the removals under way are done.
        self.planned_units = charm.app.planned_units()
        try:
            self.config: BookieConfig | None = BookieConfig.parse(charm.config)
            self.config_error: str | None = None
        except InvalidConfigError as error:
            self.config, self.config_error = None, str(error)

        self.related = bookkeeper.relation is not None
        self.store: MetadataStore | None = None
        self.store_error: str | None = None
        self.credentials_error = None
        try:
            self.store = bookkeeper.metadata_store()
        except InvalidDatabagError as error:
            logger.error("the metadata store published by pulsar-k8s does not decode: %s", error)
            self.store_error = str(error)
        # How many bookies each new ledger is written to (0 until pulsar-k8s says).
        self.ensemble_size = self.store.ensemble_size if self.store else 0
        self.credentials: BookieCredentials | None = None
        if self.store is not None:
            try:
                self.credentials = bookkeeper.credentials(self.store)
            except InvalidDatabagError as error:
                logger.error("the credentials granted by pulsar-k8s are unusable: %s", error)
                self.credentials_error: str | None = str(error)

        self.peers = charm.model.get_relation(PEER)
        self.peer_units: list[ops.Unit] = sorted(self.peers.units, key=lambda u: u.name) if self.peers else []
        self.peer_data = PeerData(self.peers, LockAppData, BookieUnitData, charm.app, charm.unit)
        # The objects `peer_data` writes back: changed in place, never replaced.
        self.app_data: Final = self.peer_data.app_data
        self.unit_data: Final = self.peer_data.unit_data
        self.peer_data_error: Final = self.peer_data.error

    @property
    def leads(self) -> bool:
        """Whether this unit hands out the restart lock: the leader, unless it is dying."""
        return self.leader and not self.dying and self.peers is not None and self.peer_data_error is None

    @property
    def too_few_bookies(self) -> bool:
        """Whether fewer bookies are planned than the ensemble each new ledger is written to.

        A bookie removed then cannot be decommissioned: its ledgers have no bookie outside
        their ensembles to be re-replicated onto.
        """
        return self.planned_units < self.ensemble_size

    def ready_peers(self) -> int:
        """How many bookies of the application said they were ready, this one included."""
        others = [self.peer_data.unit_data_of(unit) for unit in self.peer_units]
        return sum(data.ready for data in [self.unit_data, *others])

    def save(self) -> None:
        """Write back what changed in the peer databags (this unit's; the lock's holder when leading)."""
        self.peer_data.save(leads=self.leads)

    def fqdn_of(self, unit_name: str) -> str:
        return pod_fqdn(unit_name, self._model_name, self.domain)

    def restarts(self) -> RollingRestart:
        """The restart lock, on this snapshot's databags (the peer relation must exist)."""
        assert self.peers is not None
        return RollingRestart(
            self.peers,
            self.unit,
            self.app,
            self.unit_data,
            self.app_data,
            leads=self.leads,
            may_restart=self._may_restart,
        )

    def _may_restart(self, _unit: str, _request: RestartRequest) -> bool:
        """Leader: no bookie restarts while a refresh replaces a pod (one bookie down at a time)."""
        return not self.refresh.in_flight()

    def own_pod_revision(self) -> str:
        """The StatefulSet revision this unit's pod runs; empty when the API cannot tell."""
        return self.kubernetes.own_revision(self.unit.name)

    def refresh_units(self) -> dict[str, UnitRefresh]:
        """Each bookie's refresh facts from peer data (this unit's as the reconcile left them)."""
        facts = {}
        for unit in [self.unit, *self.peer_units]:
            data = self.peer_data.unit_data_of(unit)
            restarting = data.restart_request is not None
            facts[unit.name] = UnitRefresh(unit_ordinal(unit.name), data.pod_revision, data.ready, restarting)
        return facts

    @functools.cached_property
    def refresh(self) -> RefreshGuard:
        """Leader: the refresh guard (the StatefulSet is read on first use, once per event)."""
        return RefreshGuard(self.kubernetes, self.refresh_units, lambda: self.app_data.restart_holder)
