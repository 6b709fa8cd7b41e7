"""The charm's state: what the pipeline must remember beyond one event, in its peer relation.

Peer relation `cdc-peers`, application databag (`PeerAppData`, written by the leader only):

- `generation`: the offsets generation. 0 keeps Debezium's default offset topic; each
  `resnapshot`, and each teardown that dropped the slot, adds one, and the source then stores
  its offsets in a new topic (`<source>-debezium-offset-topic-<generation>`), where it finds
  none and snapshots again
- `slot-seen`: the replication slot a capturing pipeline last saw on the database (its name);
  empty until then, and after a teardown or a resnapshot
- `slot-timeline`: the server's WAL timeline then (0 if unknown). A failover promotes a
  standby on a new timeline, without the slot (before PostgreSQL 17)
- `slot-lost`: when the charm found that slot lost (ISO time), empty if it was not; cleared
  by `resnapshot` and by a teardown
- `source-database`: `<system identifier>/<database>` of the database the offsets are about.
  Offsets are positions in one server's WAL (its standbys share its system identifier): when
  the source becomes another server's or another database's, a new generation begins, so that
  the source reads the new tables first instead of skipping changes up to an old position

No unit databag. Before the relation exists (a unit's first hooks) the state reads as the
defaults and nothing is written; the leader writes what changed once it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import ops

from charms.pulsar_k8s.v0.pulsar_workload import PeerData
from literals import PEER


@dataclass
class PeerAppData:
    """The `cdc-peers` application databag, written by the leader (see the module docstring)."""

    generation: int = 0
    slot_seen: str = field(default="", metadata={"alias": "slot-seen"})
    slot_timeline: int = field(default=0, metadata={"alias": "slot-timeline"})
    slot_lost: str = field(default="", metadata={"alias": "slot-lost"})
    source_database: str = field(default="", metadata={"alias": "source-database"})


@dataclass
class PeerUnitData:
    """A unit's `cdc-peers` databag: nothing in it (the leader alone keeps state)."""


class CdcState:
    """One event's view of the peer application databag, and its write-back."""

    def __init__(self, charm: ops.CharmBase) -> None:
        self.leader = charm.unit.is_leader()
        self.peers = charm.model.get_relation(PEER)
        self.peer_data = PeerData(self.peers, PeerAppData, PeerUnitData, charm.app, charm.unit)
        # The object `peer_data` writes back: changed in place, never replaced.
        self.app_data: Final = self.peer_data.app_data
        self.error: Final = self.peer_data.error

    @property
    def generation(self) -> int:
        return self.app_data.generation

    @property
    def writable(self) -> bool:
        """Whether what the leader changes now is kept: the relation exists and its data decoded."""
        return self.peers is not None and self.error is None

    def saw_slot(self, slot: str, timeline: int | None) -> None:
        """A capturing pipeline sees its slot on the database (and the server's timeline)."""
        self.app_data.slot_seen = slot
        if timeline is not None:
            self.app_data.slot_timeline = timeline

    def slot_lost(self, timeline: int | None) -> str:
        """Mark the slot lost now (on the server's current timeline); return the time marked."""
        self.app_data.slot_lost = datetime.now(UTC).isoformat(timespec="seconds")
        self.app_data.slot_timeline = timeline or 0
        return self.app_data.slot_lost

    def forget_slot(self) -> None:
        """The slot is gone on purpose (teardown, resnapshot): nothing seen, nothing lost."""
        self.app_data.slot_seen = ""
        self.app_data.slot_timeline = 0
        self.app_data.slot_lost = ""

    def next_generation(self) -> int:
        """Start a new offsets generation (resnapshot); the slot is forgotten with the old one."""
        self.app_data.generation += 1
        self.forget_slot()
        return self.app_data.generation

    def save(self) -> None:
        """Write back what changed (the application databag only as the leader)."""
        self.peer_data.save(leads=self.leader)
