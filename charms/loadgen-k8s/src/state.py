"""The charm's state: its peer databags, typed, and a snapshot of what one event reads.

Peer relation `workers`:

- application databag (`PeerAppData`, leader only): `test`, the current or last `LoadTestPlan`
  (see managers/coordinator.py for its phases), and `history`, the last test ids, newest last
- unit databag (`PeerUnitData`): `start-request` and `stop-request`, a non-leader unit's
  actions waiting for the leader; `report`, the unit's part in the current test (progress,
  then its final result, which every unit reads to write the application's results)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

import ops

from charms.pulsar_k8s.v0.pulsar_workload import PeerData
from literals import PEER
from managers.coordinator import LoadTestPlan, StartRequest, UnitReport
from managers.devices import ordered_units

logger = logging.getLogger(__name__)


@dataclass
class PeerAppData:
    """The `workers` peer application databag, written by the leader."""

    test: LoadTestPlan | None = None
    history: list[str] = field(default_factory=list)


@dataclass
class PeerUnitData:
    """A unit's `workers` peer databag, written by that unit."""

    start_request: StartRequest | None = field(default=None, metadata={"alias": "start-request"})
    stop_request: str = field(default="", metadata={"alias": "stop-request"})
    report: UnitReport | None = None


class LoadgenState:
    """One event's view of the peer relation: the plan, every unit's data, and write-back."""

    def __init__(self, charm: ops.CharmBase) -> None:
        self.unit = charm.unit
        self.app = charm.app
        self.leader = charm.unit.is_leader()
        self.peers = charm.model.get_relation(PEER)
        self.peer_data = PeerData(self.peers, PeerAppData, PeerUnitData, charm.app, charm.unit)
        # The objects `peer_data` writes back: changed in place, never replaced.
        self.app_data: Final = self.peer_data.app_data
        self.unit_data: Final = self.peer_data.unit_data
        self.error: Final = self.peer_data.error
        # Every other unit's databag, read now (a bad one reads as the defaults).
        units = self.peers.units if self.peers is not None else set()
        self.others: dict[str, PeerUnitData] = {unit.name: self.peer_data.unit_data_of(unit) for unit in units}

    @property
    def units(self) -> list[str]:
        """Every unit of the application in the peer relation, this one included, by number."""
        return ordered_units([self.unit.name, *self.others])

    @property
    def plan(self) -> LoadTestPlan | None:
        return self.app_data.test

    def unit_data_of(self, unit: str) -> PeerUnitData:
        return self.unit_data if unit == self.unit.name else self.others.get(unit, PeerUnitData())

    def reports(self) -> dict[str, UnitReport | None]:
        return {unit: self.unit_data_of(unit).report for unit in self.units}

    def start_requests(self) -> dict[str, StartRequest]:
        requests = {unit: self.unit_data_of(unit).start_request for unit in self.units}
        return {unit: request for unit, request in requests.items() if request is not None}

    def save(self) -> None:
        """Write back what changed (the application databag only as the leader)."""
        self.peer_data.save(leads=self.leader)
