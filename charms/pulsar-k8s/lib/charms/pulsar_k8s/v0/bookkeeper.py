"""The `bookkeeper` interface: pulsar-k8s hands bookies the metadata store; bookies report back.

Provider (pulsar-k8s) application data:
- `metadata-service-uri`: BookKeeper's metadata service URI (zk+hierarchical://h1:2181;h2:2181/ledgers)
- `cluster-name`: the Pulsar cluster name
- `initialized`: "true" once the cluster metadata (and BookKeeper's /ledgers) exists

Requirer (bookie-k8s) unit data:
- `bookie-id`: host:port the bookie registers as (the unit's stable FQDN)
- `ready`: "true" while the bookie's readiness endpoint says so

Owned by pulsar-k8s; bookie-k8s carries an identical copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import ops

LIBID = "a08edc48e3f9462d9a1f01c43588fa93"
LIBAPI = 0
LIBPATCH = 1

DEFAULT_RELATION = "bookkeeper"


@dataclass(frozen=True)
class MetadataStore:
    """What the provider publishes."""

    metadata_service_uri: str
    cluster_name: str
    initialized: bool


@dataclass(frozen=True)
class Bookie:
    """What one bookie unit publishes."""

    unit: str
    bookie_id: str
    ready: bool


class BookKeeperProvider(ops.Object):
    """pulsar-k8s's side: publish the metadata store, read the bookies."""

    def __init__(self, charm: ops.CharmBase, relation_name: str = DEFAULT_RELATION) -> None:
        super().__init__(charm, relation_name)
        self.charm = charm
        self.relation_name = relation_name

    @property
    def relations(self) -> list[ops.Relation]:
        return list(self.charm.model.relations[self.relation_name])

    def publish(self, store: MetadataStore) -> None:
        """Write the metadata store to every bookkeeper relation (leader only)."""
        if not self.charm.unit.is_leader():
            return
        for relation in self.relations:
            relation.data[self.charm.app].update(
                {
                    "metadata-service-uri": store.metadata_service_uri,
                    "cluster-name": store.cluster_name,
                    "initialized": "true" if store.initialized else "false",
                }
            )

    def bookies(self) -> list[Bookie]:
        """Every related bookie unit that has published its id."""
        found = []
        for relation in self.relations:
            for unit in sorted(relation.units, key=lambda u: u.name):
                data = relation.data[unit]
                if data.get("bookie-id"):
                    found.append(Bookie(unit.name, data["bookie-id"], data.get("ready") == "true"))
        return found

    def ready_bookies(self) -> list[Bookie]:
        return [bookie for bookie in self.bookies() if bookie.ready]


class BookKeeperRequirer(ops.Object):
    """bookie-k8s's side: read the metadata store, publish this bookie."""

    def __init__(self, charm: ops.CharmBase, relation_name: str = DEFAULT_RELATION) -> None:
        super().__init__(charm, relation_name)
        self.charm = charm
        self.relation_name = relation_name

    @property
    def relation(self) -> ops.Relation | None:
        return self.charm.model.get_relation(self.relation_name)

    def metadata_store(self) -> MetadataStore | None:
        """The provider's metadata store, once it has published one."""
        relation = self.relation
        if relation is None or relation.app is None:
            return None
        data = relation.data[relation.app]
        if not data.get("metadata-service-uri"):
            return None
        return MetadataStore(
            metadata_service_uri=data["metadata-service-uri"],
            cluster_name=data.get("cluster-name", ""),
            initialized=data.get("initialized") == "true",
        )

    def publish(self, bookie_id: str, ready: bool) -> None:
        relation = self.relation
        if relation is None:
            return
        relation.data[self.charm.unit].update({"bookie-id": bookie_id, "ready": "true" if ready else "false"})
